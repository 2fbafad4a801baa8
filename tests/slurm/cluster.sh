#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for the integration test (tests/test_slurm.py).
#
#   tests/slurm/cluster.sh start    install Debian's slurm + munge if absent, start munged, slurmctld, slurmd
#   tests/slurm/cluster.sh stop     stop the three daemons and delete the cluster's directory
#   tests/slurm/cluster.sh status   exit 0 when the cluster runs and its node answers `sinfo`
#   tests/slurm/cluster.sh env      print the `export SLURM_CONF=...` line for a shell
#
# One node (this host's `hostname -s`), 2 CPUs, a GRES of 2 "GPUs" backed by two dummy character
# devices listed in gres.conf, partitions `batch` (default) and `gpu` over the same node (the names
# the SLURM profile uses), accounting off (so Snakemake must query `squeue`, not `sacct`) and
# MinJobAge raised so that `squeue` and `scontrol show job` still report finished jobs.
# Everything lives under $NIDSFLOW_SLURM_DIR (default /tmp/nidsflow-slurm); the munge daemon is a
# private one (its own key and socket), so a system munged, if any, is left alone.
# Must run as root (slurmd starts job steps as the submitting user).
set -euo pipefail

BASE=${NIDSFLOW_SLURM_DIR:-/tmp/nidsflow-slurm}
CPUS=${NIDSFLOW_SLURM_CPUS:-2}
NGPUS=2
CTLD_PORT=${NIDSFLOW_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${NIDSFLOW_SLURM_SLURMD_PORT:-6818}
NODE=$(hostname -s)
APT_PACKAGES=(slurmctld slurmd slurm-client munge)
export SLURM_CONF="$BASE/etc/slurm.conf"
# Client commands inside jobs must find the config at the default path: the jobstep plugin of
# snakemake-executor-plugin-slurm strips SLURM_* variables (SLURM_CONF included) before its nested
# `srun`. So /etc/slurm/slurm.conf becomes a link to ours while the cluster runs.
SYSTEM_CONF=/etc/slurm/slurm.conf

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
    local missing=()
    for bin in slurmctld slurmd sbatch munged; do
        command -v "$bin" >/dev/null || missing+=("$bin")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root: apt-get install ${APT_PACKAGES[*]}"
    log "installing ${APT_PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's maintainer scripts try to start the services; a policy-rc.d may deny it, which is fine.
    if ! apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
    fi
}

# Memory the node advertises. Without cgroups nothing enforces it: it is the scheduler's bookkeeping
# only, sized so that the SLURM profile's requests (train_janus asks 32 GB) fit as they are.
REAL_MEMORY_MB=${NIDSFLOW_SLURM_MEM_MB:-65536}

make_dummy_gpus() {
    mkdir -p "$BASE/dev"
    for i in $(seq 0 $((NGPUS - 1))); do
        rm -f "$BASE/dev/gpu$i"
        # A character device like /dev/null (1,3), as real GPU device files are; a plain file if mknod is refused.
        mknod "$BASE/dev/gpu$i" c 1 3 2>/dev/null || touch "$BASE/dev/gpu$i"
    done
}

write_config() {
    mkdir -p "$BASE/etc" "$BASE/state" "$BASE/spool" "$BASE/log" "$BASE/run" "$BASE/munge"
    cat >"$BASE/etc/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a single-node test cluster. Delete with cluster.sh stop.
ClusterName=nidsflowtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$BASE/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/%n
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node's hardware may differ from the line below (a CI runner with more cores): trust the config.
SlurmdParameters=config_overrides
ReturnToService=2
# No accounting database: status comes from squeue, which keeps finished jobs for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEMORY_MB Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=batch Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
    {
        echo "# Written by tests/slurm/cluster.sh: dummy GPUs (character devices like /dev/null)."
        for i in $(seq 0 $((NGPUS - 1))); do
            echo "NodeName=$NODE Name=gpu File=$BASE/dev/gpu$i"
        done
    } >"$BASE/etc/gres.conf"
}

