"""Integration test on a real SLURM: the workflow through workflow/profiles/slurm, on a one-node cluster.

tests/slurm/cluster.sh starts munged, slurmctld and slurmd on this machine (2 CPUs, a GRES of two
dummy GPUs, accounting off, MinJobAge raised so `squeue` still reports finished jobs). Each run
works in its own copy of the repository and submits with

    snakemake --workflow-profile workflow/profiles/slurm --slurm-status-command squeue ...

Asserted: the GPU rules were submitted with `--gpus=1` (Snakemake's sbatch calls, and SLURM's own
job records: TresPerJob=gres:gpu:1 and a CUDA_VISIBLE_DEVICES inside the job), the other rules
without; the outputs equal a local run's; the cluster is shut down afterwards (fixture teardown).

Needs root and Debian's slurmctld, slurmd, slurm-client and munge (cluster.sh installs them when
absent). Slow (minutes): runs in CI (CI=true) or with NIDSFLOW_SLURM_TEST=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("NIDSFLOW_SLURM_TEST", "1" if os.environ.get("CI") == "true" else "0") != "1",
        reason="SLURM integration test: runs in CI (CI=true) or with NIDSFLOW_SLURM_TEST=1 (needs root; installs slurm and munge)",
    ),
]

#: The checkout whose workflow/ and config/ are copied for the runs (another checkout: NIDSFLOW_TEST_REPO).
SOURCE = Path(os.environ.get("NIDSFLOW_TEST_REPO", REPO))
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_DIR = Path(os.environ.get("NIDSFLOW_SLURM_DIR", "/tmp/nidsflow-slurm"))
SLURM_PROFILE = "workflow/profiles/slurm"
MINI = REPO / "tests" / "slurm" / "mini"
#: The real DAG subset: demo_traffic -> extract -> split -> train_janus -> score_phase1 for one dataset.
REAL_TARGET = "results/demo/demo_a/janus/full/seed42/phase1_scores.npz"
REAL_GPU_RULES = {"train_janus", "score_phase1"}
#: Accounting is off: status from squeue; first status check after 2 s instead of 40 s.
SLURM_ARGS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2", "--verbose")


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-20000:]
        raise AssertionError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{tail}")
    return proc


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running test cluster, stopped (and checked to be gone) at the end of the module.

    A cluster someone already started with `cluster.sh start` is used as it is and left running.
    """
    env = dict(os.environ, SLURM_CONF=str(SLURM_DIR / "etc" / "slurm.conf"))
    already_up = subprocess.run(["bash", str(CLUSTER_SH), "status"], cwd=REPO, capture_output=True).returncode == 0
    if already_up:
        yield env
        return
    started = time.monotonic()
    run(["bash", str(CLUSTER_SH), "start"], cwd=REPO)
    print(f"cluster start: {time.monotonic() - started:.1f} s")
    try:
        yield env
    finally:
        pid_files = list(SLURM_DIR.glob("run/*.pid")) + [SLURM_DIR / "munge" / "munged.pid"]
        pids = [int(p.read_text()) for p in pid_files if p.exists()]
        run(["bash", str(CLUSTER_SH), "stop"], cwd=REPO)
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        assert len(pids) == 3 and not alive, f"daemons {pids}, still running after cluster.sh stop: {alive}"
        assert not SLURM_DIR.exists()
        assert not Path("/etc/slurm/slurm.conf").is_symlink()


def slurm_jobs(env: dict) -> list[dict[str, str]]:
    """Every job slurmctld still remembers (MinJobAge), as {field: value} from `scontrol show job`."""
    out = run(["scontrol", "show", "job", "--oneliner"], cwd=REPO, env=env).stdout
    jobs = []
    for line in out.splitlines():
        if not line.startswith("JobId="):
            continue
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs.append(fields)
    return jobs


def jobs_of_run(env: dict, workdir: Path) -> list[dict[str, str]]:
    return [j for j in slurm_jobs(env) if j.get("WorkDir") == str(workdir)]


