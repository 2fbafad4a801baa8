"""Demo generator, flows: the reference flow assembly and the label tables computed from it.

Flow definition (the standard one the extractor uses): bidirectional flows keyed by the canonical
5-tuple (protocol + the two (address, port) endpoints in sorted order); the sender of the first
packet is the source (forward direction); a packet more than ``idle_timeout_s`` (120 s) after the
flow's previous packet, or more than ``active_timeout_s`` (1800 s) after its first packet, starts a
new flow; a TCP flow ends with a RST packet, or with the first pure ACK (no payload, no SYN/FIN/RST)
after both directions have sent a FIN (the last ACK of the close); a later packet with the same
5-tuple starts a new flow. Flows still open at the end of the capture end there.

Two tables are computed from each flow's own packets:

- CIC-IDS2017 "GeneratedLabelledFlows" columns (:data:`CIC_COLUMNS`, leading spaces and the
  duplicated " Fwd Header Length" as in the real files). Definitions follow CICFlowMeter-V3: packet
  "length" = transport payload bytes; durations and IATs in microseconds; std = sample std (n - 1);
  header length = transport header bytes; subflows split at gaps > 1 s; bulk = >= 4 consecutive
  payload packets of one direction with gaps <= 1 s; active/idle periods split at gaps > 5 s;
  rates with a zero duration are written "Infinity" (or "NaN" for 0/0) as CICFlowMeter does.
- HIKARI-2021 ALLFLOWMETER statistics (:func:`hikari_row`, the columns of
  :data:`nidsflow.demo.hikari_csv.HIKARI_COLUMNS`, Zeek flowmeter definitions): durations
  in seconds, IATs and active/idle in microseconds, payload statistics in bytes, population std,
  header sizes = transport header bytes, subflows at gaps > 1 s, bulk as above, active/idle at gaps
  > 5 s, rates 0 when the duration is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nidsflow.demo.wire import (ACK, CWR, ECE, FIN, PSH, R_DST, R_DPORT, R_FLAGS, R_OPT, R_PLEN, R_PROTO,
                                        R_SID, R_SPORT, R_SRC, R_TS, R_VLAN, R_WIN, RST, SYN, TCP, URG, ip_to_str,
                                        l4_header_len)

CIC_COLUMNS: tuple[str, ...] = (
    "Flow ID", " Source IP", " Source Port", " Destination IP", " Destination Port", " Protocol", " Timestamp",
    " Flow Duration", " Total Fwd Packets", " Total Backward Packets", "Total Length of Fwd Packets",
    " Total Length of Bwd Packets", " Fwd Packet Length Max", " Fwd Packet Length Min", " Fwd Packet Length Mean",
    " Fwd Packet Length Std", "Bwd Packet Length Max", " Bwd Packet Length Min", " Bwd Packet Length Mean",
    " Bwd Packet Length Std", "Flow Bytes/s", " Flow Packets/s", " Flow IAT Mean", " Flow IAT Std", " Flow IAT Max",
    " Flow IAT Min", "Fwd IAT Total", " Fwd IAT Mean", " Fwd IAT Std", " Fwd IAT Max", " Fwd IAT Min",
    "Bwd IAT Total", " Bwd IAT Mean", " Bwd IAT Std", " Bwd IAT Max", " Bwd IAT Min", "Fwd PSH Flags",
    " Bwd PSH Flags", " Fwd URG Flags", " Bwd URG Flags", " Fwd Header Length", " Bwd Header Length",
    "Fwd Packets/s", " Bwd Packets/s", " Min Packet Length", " Max Packet Length", " Packet Length Mean",
    " Packet Length Std", " Packet Length Variance", "FIN Flag Count", " SYN Flag Count", " RST Flag Count",
    " PSH Flag Count", " ACK Flag Count", " URG Flag Count", " CWE Flag Count", " ECE Flag Count", " Down/Up Ratio",
    " Average Packet Size", " Avg Fwd Segment Size", " Avg Bwd Segment Size", " Fwd Header Length",
    "Fwd Avg Bytes/Bulk", " Fwd Avg Packets/Bulk", " Fwd Avg Bulk Rate", " Bwd Avg Bytes/Bulk",
    " Bwd Avg Packets/Bulk", "Bwd Avg Bulk Rate", "Subflow Fwd Packets", " Subflow Fwd Bytes",
    " Subflow Bwd Packets", " Subflow Bwd Bytes", "Init_Win_bytes_forward", " Init_Win_bytes_backward",
    " act_data_pkt_fwd", " min_seg_size_forward", "Active Mean", " Active Std", " Active Max", " Active Min",
    "Idle Mean", " Idle Std", " Idle Max", " Idle Min", " Label",
)

SUBFLOW_GAP_US = 1_000_000
BULK_GAP_US = 1_000_000
BULK_MIN_PACKETS = 4
ACTIVITY_GAP_US = 5_000_000


@dataclass
class Flow:
    """One assembled flow: its forward endpoint, protocol, packet indices (into the sorted records)."""

    src: int
    sport: int
    dst: int
    dport: int
    proto: int
    start_us: int
    last_us: int
    idx: list = field(default_factory=list)
    fin_fwd: bool = False
    fin_bwd: bool = False
    sid: int = -1


def assemble_flows(records, idle_timeout_s: float = 120.0, active_timeout_s: float = 1800.0) -> list[Flow]:
    """Group time-sorted packet records into flows (definition in the module docstring)."""
    idle_us = int(idle_timeout_s * 1e6)
    active_us = int(active_timeout_s * 1e6)
    table: dict = {}
    flows: list[Flow] = []
    for i, r in enumerate(records):
        ts, src, dst, sp, dp, proto = r[R_TS], r[R_SRC], r[R_DST], r[R_SPORT], r[R_DPORT], r[R_PROTO]
        key = (proto, src, sp, dst, dp) if (src, sp) <= (dst, dp) else (proto, dst, dp, src, sp)
        f = table.get(key)
        if f is not None and (ts - f.last_us > idle_us or ts - f.start_us > active_us):
            f = None
        if f is None:
            f = Flow(src, sp, dst, dp, proto, ts, ts)
            table[key] = f
            flows.append(f)
        f.idx.append(i)
        f.last_us = ts
        if proto == TCP:
            flags = r[R_FLAGS]
            if flags & RST:
                del table[key]
            elif flags & FIN:
                if src == f.src and sp == f.sport:
                    f.fin_fwd = True
                else:
                    f.fin_bwd = True
            elif f.fin_fwd and f.fin_bwd and flags == ACK and r[R_PLEN] == 0:
                del table[key]
    return flows


def packet_columns(records) -> dict[str, np.ndarray]:
    """Column arrays of the sorted records used by the statistics."""
    n = len(records)
    cols = {
        "ts": np.fromiter((r[R_TS] for r in records), np.int64, n),
        "plen": np.fromiter((r[R_PLEN] for r in records), np.int64, n),
        "hlen": np.fromiter((l4_header_len(r[R_PROTO], r[R_OPT]) for r in records), np.int64, n),
        "flags": np.fromiter((r[R_FLAGS] for r in records), np.int64, n),
        "win": np.fromiter((r[R_WIN] for r in records), np.int64, n),
        "src": np.fromiter((r[R_SRC] for r in records), np.int64, n),
        "sport": np.fromiter((r[R_SPORT] for r in records), np.int64, n),
        "sid": np.fromiter((r[R_SID] for r in records), np.int64, n),
        "vlan": np.fromiter((r[R_VLAN] for r in records), np.int64, n),
    }
    return cols


def _stats(x: np.ndarray, ddof: int) -> tuple[float, float, float, float, float]:
    """(min, max, total, mean, std) of x; zeros when empty; std 0 when fewer than ddof + 1 values."""
    if len(x) == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    std = float(x.std(ddof=ddof)) if len(x) > ddof else 0.0
    return float(x.min()), float(x.max()), float(x.sum()), float(x.mean()), std


def _bulk(ts: np.ndarray, plen: np.ndarray, fwd: np.ndarray, forward: bool) -> tuple[int, int, int, float]:
    """Bulk transfer of one direction: runs of >= 4 payload packets of that direction with no payload
    packet of the other direction between them and gaps <= 1 s. Returns (bulks, bytes, packets, seconds)."""
    n_bulk = bytes_ = pkts = 0
    dur = 0
    run_n = run_b = 0
    run_start = run_last = 0
    data = np.flatnonzero(plen > 0)
    for j in data:
        if bool(fwd[j]) == forward:
            if run_n and ts[j] - run_last > BULK_GAP_US:
                if run_n >= BULK_MIN_PACKETS:
                    n_bulk += 1; bytes_ += run_b; pkts += run_n; dur += run_last - run_start
                run_n = run_b = 0
            if run_n == 0:
                run_start = ts[j]
            run_n += 1
            run_b += int(plen[j])
            run_last = ts[j]
        else:
            if run_n >= BULK_MIN_PACKETS:
                n_bulk += 1; bytes_ += run_b; pkts += run_n; dur += run_last - run_start
            run_n = run_b = 0
    if run_n >= BULK_MIN_PACKETS:
        n_bulk += 1; bytes_ += run_b; pkts += run_n; dur += run_last - run_start
    return n_bulk, bytes_, pkts, dur / 1e6


def _active_idle(ts: np.ndarray) -> tuple[list, list]:
    """Active periods and idle gaps (us) of a flow, split at gaps > 5 s."""
    active, idle = [], []
    if len(ts) < 2:
        return active, idle
    gaps = np.diff(ts)
    start = ts[0]
    for j in np.flatnonzero(gaps > ACTIVITY_GAP_US):
        if ts[j] - start > 0:
            active.append(float(ts[j] - start))
        idle.append(float(gaps[j]))
        start = ts[j + 1]
    if ts[-1] - start > 0:
        active.append(float(ts[-1] - start))
    return active, idle


@dataclass
class FlowStats:
    """Per-flow arrays, split by direction, shared by the CIC and the HIKARI tables."""

    ts: np.ndarray
    plen: np.ndarray
    hlen: np.ndarray
    flags: np.ndarray
    win: np.ndarray
    fwd: np.ndarray


def flow_arrays(f: Flow, cols: dict) -> FlowStats:
    idx = np.asarray(f.idx, dtype=np.int64)
    fwd = (cols["src"][idx] == f.src) & (cols["sport"][idx] == f.sport)
    return FlowStats(cols["ts"][idx], cols["plen"][idx], cols["hlen"][idx], cols["flags"][idx], cols["win"][idx], fwd)


def _rate(num: float, seconds: float):
    if seconds > 0:
        return num / seconds
    return "NaN" if num == 0 else "Infinity"


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(int(v))


def cic_row(f: Flow, a: FlowStats, label: str, local_offset_s: int, epoch_us: int, ts_format: str) -> list[str]:
    """One CIC-IDS2017 GeneratedLabelledFlows row (definitions in the module docstring)."""
    import datetime as _dt

    ts, plen, hlen, flags, fwd = a.ts, a.plen, a.hlen, a.flags, a.fwd
    bwd = ~fwd
    n = len(ts)
    nf, nb = int(fwd.sum()), int(bwd.sum())
    dur_us = int(ts[-1] - ts[0])
    dur_s = dur_us / 1e6
    pf, pb = plen[fwd], plen[bwd]
    f_min, f_max, f_tot, f_mean, f_std = _stats(pf, 1)
    b_min, b_max, b_tot, b_mean, b_std = _stats(pb, 1)
    a_min, a_max, a_tot, a_mean, a_std = _stats(plen, 1)
    iat = np.diff(ts).astype(np.float64)
    fi = np.diff(ts[fwd]).astype(np.float64)
    bi = np.diff(ts[bwd]).astype(np.float64)
    i_min, i_max, _, i_mean, i_std = _stats(iat, 1)
    fi_min, fi_max, fi_tot, fi_mean, fi_std = _stats(fi, 1)
    bi_min, bi_max, bi_tot, bi_mean, bi_std = _stats(bi, 1)
    fh, bh = hlen[fwd], hlen[bwd]
    cnt = lambda bit, mask=None: int(((flags if mask is None else flags[mask]) & bit > 0).sum())  # noqa: E731
    nfb, fbytes, fpk, fdur = _bulk(ts, plen, fwd, True)
    nbb, bbytes, bpk, bdur = _bulk(ts, plen, fwd, False)
    sub = 1 + int((np.diff(ts) > SUBFLOW_GAP_US).sum()) if n > 1 else 1
    active, idle = _active_idle(ts)
    ac = _stats(np.asarray(active), 1)
    idl = _stats(np.asarray(idle), 1)
    win_f = int(a.win[fwd][0]) if nf and f.proto == TCP else -1
    win_b = int(a.win[bwd][0]) if nb and f.proto == TCP else -1
    local = _dt.datetime.fromtimestamp((epoch_us + f.start_us) // 1_000_000 + local_offset_s, _dt.timezone.utc)
    src, dst = ip_to_str(f.src), ip_to_str(f.dst)
    fhl = int(fh.sum())
    row = [
        f"{dst}-{src}-{f.dport}-{f.sport}-{f.proto}", src, f.sport, dst, f.dport, f.proto, local.strftime(ts_format),
        dur_us, nf, nb, f_tot, b_tot, f_max, f_min, f_mean, f_std, b_max, b_min, b_mean, b_std,
        _rate(a_tot, dur_s), _rate(n, dur_s), i_mean, i_std, i_max, i_min,
        fi_tot, fi_mean, fi_std, fi_max, fi_min, bi_tot, bi_mean, bi_std, bi_max, bi_min,
        cnt(PSH, fwd), cnt(PSH, bwd), cnt(URG, fwd), cnt(URG, bwd), fhl, int(bh.sum()),
        _rate(nf, dur_s), _rate(nb, dur_s), a_min, a_max, a_mean, a_std, a_std * a_std,
        cnt(FIN), cnt(SYN), cnt(RST), cnt(PSH), cnt(ACK), cnt(URG), cnt(CWR), cnt(ECE),
        nb // nf if nf else 0, a_tot / n, f_mean, b_mean, fhl,
        fbytes / nfb if nfb else 0, fpk / nfb if nfb else 0, fbytes / fdur if fdur > 0 else 0,
        bbytes / nbb if nbb else 0, bpk / nbb if nbb else 0, bbytes / bdur if bdur > 0 else 0,
        nf // sub, int(f_tot) // sub, nb // sub, int(b_tot) // sub,
        win_f, win_b, int((pf > 0).sum()), int(fh.min()) if nf else 0,
        ac[3], ac[4], ac[1], ac[0], idl[3], idl[4], idl[1], idl[0], label,
    ]
    return [_fmt(v) for v in row]


def hikari_row(f: Flow, a: FlowStats) -> list:
    """The 80 HIKARI-2021 flow features of one flow (Zeek flowmeter definitions, module docstring)."""
    ts, plen, hlen, flags, fwd = a.ts, a.plen, a.hlen, a.flags, a.fwd
    bwd = ~fwd
    n = len(ts)
    nf, nb = int(fwd.sum()), int(bwd.sum())
    dur = (ts[-1] - ts[0]) / 1e6
    per_s = (lambda x: x / dur if dur > 0 else 0.0)  # noqa: E731
    fh, bh = hlen[fwd], hlen[bwd]
    cnt = lambda bit, mask=None: int(((flags if mask is None else flags[mask]) & bit > 0).sum())  # noqa: E731
    pf, pb = plen[fwd], plen[bwd]
    fp, bp, ap = _stats(pf, 0), _stats(pb, 0), _stats(plen, 0)
    fi = _stats(np.diff(ts[fwd]).astype(np.float64), 0)
    bi = _stats(np.diff(ts[bwd]).astype(np.float64), 0)
    ai = _stats(np.diff(ts).astype(np.float64), 0)
    sub = 1 + int((np.diff(ts) > SUBFLOW_GAP_US).sum()) if n > 1 else 1
    nfb, fbytes, fpk, fdur = _bulk(ts, plen, fwd, True)
    nbb, bbytes, bpk, bdur = _bulk(ts, plen, fwd, False)
    active, idle = _active_idle(ts)
    ac, idl = _stats(np.asarray(active), 0), _stats(np.asarray(idle), 0)
    tcp = f.proto == TCP
    win_f = int(a.win[fwd][0]) if nf and tcp else 0
    win_b = int(a.win[bwd][0]) if nb and tcp else 0
    win_fl = int(a.win[fwd][-1]) if nf and tcp else 0
    return [
        dur, nf, nb, int((pf > 0).sum()), int((pb > 0).sum()), per_s(nf), per_s(nb), per_s(n),
        nb / nf if nf else 0.0,
        int(fh.sum()), int(fh.min()) if nf else 0, int(fh.max()) if nf else 0,
        int(bh.sum()), int(bh.min()) if nb else 0, int(bh.max()) if nb else 0,
        cnt(FIN), cnt(SYN), cnt(RST), cnt(PSH, fwd), cnt(PSH, bwd), cnt(ACK), cnt(URG, fwd), cnt(URG, bwd),
        cnt(CWR), cnt(ECE),
        *_mmtas(fp), *_mmtas(bp), *_mmtas(ap), *_mmtas(fi), *_mmtas(bi), *_mmtas(ai),
        per_s(float(ap[2])), nf / sub, nb / sub, fp[2] / sub, bp[2] / sub,
        fbytes / nfb if nfb else 0.0, bbytes / nbb if nbb else 0.0, fpk / nfb if nfb else 0.0,
        bpk / nbb if nbb else 0.0, fbytes / fdur if fdur > 0 else 0.0, bbytes / bdur if bdur > 0 else 0.0,
        *_mmtas(ac), *_mmtas(idl), win_f, win_b, win_fl,
    ]


def _mmtas(s: tuple) -> tuple:
    """(min, max, tot, avg, std), the order of HIKARI's statistic columns."""
    return s


def flow_label(f: Flow, sids: np.ndarray, sessions) -> str:
    """The label of a flow: that of the one session its packets belong to (an error if several)."""
    own = np.unique(sids[np.asarray(f.idx)])
    labels = {sessions[int(s)].label for s in own}
    if len(labels) != 1:
        raise RuntimeError(f"demo flow {ip_to_str(f.src)}:{f.sport} -> {ip_to_str(f.dst)}:{f.dport} mixes "
                           f"sessions with labels {sorted(labels)}: a 5-tuple was reused within the idle timeout")
    f.sid = int(own[0])
    return labels.pop()


__all__ = ["CIC_COLUMNS", "Flow", "FlowStats", "assemble_flows", "cic_row", "flow_arrays", "flow_label", "hikari_row",
           "packet_columns"]