start_munge() {
    if [ ! -s "$BASE/munge/munge.key" ]; then
        dd if=/dev/urandom of="$BASE/munge/munge.key" bs=1 count=1024 status=none
    fi
    chmod 700 "$BASE/munge"
    chmod 600 "$BASE/munge/munge.key"
    # --force: munged runs as root here and its directory lies under the world-writable /tmp.
    munged --force \
        --key-file="$BASE/munge/munge.key" \
        --socket="$BASE/munge/munge.socket" \
        --pid-file="$BASE/munge/munged.pid" \
        --log-file="$BASE/munge/munged.log" \
        --seed-file="$BASE/munge/munged.seed"
    munge -S "$BASE/munge/munge.socket" -n | unmunge -S "$BASE/munge/munge.socket" >/dev/null \
        || die "munge round trip failed, see $BASE/munge/munged.log"
}

node_state() {
    timeout 5 sinfo -h -N -n "$NODE" -o "%t" 2>/dev/null | head -n1
}

wait_idle() {
    local state=""
    sleep 1  # let the daemons write their pid files
    for _ in $(seq 1 60); do
        for daemon in slurmctld slurmd; do
            if ! kill -0 "$(cat "$BASE/run/$daemon.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
                log "$daemon is not running; its log:"
                tail -n 20 "$BASE/log/$daemon.log" >&2 || true
                return 1
            fi
        done
        state=$(node_state)
        case "$state" in
            idle) return 0 ;;
            drain* | drng | down*)
                # A node that registered with a config mismatch: put it back in service once.
                scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    log "node $NODE not idle after 60 s (state: '${state:-no answer}'); slurmctld log:"
    tail -n 20 "$BASE/log/slurmctld.log" >&2 || true
    log "slurmd log:"
    tail -n 20 "$BASE/log/slurmd.log" >&2 || true
    return 1
}

kill_pidfile() {
    local pidfile=$1 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

link_system_conf() {
    if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
        [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ] \
            || die "$SYSTEM_CONF exists and is not this test cluster's: refusing to replace it"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$SLURM_CONF" "$SYSTEM_CONF"
}

unlink_system_conf() {
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ]; then
        rm -f "$SYSTEM_CONF"
    fi
}

start() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (slurmctld and slurmd run as root here)"
    if [ -s "$BASE/run/slurmctld.pid" ] && kill -0 "$(cat "$BASE/run/slurmctld.pid")" 2>/dev/null; then
        die "a test cluster is already running under $BASE (cluster.sh stop first)"
    fi
    install_packages
    rm -rf "$BASE"
    mkdir -p "$BASE"
    make_dummy_gpus
    write_config
    link_system_conf
    start_munge
    # -c: start from a clean state (no jobs or node states from an earlier cluster).
    slurmctld -c -f "$SLURM_CONF"
    slurmd -c -f "$SLURM_CONF"
    wait_idle || { stop; die "cluster did not come up"; }
    log "up: node $NODE idle, $CPUS CPUs, gres gpu:$NGPUS; export SLURM_CONF=$SLURM_CONF"
}

stop() {
    # Cancel whatever is left so no job outlives the cluster, then stop the daemons (slurmd first).
    if [ -s "$BASE/run/slurmctld.pid" ]; then
        scancel --full --quiet -u "$(id -un)" >/dev/null 2>&1 || true
    fi
    kill_pidfile "$BASE/run/slurmd.pid"
    kill_pidfile "$BASE/run/slurmctld.pid"
    kill_pidfile "$BASE/munge/munged.pid"
    unlink_system_conf
    rm -rf "$BASE"
    log "stopped; removed $BASE"
}

status() {
    [ -s "$BASE/run/slurmctld.pid" ] && kill -0 "$(cat "$BASE/run/slurmctld.pid")" 2>/dev/null || return 1
    [ "$(node_state)" = "idle" ] || [ "$(node_state)" = "mix" ] || [ "$(node_state)" = "alloc" ]
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