def rule_of(job: dict[str, str]) -> str:
    """The rule name from the plugin's job comment `rule_<name>_wildcards_<...>`."""
    match = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", job["Comment"])
    assert match, job
    return match.group(1)


def sbatch_calls(log: str) -> list[str]:
    return re.findall(r"^sbatch call: (.+)$", log, flags=re.M)


def rule_of_call(call: str) -> str:
    return rule_of({"Comment": re.search(r"--comment (\S+)", call).group(1)})


def copy_repo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("workflow", "config"):
        shutil.copytree(SOURCE / name, dest / name)
    return dest


#: JSON keys that hold wall-clock measurements (extract_report.json's "seconds"): they differ by nature.
TIMING_KEYS = {"seconds", "elapsed_s", "wall_s"}


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def assert_same_outputs(local: Path, cluster: Path, files: list[str]) -> None:
    """npz, parquet and json files compared by content (arrays, frames, values), every other file byte for byte."""
    for rel in files:
        a, b = local / rel, cluster / rel
        assert a.exists() and b.exists(), rel
        if rel.endswith(".npz"):
            with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
                assert sorted(x.files) == sorted(y.files), rel
                for key in x.files:
                    np.testing.assert_array_equal(x[key], y[key], err_msg=f"{rel}:{key}")
        elif rel.endswith(".json"):
            assert without_timings(json.loads(a.read_text())) == without_timings(json.loads(b.read_text())), rel
        elif rel.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), obj=rel)
        else:
            assert a.read_bytes() == b.read_bytes(), rel


