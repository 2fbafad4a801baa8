"""CICFlowMeter-style flow statistics from the flow meter's streaming accumulators.

Every feature is a closed form of the accumulators of :mod:`._flow_kernels` (Welford blocks
n / mean / M2 / min / max, sums, counts), so a long flow never keeps its packets. Definitions,
units and the differences from CICFlowMeter are listed in ``docs/flow_features.md``; in short:
lengths are **payload** bytes (CICFlowMeter's convention), times in **microseconds**, std is the
sample standard deviation sqrt(M2 / (n - 1)) (0 when n < 2), rates are per second and 0 for a
flow of zero duration (CICFlowMeter writes Infinity/NaN there).

Re-reading a store's captures to rewrite its features is extraction's job:
:func:`nidsflow.capture.extract.regenerate_features`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nidsflow.capture import _flow_kernels as K

#: The feature columns of flow_features.parquet, in order (CIC-IDS2017 MachineLearningCSV names;
#: "CWR Flag Count" is CIC's "CWE Flag Count"; Fwd/Bwd RST Flags from the CIC-IDS2017 re-release).
FEATURE_NAMES: tuple[str, ...] = (
    "Flow Duration", "Total Fwd Packets", "Total Backward Packets",
    "Total Length of Fwd Packets", "Total Length of Bwd Packets",
    "Fwd Packet Length Max", "Fwd Packet Length Min", "Fwd Packet Length Mean", "Fwd Packet Length Std",
    "Bwd Packet Length Max", "Bwd Packet Length Min", "Bwd Packet Length Mean", "Bwd Packet Length Std",
    "Flow Bytes/s", "Flow Packets/s",
    "Flow IAT Mean", "Flow IAT Std", "Flow IAT Max", "Flow IAT Min",
    "Fwd IAT Total", "Fwd IAT Mean", "Fwd IAT Std", "Fwd IAT Max", "Fwd IAT Min",
    "Bwd IAT Total", "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max", "Bwd IAT Min",
    "Fwd PSH Flags", "Bwd PSH Flags", "Fwd URG Flags", "Bwd URG Flags", "Fwd RST Flags", "Bwd RST Flags",
    "Fwd Header Length", "Bwd Header Length", "Fwd Packets/s", "Bwd Packets/s",
    "Min Packet Length", "Max Packet Length", "Packet Length Mean", "Packet Length Std",
    "Packet Length Variance",
    "FIN Flag Count", "SYN Flag Count", "RST Flag Count", "PSH Flag Count", "ACK Flag Count",
    "URG Flag Count", "CWR Flag Count", "ECE Flag Count",
    "Down/Up Ratio", "Average Packet Size", "Avg Fwd Segment Size", "Avg Bwd Segment Size",
    "Fwd Avg Bytes/Bulk", "Fwd Avg Packets/Bulk", "Fwd Avg Bulk Rate",
    "Bwd Avg Bytes/Bulk", "Bwd Avg Packets/Bulk", "Bwd Avg Bulk Rate",
    "Subflow Fwd Packets", "Subflow Fwd Bytes", "Subflow Bwd Packets", "Subflow Bwd Bytes",
    "Init_Win_bytes_forward", "Init_Win_bytes_backward", "act_data_pkt_fwd", "min_seg_size_forward",
    "Active Mean", "Active Std", "Active Max", "Active Min",
    "Idle Mean", "Idle Std", "Idle Max", "Idle Min",
)

#: Other spellings of the same features in CIC releases (stripped of spaces) -> canonical name.
FEATURE_ALIASES: dict[str, str] = {
    "Total Fwd Packet": "Total Fwd Packets", "Total Bwd packets": "Total Backward Packets",
    "Total Bwd Packets": "Total Backward Packets",
    "Total Length of Fwd Packet": "Total Length of Fwd Packets",
    "Total Length of Bwd Packet": "Total Length of Bwd Packets",
    "Fwd Packets Length Total": "Total Length of Fwd Packets", "Bwd Packets Length Total": "Total Length of Bwd Packets",
    "Packet Length Min": "Min Packet Length", "Packet Length Max": "Max Packet Length",
    "CWE Flag Count": "CWR Flag Count",
    "Fwd Segment Size Avg": "Avg Fwd Segment Size", "Bwd Segment Size Avg": "Avg Bwd Segment Size",
    "Fwd Bytes/Bulk Avg": "Fwd Avg Bytes/Bulk", "Fwd Packet/Bulk Avg": "Fwd Avg Packets/Bulk",
    "Fwd Bulk Rate Avg": "Fwd Avg Bulk Rate", "Bwd Bytes/Bulk Avg": "Bwd Avg Bytes/Bulk",
    "Bwd Packet/Bulk Avg": "Bwd Avg Packets/Bulk", "Bwd Bulk Rate Avg": "Bwd Avg Bulk Rate",
    "FWD Init Win Bytes": "Init_Win_bytes_forward", "Bwd Init Win Bytes": "Init_Win_bytes_backward",
    "Fwd Act Data Pkts": "act_data_pkt_fwd", "Fwd Seg Size Min": "min_seg_size_forward",
    "Fwd Act Data Packets": "act_data_pkt_fwd",
}


def _col(state: np.ndarray, name: str) -> np.ndarray:
    return state[:, K.COL[name]]


def _std(n: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Sample standard deviation sqrt(M2 / (n - 1)); 0 for n < 2."""
    return np.sqrt(np.where(n > 1, np.maximum(m2, 0.0) / np.maximum(n - 1, 1), 0.0))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def _welford_add(s: np.ndarray, block: str, x: np.ndarray, where: np.ndarray):
    """(n, mean, M2, min, max) of a Welford block after adding x where ``where`` (vectorised update)."""
    n, mean, m2, mn, mx = (s[:, K.COL[f"{block}_{k}"]].copy() for k in ("n", "mean", "m2", "min", "max"))
    n1 = n + 1
    d = x - mean
    mean1 = mean + d / n1
    m21 = m2 + d * (x - mean1)
    first = n == 0
    mn1 = np.where(first, x, np.minimum(mn, x))
    mx1 = np.where(first, x, np.maximum(mx, x))
    return (np.where(where, n1, n), np.where(where, mean1, mean), np.where(where, m21, m2),
            np.where(where, mn1, mn), np.where(where, mx1, mx))


