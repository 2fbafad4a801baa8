"""Small synthetic flow stores and JANUS score tables for tests and benchmarks of the evaluation stage.

Benign flows are TCP sessions (handshake, alternating request/response with PSH/ACK, heavy-tailed
sizes and inter-arrival times); two attack classes differ clearly: ``synflood`` (one or two bare
SYNs, tiny window, microsecond gaps) and ``exfil`` (long one-way bursts of full-size packets).
Flow statistics are computed from the packets, so the flow and packet views agree. Nothing here is
used to produce a reported result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import make_split
from nidsflow.store import CHANNELS, StoreWriter


def _benign(rng, T):
    n = int(rng.integers(4, 3 * T))
    x = np.zeros((T, len(CHANNELS)), np.float32)
    k = min(n, T)
    direction = np.r_[0, 1, 0, (np.arange(max(k - 3, 0)) % 2)][:k]
    size = 60 + rng.lognormal(5.5, 1.0, k).clip(0, 1400)
    size[:3] = [60, 60, 52][:min(3, k)]
    x[:k, 0] = size
    x[:k, 1] = np.r_[0.0, rng.lognormal(-4, 1.2, k - 1)]
    x[:k, 2] = rng.normal(64000, 800)
    x[:k, 3] = direction
    x[0, 4] = 1  # SYN
    x[1, 4] = 1
    x[1:k, 8] = 1  # ACK
    x[3:k, 7] = rng.random(max(k - 3, 0)) < 0.6  # PSH
    if n <= T:
        x[k - 1, 5] = 1  # FIN
    return x, n


def _synflood(rng, T):
    n = int(rng.integers(1, 3))
    x = np.zeros((T, len(CHANNELS)), np.float32)
    x[:n, 0] = 40
    x[:n, 1] = np.r_[0.0, rng.exponential(1e-5, n - 1)]
    x[:n, 2] = 1024
    x[:n, 4] = 1
    return x, n


def _exfil(rng, T):
    n = int(rng.integers(3 * T, 10 * T))
    x = np.zeros((T, len(CHANNELS)), np.float32)
    x[:, 0] = 1500
    x[:, 1] = rng.exponential(1e-4, T)
    x[0, 1] = 0
    x[:, 2] = 29200
    x[:, 8] = 1
    x[:, 7] = 1
    return x, n


def flow_statistics(packets: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """A few CICFlowMeter-like statistics of the kept packets (plus a constant and a sometimes-NaN column)."""
    T = packets.shape[1]
    valid = np.arange(T)[None, :] < np.minimum(lengths, T)[:, None]
    size = np.where(valid, packets[..., 0], 0.0)
    iat = np.where(valid, packets[..., 1], 0.0)
    fwd = valid & (packets[..., 3] == 0)
    k = valid.sum(1).clip(min=1)
    dur = iat.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(dur > 0, size.sum(1) / dur, np.inf)  # inf like CICFlowMeter's zero-duration rates
    return pd.DataFrame({
        "duration": dur, "total_packets": lengths.astype(float), "fwd_packets": fwd.sum(1).astype(float),
        "bwd_packets": (valid & ~fwd).sum(1).astype(float), "total_bytes": size.sum(1),
        "mean_size": size.sum(1) / k, "max_size": size.max(1), "mean_iat": dur / k,
        "syn_count": (packets[..., 4] * valid).sum(1), "ack_count": (packets[..., 8] * valid).sum(1),
        "psh_count": (packets[..., 7] * valid).sum(1), "init_win": packets[:, 0, 2],
        "bytes_per_s": rate, "constant": np.ones(len(lengths)),
    })


def make_synthetic_store(root: str | Path, n_benign: int = 1200, n_attack: int = 150, T: int = 16, seed: int = 0,
                         with_packets: bool = True) -> Path:
    """Write a store of benign + ``synflood`` + ``exfil`` flows; returns its root."""
    rng = np.random.default_rng(seed)
    kinds = ["benign"] * n_benign + ["synflood"] * n_attack + ["exfil"] * n_attack
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    gens = {"benign": _benign, "synflood": _synflood, "exfil": _exfil}
    rows = [gens[k](rng, T) for k in kinds]
    packets = np.stack([r[0] for r in rows])
    lengths = np.array([r[1] for r in rows], dtype=np.int32)
    n = len(kinds)
    flows = pd.DataFrame({
        "flow_id": np.arange(n), "src_ip": "10.0.0.1", "src_port": 1024 + np.arange(n), "dst_ip": "10.0.0.2",
        "dst_port": 443, "protocol": 6, "first_ts": np.arange(n, dtype=float), "last_ts": np.arange(n) + 1.0,
        "n_packets": lengths, "label": ["BENIGN" if k == "benign" else k.upper() for k in kinds],
        "attack_class": kinds, "is_attack": [k != "benign" for k in kinds], "source_file": "synthetic.pcap",
    })
    w = StoreWriter(root, T)
    if with_packets:
        w.add_shard(packets, lengths)
    w.finish(flows, flow_statistics(packets, lengths), has_packets=with_packets)
    return Path(root)


def synthetic_split(store, seed: int = 0, n_train: int = 600, n_val: int = 200):
    return make_split(store.flows, seed=seed, n_train=n_train, n_val=n_val, source="synthetic")


def make_janus_like_table(seed: int = 0, n_val: int = 400, n_test_benign: int = 400, n_per_class: int = 100,
                          nan_columns: tuple[str, ...] = (), shift: float = 3.0) -> ScoreTable:
    """A ScoreTable with the 10 JANUS columns: correlated Gaussian benign scores; attack classes
    ``dos`` (shifted continuous scores) and ``scan`` (shifted discrete scores); chosen columns NaN."""
    rng = np.random.default_rng(seed)
    k = len(JANUS_SCORE_NAMES)
    A = rng.normal(size=(k, k)) * 0.3 + np.eye(k)
    n_b = n_val + n_test_benign

    def draw(m):
        return rng.normal(size=(m, k)) @ A.T + 5.0

    S = [draw(n_b)]
    dos = draw(n_per_class)
    dos[:, :3] += shift
    scan = draw(n_per_class)
    scan[:, 3:] += shift
    S = np.concatenate(S + [dos, scan]).astype(np.float32)
    for c in nan_columns:
        S[:, JANUS_SCORE_NAMES.index(c)] = np.nan
    split = np.r_[np.full(n_val, "val"), np.full(len(S) - n_val, "test")]
    cls = np.r_[np.full(n_b, "benign"), np.full(n_per_class, "dos"), np.full(n_per_class, "scan")]
    return ScoreTable(np.arange(len(S)), split, np.where(cls == "benign", "BENIGN", cls.astype(object)).astype(str),
                      cls, cls != "benign", JANUS_SCORE_NAMES, S)