def test_mini_workflow_gpu_rules_get_gpus(slurm_cluster, tmp_path):
    env = slurm_cluster
    targets = ["results/a/seed1/score.txt", "results/b/seed2/model.txt"]
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    shutil.copytree(MINI, local)
    shutil.copytree(MINI, cluster)
    run(["snakemake", "--cores", "2", *targets], cwd=local)

    started = time.monotonic()
    proc = run(
        ["snakemake", "--workflow-profile", str(REPO / SLURM_PROFILE), *SLURM_ARGS, *targets],
        cwd=cluster,
        env=env,
    )
    log = proc.stdout + proc.stderr
    print(f"mini workflow on SLURM: {time.monotonic() - started:.1f} s")

    calls = sbatch_calls(log)
    assert len(calls) == 2 + 2 + 1, calls  # make_data x2, train x2, score x1
    for call in calls:
        assert ("--gpus=1" in call) == (rule_of_call(call) == "train"), call

    jobs = jobs_of_run(env, cluster)
    assert len(jobs) == len(calls)
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == (rule_of(job) == "train"), job

    # Inside the job SLURM assigned one of the two dummy GPUs.
    for probe in cluster.glob("results/*/seed*/probe.json"):
        seen = json.loads(probe.read_text())["env"]
        assert seen["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, seen
        assert seen["SLURM_JOB_ID"] in {j["JobId"] for j in jobs}
        assert seen["SLURM_JOB_PARTITION"] == "batch"

    files = ["results/a/data.txt", "results/b/data.txt", "results/a/seed1/model.txt", *targets]
    assert_same_outputs(local, cluster, files)


def test_demo_dag_subset_on_slurm_equals_local_run(slurm_cluster, tmp_path):
    env = slurm_cluster
    local, cluster = copy_repo(tmp_path / "local"), copy_repo(tmp_path / "cluster")

    started = time.monotonic()
    run(["snakemake", "--cores", "2", REAL_TARGET], cwd=local)
    print(f"real DAG subset locally: {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    proc = run(["snakemake", "--workflow-profile", SLURM_PROFILE, *SLURM_ARGS, REAL_TARGET], cwd=cluster, env=env)
    log = proc.stdout + proc.stderr
    print(f"real DAG subset on SLURM: {time.monotonic() - started:.1f} s")

    calls = sbatch_calls(log)
    submitted = {rule_of_call(c) for c in calls}
    assert {"demo_traffic", "extract", "split", "train_janus", "score_phase1"} <= submitted, submitted
    for call in calls:
        rule = rule_of_call(call)
        assert ("--gpus=1" in call) == (rule in REAL_GPU_RULES), call
        # The profile's set-resources sends GPU rules to the gpu partition.
        assert ("-p gpu" in call) == (rule in REAL_GPU_RULES), call

    jobs = jobs_of_run(env, cluster)
    assert len(jobs) == len(calls)
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        gpu_rule = rule_of(job) in REAL_GPU_RULES
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == gpu_rule, job
        assert job["Partition"] == ("gpu" if gpu_rule else "batch"), job

    produced = sorted(
        str(p.relative_to(local))
        for p in (local / "results").rglob("*")
        if p.is_file() and p.suffix in {".npz", ".parquet", ".json", ".npy"}
    ) + ["resources/demo/demo_a/capture.pcap", "resources/demo/demo_a/labels.csv"]
    assert REAL_TARGET in produced
    assert_same_outputs(local, cluster, produced)
    # The model weights: same tensors.
    import torch

    model = "results/demo/demo_a/janus/full/seed42/model.pt"
    a = torch.load(local / model, map_location="cpu", weights_only=False)
    b = torch.load(cluster / model, map_location="cpu", weights_only=False)
    assert_same_state(a, b)


def assert_same_state(a, b, path="model.pt"):
    import torch

    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")


def test_per_capture_extraction_jobs_run_as_separate_sbatch_jobs(slurm_cluster, tmp_path):
    """A per-file dataset of three captures, one extract_part job each (extract.part_target_bytes: 1) and the
    gather: four sbatch jobs, all COMPLETED, and the store equals a local run's."""
    import yaml

    from test_drivers import write_pcap

    env = slurm_cluster
    local, cluster = copy_repo(tmp_path / "local"), copy_repo(tmp_path / "cluster")
    cfg = yaml.safe_load((SOURCE / "config" / "config.yaml").read_text())
    for work in (local, cluster):
        caps = []
        for i, (label, proto) in enumerate([("BENIGN", 6), ("UDP Flood", 17), ("BENIGN", 6)]):
            cap = work / "resources" / "pf" / f"c{i}.pcap"
            cap.parent.mkdir(parents=True, exist_ok=True)
            write_pcap(cap, [("10.0.0.1", 1000 + 10 * i + k, "10.0.0.2", 80, proto, k, 3 + k % 3) for k in range(6)])
            caps.append((f"resources/pf/c{i}.pcap", label))
        run_cfg = {**cfg, "datasets": {"pf": {"driver": "per_file", "captures": [c for c, _ in caps],
                                              "labels": dict(caps)}},
                   "extract": {**cfg["extract"], "part_target_bytes": 1}}
        (work / "config" / "pf.yaml").write_text(yaml.safe_dump(run_cfg))
    target = "results/demo/pf/store/flows.parquet"
    run(["snakemake", "--cores", "2", "--configfile", "config/pf.yaml", "--", target], cwd=local)
    proc = run(["snakemake", "--workflow-profile", SLURM_PROFILE, *SLURM_ARGS, "--configfile", "config/pf.yaml",
                "--", target], cwd=cluster, env=env)
    calls = sbatch_calls(proc.stdout + proc.stderr)
    rules = sorted(rule_of_call(c) for c in calls)
    assert rules == ["extract", "extract_part", "extract_part", "extract_part"], rules
    jobs = jobs_of_run(env, cluster)
    assert len(jobs) == 4 and all(j["JobState"] == "COMPLETED" for j in jobs), jobs
    assert len({j["JobId"] for j in jobs}) == 4  # each part its own SLURM job
    produced = ["results/demo/pf/store/flows.parquet", "results/demo/pf/store/flow_features.parquet",
                "results/demo/pf/store/extract_report.json",
                *sorted(str(p.relative_to(local)) for p in (local / "results/demo/pf/store/packets").glob("*.npy"))]
    assert len(produced) == 3 + 2 * 3  # one shard (+ lengths) per capture
    assert_same_outputs(local, cluster, produced)
    report = json.loads((cluster / "results/demo/pf/store/extract_report.json").read_text())
    assert [p["captures"] for p in report["parts"]] == [[c] for c, _ in caps]
