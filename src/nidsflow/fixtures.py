"""Generated data for tests and benchmarks: flow stores, JANUS-like score tables, HIKARI-like flow tables.

Nothing here produces a reported result; the pipeline's data come from captures, flow tables or the
demo generator (:mod:`nidsflow.demo`). Flow statistics of a generated store are computed from its own
packets, so the flow and packet views agree.

Flow stores (same layout as an extracted store, :mod:`nidsflow.store`):

- :func:`make_scan_flood_store` (JANUS tests and ``bench/janus.py``): benign TCP sessions (SYN,
  handshake, request/response with PSH/ACK, FIN at the end; log-normal sizes, exponential gaps) and
  the attack classes ``scan`` (one or two packets, SYN then RST, tiny sizes), ``flood`` (long runs of
  equal large forward packets, microsecond gaps, no backward traffic) and optionally ``mimic`` (benign
  sessions with slightly larger packets and slower gaps: a hard class);
- :func:`make_synflood_exfil_store` (baseline tests): benign request/response sessions (heavy-tailed
  sizes and inter-arrival times) and the attack classes ``synflood`` (one or two bare SYNs, tiny window,
  microsecond gaps) and ``exfil`` (long one-way bursts of full-size packets); :func:`synthetic_split`
  splits it.

Score and flow tables: :func:`make_janus_like_table` (a ScoreTable with the 10 JANUS columns, for the
aggregator and table tests) and :func:`generate_hikari_like` (HIKARI-2021's exact header, from
:mod:`nidsflow.demo.hikari_csv`, and its category mix, for the HIKARI tests and ``bench/hikari.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.demo.hikari_csv import HIKARI_COLUMNS
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import make_split
from nidsflow.store import CHANNELS, StoreWriter

_C = {c: i for i, c in enumerate(CHANNELS)}


def _closed(x: np.ndarray, n: int, k: int, T: int) -> np.ndarray:
    """A session whose ``n`` packets all fit in the T kept ones ends with a FIN on its last (``k - 1``)."""
    if n <= T:
        x[k - 1, _C["fin"]] = 1
    return x


def _no_packets(T: int) -> np.ndarray:
    """The [T, C] channels of a flow, all zero (the padding of the positions past its length)."""
    return np.zeros((T, len(CHANNELS)), np.float32)


# ------------------------------------------------------------------------------------- flow stores


def _write_store(root: str | Path, T: int, kinds: np.ndarray, labels, x: np.ndarray, n: np.ndarray,
                 features: pd.DataFrame, with_packets: bool, src_port, dst_port: int, source_file: str,
                 shard_flows: int = 100_000) -> Path:
    """A store of the generated flows ``kinds`` (packets ``x`` [N, T, C], lengths ``n``), in that order."""
    N = len(kinds)
    flows = pd.DataFrame({
        "flow_id": np.arange(N), "src_ip": "10.0.0.1", "src_port": src_port, "dst_ip": "10.0.0.2",
        "dst_port": dst_port, "protocol": 6, "first_ts": np.arange(N, dtype=float), "last_ts": np.arange(N) + 1.0,
        "n_packets": n, "label": labels, "attack_class": kinds, "is_attack": kinds != "benign",
        "source_file": source_file,
    })
    w = StoreWriter(root, T)
    if with_packets:
        for s in range(0, N, shard_flows):
            w.add_shard(x[s:s + shard_flows], n[s:s + shard_flows])
    w.finish(flows, features, has_packets=with_packets)
    return Path(root)


def _session(rng, T, heavy=False, size_shift=0.0, iat_scale=1.0):
    # heavy: packet counts with a median of ~9 and a long tail (as in captured traffic)
    n = int(min(2 + rng.lognormal(2.0, 1.1), 100 * T)) if heavy else int(rng.integers(4, 3 * T))
    x = _no_packets(T)
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
    return _closed(x, n, k, T), n


def _scan(rng, T):
    n = int(rng.integers(1, 3))
    x = _no_packets(T)
    x[0, [_C["size"], _C["win"], _C["syn"]]] = [40 + 4 * rng.integers(0, 3), 1024, 1]
    if n > 1:
        x[1, [_C["size"], _C["iat"], _C["win"], _C["dir"], _C["rst"], _C["ack"]]] = [40, rng.exponential(0.001), 0, 1, 1, 1]
    return x, n


def _burst(T: int, size, iat: np.ndarray, win: int) -> np.ndarray:
    """T forward packets of one ``size``, gaps ``iat`` (the first 0), window ``win``, PSH and ACK set."""
    x = _no_packets(T)
    x[:, _C["size"]] = size
    x[:, _C["iat"]] = iat
    x[0, _C["iat"]] = 0
    x[:, _C["win"]] = win
    x[:, _C["ack"]] = 1
    x[:, _C["psh"]] = 1
    return x


def _flood(rng, T):
    n = int(rng.integers(T, 4 * T))
    size = rng.choice([1200, 1400])
    return _burst(T, size, rng.exponential(1e-5, T), 512), n


def _session_features(x: np.ndarray, n: np.ndarray) -> pd.DataFrame:
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


def make_scan_flood_store(root: str | Path, n_benign: int = 1000, n_scan: int = 100, n_flood: int = 100,
                          T: int = 16, seed: int = 0, with_packets: bool = True, shard_flows: int = 100_000,
                          n_mimic: int = 0, heavy_tailed_lengths: bool = False) -> Path:
    """Write a store of benign + scan + flood (+ mimic) flows, shuffled; returns its root.

    ``mimic`` flows are benign sessions with slightly larger packets (+0.4 in log size) and 2x slower
    gaps: a hard class, so AUROC comparisons (solvers, steps) are not all 1.0.
    ``heavy_tailed_lengths`` draws benign/mimic packet counts as 2 + LogNormal(2.0, 1.1) (median ~9).
    """
    rng = np.random.default_rng(seed)
    kinds = np.array(["benign"] * n_benign + ["scan"] * n_scan + ["flood"] * n_flood + ["mimic"] * n_mimic)
    kinds = kinds[rng.permutation(len(kinds))]
    make = {"benign": lambda r, T: _session(r, T, heavy_tailed_lengths), "scan": _scan, "flood": _flood,
            "mimic": lambda r, T: _session(r, T, heavy_tailed_lengths, size_shift=0.4, iat_scale=2.0)}
    xs, ns = zip(*(make[k](rng, T) for k in kinds))
    x, n = np.stack(xs), np.array(ns, dtype=np.int32)
    return _write_store(root, T, kinds, np.where(kinds == "benign", "BENIGN", kinds), x, n,
                        _session_features(x, n), with_packets, 1024 + np.arange(len(kinds)) % 60000, 80,
                        "synthetic", shard_flows)


def _request_response(rng, T):
    n = int(rng.integers(4, 3 * T))
    x = _no_packets(T)
    k = min(n, T)
    direction = np.r_[0, 1, 0, (np.arange(max(k - 3, 0)) % 2)][:k]
    size = 60 + rng.lognormal(5.5, 1.0, k).clip(0, 1400)
    size[:3] = [60, 60, 52][:min(3, k)]
    x[:k, _C["size"]] = size
    x[:k, _C["iat"]] = np.r_[0.0, rng.lognormal(-4, 1.2, k - 1)]
    x[:k, _C["win"]] = rng.normal(64000, 800)
    x[:k, _C["dir"]] = direction
    x[0, _C["syn"]] = 1
    x[1, _C["syn"]] = 1
    x[1:k, _C["ack"]] = 1
    x[3:k, _C["psh"]] = rng.random(max(k - 3, 0)) < 0.6
    return _closed(x, n, k, T), n


def _synflood(rng, T):
    n = int(rng.integers(1, 3))
    x = _no_packets(T)
    x[:n, _C["size"]] = 40
    x[:n, _C["iat"]] = np.r_[0.0, rng.exponential(1e-5, n - 1)]
    x[:n, _C["win"]] = 1024
    x[:n, _C["syn"]] = 1
    return x, n


def _exfil(rng, T):
    n = int(rng.integers(3 * T, 10 * T))
    return _burst(T, 1500, rng.exponential(1e-4, T), 29200), n


def flow_statistics(packets: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """A few CICFlowMeter-like statistics of the kept packets (plus a constant and a sometimes-NaN column)."""
    T = packets.shape[1]
    valid = np.arange(T)[None, :] < np.minimum(lengths, T)[:, None]
    size = np.where(valid, packets[..., _C["size"]], 0.0)
    iat = np.where(valid, packets[..., _C["iat"]], 0.0)
    fwd = valid & (packets[..., _C["dir"]] == 0)
    k = valid.sum(1).clip(min=1)
    dur = iat.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(dur > 0, size.sum(1) / dur, np.inf)  # inf like CICFlowMeter's zero-duration rates
    return pd.DataFrame({
        "duration": dur, "total_packets": lengths.astype(float), "fwd_packets": fwd.sum(1).astype(float),
        "bwd_packets": (valid & ~fwd).sum(1).astype(float), "total_bytes": size.sum(1),
        "mean_size": size.sum(1) / k, "max_size": size.max(1), "mean_iat": dur / k,
        "syn_count": (packets[..., _C["syn"]] * valid).sum(1), "ack_count": (packets[..., _C["ack"]] * valid).sum(1),
        "psh_count": (packets[..., _C["psh"]] * valid).sum(1), "init_win": packets[:, 0, _C["win"]],
        "bytes_per_s": rate, "constant": np.ones(len(lengths)),
    })


def make_synflood_exfil_store(root: str | Path, n_benign: int = 1200, n_attack: int = 150, T: int = 16,
                              seed: int = 0, with_packets: bool = True) -> Path:
    """Write a store of benign + ``synflood`` + ``exfil`` flows, shuffled; returns its root."""
    rng = np.random.default_rng(seed)
    kinds = ["benign"] * n_benign + ["synflood"] * n_attack + ["exfil"] * n_attack
    kinds = np.array([kinds[i] for i in rng.permutation(len(kinds))])
    gens = {"benign": _request_response, "synflood": _synflood, "exfil": _exfil}
    rows = [gens[k](rng, T) for k in kinds]
    packets = np.stack([r[0] for r in rows])
    lengths = np.array([r[1] for r in rows], dtype=np.int32)
    labels = ["BENIGN" if k == "benign" else k.upper() for k in kinds]
    return _write_store(root, T, kinds, labels, packets, lengths, flow_statistics(packets, lengths), with_packets,
                        1024 + np.arange(len(kinds)), 443, "synthetic.pcap")


def synthetic_split(store, seed: int = 0, n_train: int = 600, n_val: int = 200):
    return make_split(store.flows, seed=seed, n_train=n_train, n_val=n_val, source="synthetic")


# ------------------------------------------------------------------------------------- score tables


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
    # packet counts (geometric, many one-packet flows) from their own stream, so the scores stay as they were
    n_packets = np.random.default_rng([seed, 23]).geometric(0.3, size=len(S)).astype(np.int64)
    return ScoreTable(np.arange(len(S)), split, np.where(cls == "benign", "BENIGN", cls.astype(object)).astype(str),
                      cls, cls != "benign", JANUS_SCORE_NAMES, S, n_packets)


# ------------------------------------------------------------------------------------- HIKARI-like tables

# Not a substitute for the real data: rows are drawn per traffic category from log-normal packet counts,
# payload sizes and inter-arrival times, and the 80 statistics are derived from those draws so that they
# stay mutually consistent (totals = fwd + bwd, rates = count / duration, avg = tot / count, ...). The
# category mix follows HIKARI-2021's published counts (Ferriyan et al. 2021): Benign 347 431, Background
# 170 151, Probing 23 388, Bruteforce 5 884, Bruteforce-XML 5 145, XMRIGCC CryptoMiner 3 279.

#: category -> (share, label, fwd pkts log-mean, payload log-mean, iat log-mean (us), resp port, window)
HIKARI_LIKE_CATEGORIES = {
    "Benign": (0.6257, 0, 2.3, 5.5, 10.5, 443, 64240),
    "Background": (0.3065, 0, 1.2, 4.0, 12.5, 53, 0),
    "Probing": (0.0421, 1, 0.4, 1.0, 8.0, 80, 1024),
    "Bruteforce": (0.0106, 1, 2.0, 5.9, 9.5, 443, 29200),
    "Bruteforce-XML": (0.0093, 1, 2.1, 6.3, 9.8, 443, 29200),
    "XMRIGCC CryptoMiner": (0.0059, 1, 2.6, 4.6, 13.0, 5555, 64240),
}


def generate_hikari_like(n_rows: int, seed: int = 0, attack_overlap: float = 0.35) -> pd.DataFrame:
    """``n_rows`` rows with HIKARI-2021's exact columns; ``attack_overlap`` in [0, 1] moves attack
    distributions towards benign ones (1 = indistinguishable) so detectors are not trivially perfect."""
    rng = np.random.default_rng(seed)
    names = list(HIKARI_LIKE_CATEGORIES)
    share = np.array([HIKARI_LIKE_CATEGORIES[c][0] for c in names])
    cat = rng.choice(len(names), n_rows, p=share / share.sum())
    par = np.array([HIKARI_LIKE_CATEGORIES[c][1:] for c in names], dtype=float)[cat]
    label = par[:, 0].astype(int)
    ben = np.array(HIKARI_LIKE_CATEGORIES["Benign"][1:], dtype=float)
    mix = np.where(label[:, None] == 1, (1 - attack_overlap) * par + attack_overlap * ben, par)
    n = n_rows

    def lognorm(mu, s):
        return np.exp(mu + s * rng.standard_normal(n))

    fwd = np.maximum(1, np.round(lognorm(mix[:, 1], 0.9))).astype(int)
    bwd = np.maximum(0, np.round(fwd * lognorm(-0.1, 0.4) - rng.integers(0, 2, n))).astype(int)
    tot = fwd + bwd
    fwd_data = np.minimum(fwd, np.round(fwd * rng.uniform(0.2, 0.8, n))).astype(int)
    bwd_data = np.minimum(bwd, np.round(bwd * rng.uniform(0.2, 0.8, n))).astype(int)
    iat_avg = lognorm(mix[:, 3], 1.2)                         # microseconds
    duration = np.where(tot > 1, iat_avg * (tot - 1) / 1e6, 0.0)
    dur_safe = np.maximum(duration, 1e-6)
    fwd_pl_avg = lognorm(mix[:, 2], 0.8) * (fwd_data > 0)
    bwd_pl_avg = lognorm(mix[:, 2] + 0.5, 0.9) * (bwd_data > 0)
    fwd_pl_tot, bwd_pl_tot = fwd_pl_avg * fwd, bwd_pl_avg * bwd
    fwd_pl_max = np.minimum(1448 * 2, fwd_pl_avg * rng.uniform(1.5, 6, n))
    bwd_pl_max = np.minimum(1448 * 2, bwd_pl_avg * rng.uniform(1.5, 6, n))
    flow_pl_tot = fwd_pl_tot + bwd_pl_tot
    hdr_f = rng.choice([20, 32, 40], n)
    hdr_b = rng.choice([20, 32, 44], n)
    d = {}
    d[""] = np.arange(n)
    d["Unnamed: 0"] = np.arange(n)
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
    d["uid"] = ["C" + "".join(r) for r in alphabet[rng.integers(0, len(alphabet), (n, 16))]]
    d["originh"] = [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 255, (n, 3))]
    d["originp"] = rng.integers(1024, 65535, n)
    d["responh"] = [f"103.{a}.{b}.{c}" for a, b, c in rng.integers(0, 255, (n, 3))]
    d["responp"] = par[:, 4].astype(int)
    d["flow_duration"] = duration
    d["fwd_pkts_tot"], d["bwd_pkts_tot"] = fwd, bwd
    d["fwd_data_pkts_tot"], d["bwd_data_pkts_tot"] = fwd_data, bwd_data
    d["fwd_pkts_per_sec"], d["bwd_pkts_per_sec"] = fwd / dur_safe * (duration > 0), bwd / dur_safe * (duration > 0)
    d["flow_pkts_per_sec"] = tot / dur_safe * (duration > 0)
    d["down_up_ratio"] = bwd / fwd
    d["fwd_header_size_tot"], d["fwd_header_size_min"], d["fwd_header_size_max"] = fwd * hdr_f, hdr_f - 0 * hdr_f, hdr_f + 20
    d["bwd_header_size_tot"], d["bwd_header_size_min"], d["bwd_header_size_max"] = bwd * hdr_b, hdr_b * (bwd > 0), (hdr_b + 12) * (bwd > 0)
    tcp = par[:, 5] > 0
    d["flow_FIN_flag_count"] = np.where(tcp, rng.integers(0, 3, n), 0)
    d["flow_SYN_flag_count"] = np.where(tcp, np.minimum(tot, rng.integers(1, 3, n)), 0)
    d["flow_RST_flag_count"] = np.where(tcp, rng.binomial(2, np.where(label == 1, 0.4, 0.1)), 0)
    d["fwd_PSH_flag_count"], d["bwd_PSH_flag_count"] = np.where(tcp, fwd_data, 0), np.where(tcp, bwd_data, 0)
    d["flow_ACK_flag_count"] = np.where(tcp, np.maximum(tot - 1, 0), 0)
    for c in ("fwd_URG_flag_count", "bwd_URG_flag_count", "flow_CWR_flag_count", "flow_ECE_flag_count"):
        d[c] = rng.binomial(1, 0.002, n)
    for side, avg, tot_, mx, cnt in (("fwd", fwd_pl_avg, fwd_pl_tot, fwd_pl_max, fwd), ("bwd", bwd_pl_avg, bwd_pl_tot, bwd_pl_max, bwd)):
        d[f"{side}_pkts_payload.min"] = np.zeros(n)
        d[f"{side}_pkts_payload.max"] = mx
        d[f"{side}_pkts_payload.tot"] = tot_
        d[f"{side}_pkts_payload.avg"] = avg
        d[f"{side}_pkts_payload.std"] = avg * rng.uniform(0.5, 2.0, n) * (cnt > 1)
    d["flow_pkts_payload.min"] = np.zeros(n)
    d["flow_pkts_payload.max"] = np.maximum(fwd_pl_max, bwd_pl_max)
    d["flow_pkts_payload.tot"] = flow_pl_tot
    d["flow_pkts_payload.avg"] = flow_pl_tot / tot
    d["flow_pkts_payload.std"] = d["flow_pkts_payload.avg"] * rng.uniform(0.8, 2.0, n) * (tot > 1)
    for side, cnt in (("fwd", fwd), ("bwd", bwd), ("flow", tot)):
        t = duration * 1e6 * (cnt > 1)
        avg = t / np.maximum(cnt - 1, 1)
        d[f"{side}_iat.min"] = avg * rng.uniform(0.0, 0.3, n)
        d[f"{side}_iat.max"] = np.minimum(t, avg * rng.uniform(1, 8, n))
        d[f"{side}_iat.tot"] = t
        d[f"{side}_iat.avg"] = avg
        d[f"{side}_iat.std"] = avg * rng.uniform(0.2, 3, n) * (cnt > 2)
    d["payload_bytes_per_second"] = flow_pl_tot / dur_safe * (duration > 0)
    d["fwd_subflow_pkts"], d["bwd_subflow_pkts"] = fwd / 2.0, bwd / 2.0
    d["fwd_subflow_bytes"], d["bwd_subflow_bytes"] = fwd_pl_tot / 2.0, bwd_pl_tot / 2.0
    bulk = rng.random(n) < 0.05
    d["fwd_bulk_bytes"], d["bwd_bulk_bytes"] = np.where(bulk, fwd_pl_tot, 0.0), np.where(bulk, bwd_pl_tot, 0.0)
    d["fwd_bulk_packets"], d["bwd_bulk_packets"] = np.where(bulk, fwd_data, 0), np.where(bulk, bwd_data, 0)
    d["fwd_bulk_rate"] = d["fwd_bulk_bytes"] / dur_safe
    d["bwd_bulk_rate"] = d["bwd_bulk_bytes"] / dur_safe
    active = duration * 1e6 * rng.uniform(0.3, 1.0, n)
    idle = np.where(rng.random(n) < 0.2, duration * 1e6 - active, 0.0)
    for k, v in (("active", active), ("idle", idle)):
        d[f"{k}.min"], d[f"{k}.max"], d[f"{k}.tot"], d[f"{k}.avg"] = v * 0.8, v, v, v * 0.9
        d[f"{k}.std"] = v * rng.uniform(0, 0.2, n)
    d["fwd_init_window_size"] = np.where(tcp, par[:, 5], 0).astype(int)
    d["bwd_init_window_size"] = np.where(tcp, rng.choice([0, 28960, 65160, 65535], n), 0)
    d["fwd_last_window_size"] = np.where(tcp, rng.choice([0, 502, 64240], n), 0)
    d["traffic_category"] = np.array(names)[cat]
    d["Label"] = label
    df = pd.DataFrame(d)
    assert tuple(df.columns) == HIKARI_COLUMNS, "generated HIKARI table lost the header order"
    return df


# ---------------------------------------------------------------- the summary page's inputs

#: Methods, datasets and classes of :func:`make_summary_inputs` (invented numbers, for the page's tests).
SUMMARY_METHODS = ("JANUS (full, A1)", "Isolation Forest", "kNN (mean distance)", "MMR-style", "STFPM-style",
                   "GANomaly")
SUMMARY_CLASSES = {"demo_a": {"syn_flood": 120, "port_scan": 120, "dns_tunnel": 60, "exfil": 12},
                   "demo_b": {"syn_flood": 120, "brute_force": 80}, "demo_c": {"port_scan": 90, "exfil": 25}}


def make_summary_inputs(folder: str | Path, seed: int = 0, with_intervals: bool = True) -> dict:
    """Every input of the summary page in ``folder``, in the pipeline's formats, with seeded invented numbers:
    tables/within.md and within.csv, tables/intervals.csv (the schema of rule tables), a top-alerts JSON, a
    JANUS train_log.tsv and deep baselines' auroc.json with ``loss_history``, a ROC figure. Returns the paths
    (keys: within_md, within_csv, intervals, alerts, loss_files, figures)."""
    from nidsflow.plotting import plt

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    base = {m: 0.97 - 0.035 * i for i, m in enumerate(SUMMARY_METHODS)}
    base["JANUS (full, A1)"] = 0.93  # third on the demo, as the issue found
    rows, within_rows, md = [], [], ["# Within-dataset AUROC (%)", "", "Test AUROC in percent, mean ± std."]
    for ds, classes in SUMMARY_CLASSES.items():
        n_benign = 500
        md += ["", f"## {ds}", "", "| method | params | overall | per-class median | " + " | ".join(classes) + " |",
               "|" + "---|" * (4 + len(classes))]
        for m in SUMMARY_METHODS:
            a = float(np.clip(base[m] + rng.normal(0, 0.02), 0.5, 0.999))
            half = 0.012 + 0.01 * rng.random()
            det = float(np.clip(a - 0.3 + rng.normal(0, 0.05), 0, 1))
            fpr = float(np.clip(0.01 + rng.normal(0, 0.004), 0, 1))
            rows.append({"dataset": ds, "method": m, "category": "overall", "n_benign": n_benign,
                         "n_attack": sum(classes.values()), "n_seeds": 2, "auroc": a, "auroc_lo": a - half,
                         "auroc_hi": min(1.0, a + half), "auprc": a - 0.05, "det_rate": det, "fpr_realised": fpr,
                         "fpr_target": 0.01, "in_median": "false", "group_by": "none"})
            within_rows.append({"dataset": ds, "method": m, "column": "overall", "auroc_mean": a, "auroc_std": 0.004,
                                "n_seeds": 2, "cell": f"{100 * a:.2f} ± 0.40", "reason": ""})
            cells = []
            for c, n in classes.items():
                ac = float(np.clip(a + rng.normal(0, 0.04), 0.3, 1.0))
                w = 0.3 / np.sqrt(n)
                rows.append({"dataset": ds, "method": m, "category": c, "n_benign": n_benign, "n_attack": n,
                             "n_seeds": 2, "auroc": ac, "auroc_lo": max(0.0, ac - w), "auroc_hi": min(1.0, ac + w),
                             "auprc": ac - 0.1, "det_rate": float(np.clip(ac - 0.3, 0, 1)), "fpr_realised": fpr,
                             "fpr_target": 0.01, "in_median": "true" if n >= 30 else "false",
                             "group_by": "none"})
                within_rows.append({"dataset": ds, "method": m, "column": c, "auroc_mean": ac, "auroc_std": 0.01,
                                    "n_seeds": 2, "cell": f"{100 * ac:.2f} ± 1.00", "reason": ""})
                cells.append(f"{100 * ac:.2f} ± 1.00")
            med = float(np.median([float(x.split()[0]) for x in cells]))
            md.append(f"| {m} | 100.0k | {100 * a:.2f} ± 0.40 | {med:.2f} ± 1.00 | " + " | ".join(cells) + " |")
    md += ["", "---", "Provenance:", "- seeds: 42, 43"]
    paths = {"within_md": folder / "tables" / "within.md", "within_csv": folder / "tables" / "within.csv",
             "intervals": folder / "tables" / "intervals.csv"}
    paths["within_md"].write_text("\n".join(md) + "\n")
    pd.DataFrame(within_rows).to_csv(paths["within_csv"], index=False)
    if with_intervals:
        pd.DataFrame(rows).to_csv(paths["intervals"], index=False)
    # top alerts as rule report_alerts writes them
    from nidsflow.scores import JANUS_SCORE_NAMES

    flows = []
    for k in range(5):
        contrib = rng.gamma(1.0, 1.0, len(JANUS_SCORE_NAMES)) * (rng.random(len(JANUS_SCORE_NAMES)) > 0.3)
        d2 = float(contrib.sum() * 40)
        flows.append({"rank": k + 1, "flow_id": int(100 + k), "flow": f"10.0.0.{k + 2}:{40000 + k} → 10.0.1.1:80 proto 6",
                      "n_packets": int(2 + 3 * k), "category": "syn_flood" if k != 3 else "benign",
                      "label": "SYN flood" if k != 3 else "BENIGN", "d2": d2, "d2_rescored": d2, "alert": True,
                      "threshold": 25.0,
                      "axis_contribution": {n: float(c * 40) for n, c in zip(JANUS_SCORE_NAMES, contrib)},
                      "axis_share": {n: float(c / contrib.sum()) for n, c in zip(JANUS_SCORE_NAMES, contrib)},
                      "dfm_top": [{"packet": j + 1, "channel": ch, "nll": float(3 - j), "contribution": float(0.4 / (j + 1))}
                                  for j, ch in enumerate(("syn", "ack", "dir"))]})
    paths["alerts"] = folder / "report" / "top_alerts.json"
    paths["alerts"].parent.mkdir(parents=True, exist_ok=True)
    paths["alerts"].write_text(json.dumps({"dataset": "demo_a", "run": "full seed 42", "flows": flows}))
    # learning curves: JANUS's train_log.tsv, two deep baselines with loss_history, one without
    loss = {}
    janus = folder / "demo_a" / "janus" / "full" / "seed42" / "train_log.tsv"
    janus.parent.mkdir(parents=True, exist_ok=True)
    ep = np.arange(1, 11)
    pd.DataFrame({"epoch": ep, "train_loss": 2.0 / ep + 0.5, "val_loss": 2.1 / ep + 0.55}).to_csv(janus, sep="\t",
                                                                                                 index=False)
    loss["JANUS (full, A1)"] = janus
    for m, n_ep in (("mmr", 8), ("stfpm", 12)):
        f = folder / "demo_a" / "baselines" / m / "seed42" / "auroc.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        e = np.arange(1, n_ep + 1)
        hist = [{"epoch": int(i), "train_loss": float(1 / i + 0.1), "val_loss": float(1.1 / i + 0.12 + 0.01 * (i > 6) * i)}
                for i in e]
        f.write_text(json.dumps({"method": m, "loss_history": {"net": hist}}))
        loss[{"mmr": "MMR-style", "stfpm": "STFPM-style"}[m]] = f
    f = folder / "demo_a" / "baselines" / "ganomaly" / "seed42" / "auroc.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"method": "ganomaly"}))
    loss["GANomaly"] = f
    paths["loss_files"] = loss
    fig_path = folder / "figures" / "demo_a" / "roc.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 0.1, 1], [0, 0.9, 1])
    fig.savefig(fig_path, dpi=60)
    plt.close(fig)
    paths["figures"] = [fig_path]
    return paths