def features_from_state(state: np.ndarray) -> pd.DataFrame:
    """The FEATURE_NAMES columns (float64) of flows given their accumulator rows [n, N_STATE]."""
    s = np.asarray(state, dtype=np.float64)
    g = lambda name: _col(s, name)  # noqa: E731
    f: dict[str, np.ndarray] = {}
    dur_s = g("last_ts") - g("first_ts")
    n_f, n_b = g("fwd_len_n"), g("bwd_len_n")
    n = n_f + n_b
    bytes_f, bytes_b = g("fwd_bytes"), g("bwd_bytes")
    f["Flow Duration"] = dur_s * 1e6
    f["Total Fwd Packets"], f["Total Backward Packets"] = n_f, n_b
    f["Total Length of Fwd Packets"], f["Total Length of Bwd Packets"] = bytes_f, bytes_b
    for d, name in (("fwd", "Fwd"), ("bwd", "Bwd")):
        cnt = g(f"{d}_len_n")
        f[f"{name} Packet Length Max"] = np.where(cnt > 0, g(f"{d}_len_max"), 0.0)
        f[f"{name} Packet Length Min"] = np.where(cnt > 0, g(f"{d}_len_min"), 0.0)
        f[f"{name} Packet Length Mean"] = g(f"{d}_len_mean")
        f[f"{name} Packet Length Std"] = _std(cnt, g(f"{d}_len_m2"))
    f["Flow Bytes/s"] = _safe_div(bytes_f + bytes_b, dur_s)
    f["Flow Packets/s"] = _safe_div(n, dur_s)
    for block, name in (("flow_iat", "Flow"), ("fwd_iat", "Fwd"), ("bwd_iat", "Bwd")):
        cnt = g(f"{block}_n")
        if block != "flow_iat":
            f[f"{name} IAT Total"] = g(f"{block}_mean") * cnt
        f[f"{name} IAT Mean"] = g(f"{block}_mean")
        f[f"{name} IAT Std"] = _std(cnt, g(f"{block}_m2"))
        f[f"{name} IAT Max"] = np.where(cnt > 0, g(f"{block}_max"), 0.0)
        f[f"{name} IAT Min"] = np.where(cnt > 0, g(f"{block}_min"), 0.0)
    for flag in ("psh", "urg", "rst"):
        f[f"Fwd {flag.upper()} Flags"] = g(f"fwd_{flag}")
        f[f"Bwd {flag.upper()} Flags"] = g(f"bwd_{flag}")
    f["Fwd Header Length"], f["Bwd Header Length"] = g("fwd_hdr"), g("bwd_hdr")
    f["Fwd Packets/s"], f["Bwd Packets/s"] = _safe_div(n_f, dur_s), _safe_div(n_b, dur_s)
    # all-packet length statistics: the two Welford blocks merged (Chan et al. parallel update)
    mean_f, mean_b = g("fwd_len_mean"), g("bwd_len_mean")
    mean = _safe_div(n_f * mean_f + n_b * mean_b, n)
    m2 = g("fwd_len_m2") + g("bwd_len_m2") + _safe_div(n_f * n_b * (mean_b - mean_f) ** 2, n)
    min_f = np.where(n_f > 0, g("fwd_len_min"), np.inf)
    min_b = np.where(n_b > 0, g("bwd_len_min"), np.inf)
    f["Min Packet Length"] = np.where(n > 0, np.minimum(min_f, min_b), 0.0)
    f["Max Packet Length"] = np.maximum(f["Fwd Packet Length Max"], f["Bwd Packet Length Max"])
    f["Packet Length Mean"] = mean
    f["Packet Length Std"] = _std(n, m2)
    f["Packet Length Variance"] = f["Packet Length Std"] ** 2
    for flag in ("fin", "syn", "rst", "psh", "ack", "urg", "cwr", "ece"):
        f[f"{flag.upper()} Flag Count"] = g(f"{flag}_cnt")
    f["Down/Up Ratio"] = _safe_div(n_b, n_f)
    f["Average Packet Size"] = _safe_div(bytes_f + bytes_b, n)
    f["Avg Fwd Segment Size"] = _safe_div(bytes_f, n_f)
    f["Avg Bwd Segment Size"] = _safe_div(bytes_b, n_b)
    for d, name in (("fwd", "Fwd"), ("bwd", "Bwd")):
        bulks, pkts, size, dur = g(f"{d}_bulk_count"), g(f"{d}_bulk_pkts"), g(f"{d}_bulk_size"), g(f"{d}_bulk_dur")
        f[f"{name} Avg Bytes/Bulk"] = _safe_div(size, bulks)
        f[f"{name} Avg Packets/Bulk"] = _safe_div(pkts, bulks)
        f[f"{name} Avg Bulk Rate"] = _safe_div(size, dur)
    subflows = g("sf_count") + 1.0  # 1 + number of gaps above subflow_gap_s
    f["Subflow Fwd Packets"], f["Subflow Fwd Bytes"] = n_f / subflows, bytes_f / subflows
    f["Subflow Bwd Packets"], f["Subflow Bwd Bytes"] = n_b / subflows, bytes_b / subflows
    f["Init_Win_bytes_forward"], f["Init_Win_bytes_backward"] = g("init_win_fwd"), g("init_win_bwd")
    f["act_data_pkt_fwd"] = g("act_data_fwd")
    f["min_seg_size_forward"] = g("min_seg_fwd")
    # the active period still open at the flow's end counts too (CICFlowMeter endActiveIdleTime)
    last_active = (g("end_active") - g("start_active")) * 1e6
    blocks = {"active": _welford_add(s, "active", last_active, last_active > 0),
              "idle": tuple(g(f"idle_{k}") for k in ("n", "mean", "m2", "min", "max"))}
    for block, name in (("active", "Active"), ("idle", "Idle")):
        cnt, mean_, m2_, min_, max_ = blocks[block]
        f[f"{name} Mean"] = mean_
        f[f"{name} Std"] = _std(cnt, m2_)
        f[f"{name} Max"] = np.where(cnt > 0, max_, 0.0)
        f[f"{name} Min"] = np.where(cnt > 0, min_, 0.0)
    missing = set(FEATURE_NAMES) ^ set(f)
    assert not missing, missing
    return pd.DataFrame({k: np.asarray(f[k], dtype=np.float64) for k in FEATURE_NAMES})


def canonical_feature_name(name: str) -> str:
    name = name.strip()
    return FEATURE_ALIASES.get(name, name)
