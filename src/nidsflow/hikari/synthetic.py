"""A generated table shaped like HIKARI-2021 (exact header, realistic marginals) for tests and benchmarks.

Not a substitute for the real data: rows are drawn per traffic category from log-normal packet counts,
payload sizes and inter-arrival times, and the 80 statistics are derived from those draws so that
they stay mutually consistent (totals = fwd + bwd, rates = count / duration, avg = tot / count, ...).
Category mix follows HIKARI-2021's published counts (Ferriyan et al. 2021): Benign 347 431,
Background 170 151, Probing 23 388, Bruteforce 5 884, Bruteforce-XML 5 145, XMRIGCC CryptoMiner 3 279.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HEADER = (
    ",Unnamed: 0,uid,originh,originp,responh,responp,flow_duration,fwd_pkts_tot,bwd_pkts_tot,fwd_data_pkts_tot,"
    "bwd_data_pkts_tot,fwd_pkts_per_sec,bwd_pkts_per_sec,flow_pkts_per_sec,down_up_ratio,fwd_header_size_tot,"
    "fwd_header_size_min,fwd_header_size_max,bwd_header_size_tot,bwd_header_size_min,bwd_header_size_max,"
    "flow_FIN_flag_count,flow_SYN_flag_count,flow_RST_flag_count,fwd_PSH_flag_count,bwd_PSH_flag_count,"
    "flow_ACK_flag_count,fwd_URG_flag_count,bwd_URG_flag_count,flow_CWR_flag_count,flow_ECE_flag_count,"
    "fwd_pkts_payload.min,fwd_pkts_payload.max,fwd_pkts_payload.tot,fwd_pkts_payload.avg,fwd_pkts_payload.std,"
    "bwd_pkts_payload.min,bwd_pkts_payload.max,bwd_pkts_payload.tot,bwd_pkts_payload.avg,bwd_pkts_payload.std,"
    "flow_pkts_payload.min,flow_pkts_payload.max,flow_pkts_payload.tot,flow_pkts_payload.avg,flow_pkts_payload.std,"
    "fwd_iat.min,fwd_iat.max,fwd_iat.tot,fwd_iat.avg,fwd_iat.std,bwd_iat.min,bwd_iat.max,bwd_iat.tot,bwd_iat.avg,"
    "bwd_iat.std,flow_iat.min,flow_iat.max,flow_iat.tot,flow_iat.avg,flow_iat.std,payload_bytes_per_second,"
    "fwd_subflow_pkts,bwd_subflow_pkts,fwd_subflow_bytes,bwd_subflow_bytes,fwd_bulk_bytes,bwd_bulk_bytes,"
    "fwd_bulk_packets,bwd_bulk_packets,fwd_bulk_rate,bwd_bulk_rate,active.min,active.max,active.tot,active.avg,"
    "active.std,idle.min,idle.max,idle.tot,idle.avg,idle.std,fwd_init_window_size,bwd_init_window_size,"
    "fwd_last_window_size,traffic_category,Label"
).split(",")

#: category -> (share, label, fwd pkts log-mean, payload log-mean, iat log-mean (us), resp port, window)
CATEGORIES = {
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
    names = list(CATEGORIES)
    share = np.array([CATEGORIES[c][0] for c in names])
    cat = rng.choice(len(names), n_rows, p=share / share.sum())
    par = np.array([CATEGORIES[c][1:] for c in names], dtype=float)[cat]
    label = par[:, 0].astype(int)
    ben = np.array(CATEGORIES["Benign"][1:], dtype=float)
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
    assert list(df.columns) == HEADER, "synthetic HIKARI table lost the header order"
    return df
