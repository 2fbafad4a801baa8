"""Small synthetic flow stores for JANUS tests and benchmarks (no captures needed).

Benign flows come from one process (TCP sessions: SYN, handshake, request/response with PSH/ACK,
FIN at the end; log-normal sizes and exponential gaps). Two attack classes come from others:
``scan`` (one or two packets, SYN then RST, tiny sizes) and ``flood`` (long runs of equal large
forward packets, microsecond gaps, no backward traffic). Flow features are simple statistics of
the packets, so the store has the same shape as an extracted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.store import CHANNELS, FLOW_COLUMNS, StoreWriter

_C = {c: i for i, c in enumerate(CHANNELS)}


def _benign(rng, T, heavy=False, size_shift=0.0, iat_scale=1.0):
    # heavy: packet counts with a median of ~9 and a long tail (as in captured traffic)
    n = int(min(2 + rng.lognormal(2.0, 1.1), 100 * T)) if heavy else int(rng.integers(4, 3 * T))
    x = np.zeros((T, len(CHANNELS)), np.float32)
    k = min(n, T)
    d = (rng.random(k) < 0.45).astype(np.float32)
    d[0], d[1:2] = 0, 1
    x[:k, _C["dir"]] = d
    x[:k, _C["size"]] = np.where(d == 1, rng.lognormal(6.5 + size_shift, 0.6, k), rng.lognormal(5.0 + size_shift, 0.5, k))
    x[:k, _C["iat"]] = rng.exponential(0.05 * iat_scale, k)
    x[0, _C["iat"]] = 0
    x[:k, _C["win"]] = rng.choice([29200, 64240, 65535], k)
    x[:k, _C["ack"]] = 1
    x[0, _C["syn"]], x[0, _C["ack"]] = 1, 0
    if k > 1:
        x[1, _C["syn"]] = 1
    x[2:k, _C["psh"]] = (rng.random(max(k - 2, 0)) < 0.4)
    if n <= T:
        x[k - 1, _C["fin"]] = 1
    return x, n


def _scan(rng, T):
    n = int(rng.integers(1, 3))
    x = np.zeros((T, len(CHANNELS)), np.float32)
    x[0, [_C["size"], _C["win"], _C["syn"]]] = [40 + 4 * rng.integers(0, 3), 1024, 1]
    if n > 1:
        x[1, [_C["size"], _C["iat"], _C["win"], _C["dir"], _C["rst"], _C["ack"]]] = [40, rng.exponential(0.001), 0, 1, 1, 1]
    return x, n


def _flood(rng, T):
    n = int(rng.integers(T, 4 * T))
    x = np.zeros((T, len(CHANNELS)), np.float32)
    x[:, _C["size"]] = rng.choice([1200, 1400])
    x[:, _C["iat"]] = rng.exponential(1e-5, T)
    x[0, _C["iat"]] = 0
    x[:, _C["win"]] = 512
    x[:, _C["ack"]] = 1
    x[:, _C["psh"]] = 1
    return x, n


def _features(x: np.ndarray, n: np.ndarray) -> pd.DataFrame:
    T = x.shape[1]
    valid = np.arange(T)[None, :] < np.minimum(n, T)[:, None]
    size = np.where(valid, x[..., _C["size"]], np.nan)
    iat = np.where(valid, x[..., _C["iat"]], np.nan)
    fwd = valid & (x[..., _C["dir"]] == 0)
    with np.errstate(invalid="ignore"):
        return pd.DataFrame({
            "n_packets": n.astype(float), "duration": np.nansum(iat, 1), "bytes": np.nansum(size, 1),
            "size_mean": np.nanmean(size, 1), "size_std": np.nan_to_num(np.nanstd(size, 1)),
            "iat_mean": np.nanmean(iat, 1), "iat_max": np.nanmax(iat, 1),
            "fwd_packets": fwd.sum(1).astype(float), "bwd_packets": (valid & ~fwd).sum(1).astype(float),
            "syn_count": np.nansum(np.where(valid, x[..., _C["syn"]], 0), 1),
            "rst_count": np.nansum(np.where(valid, x[..., _C["rst"]], 0), 1),
            "win_mean": np.nanmean(np.where(valid, x[..., _C["win"]], np.nan), 1),
        })


def make_synthetic_store(root: str | Path, n_benign: int = 1000, n_scan: int = 100, n_flood: int = 100,
                         T: int = 16, seed: int = 0, with_packets: bool = True, shard_flows: int = 100_000,
                         n_mimic: int = 0, heavy_tailed_lengths: bool = False) -> Path:
    """Write a store of benign + scan + flood (+ mimic) flows, shuffled.

    ``mimic`` flows are benign sessions with slightly larger packets (+0.4 in log size) and 2x slower
    gaps: a hard class, so AUROC comparisons (solvers, steps) are not all 1.0.
    ``heavy_tailed_lengths`` draws benign/mimic packet counts as 2 + LogNormal(2.0, 1.1) (median ~9).
    """
    rng = np.random.default_rng(seed)
    kinds = np.array(["benign"] * n_benign + ["scan"] * n_scan + ["flood"] * n_flood + ["mimic"] * n_mimic)
    kinds = kinds[rng.permutation(len(kinds))]
    make = {"benign": lambda r, T: _benign(r, T, heavy_tailed_lengths), "scan": _scan, "flood": _flood,
            "mimic": lambda r, T: _benign(r, T, heavy_tailed_lengths, size_shift=0.4, iat_scale=2.0)}
    xs, ns = zip(*(make[k](rng, T) for k in kinds))
    x, n = np.stack(xs), np.array(ns, dtype=np.int32)
    N = len(kinds)
    flows = pd.DataFrame({
        "flow_id": np.arange(N), "src_ip": "10.0.0.1", "src_port": 1024 + np.arange(N) % 60000,
        "dst_ip": "10.0.0.2", "dst_port": 80, "protocol": 6, "first_ts": np.arange(N, dtype=float),
        "last_ts": np.arange(N) + 1.0, "n_packets": n, "label": np.where(kinds == "benign", "BENIGN", kinds),
        "attack_class": kinds, "is_attack": kinds != "benign", "source_file": "synthetic",
    })[list(FLOW_COLUMNS)]
    w = StoreWriter(root, T)
    if with_packets:
        for s in range(0, N, shard_flows):
            w.add_shard(x[s:s + shard_flows], n[s:s + shard_flows])
    w.finish(flows, _features(x, n), has_packets=with_packets)
    return Path(root)
