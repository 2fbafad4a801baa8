"""Demo generator, HIKARI-2021 format: the ALLFLOWMETER columns and the writer of the demo's HIKARI CSV.

:data:`HIKARI_COLUMNS` is the header of HIKARI-2021's ``ALLFLOWMETER_HIKARI2021.csv`` (a leading unnamed
index column, ``Unnamed: 0``, ``uid``, the endpoints, the 80 Zeek flowmeter statistics,
``traffic_category`` and ``Label``); the one copy of it in the package (the generated test tables of
:mod:`nidsflow.fixtures` use it too). :func:`write_hikari` draws the demo's rows from the generated
domains' flows, their statistics computed by :func:`nidsflow.demo.flows.hikari_row`.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np

from nidsflow.demo.flows import Flow, flow_arrays, hikari_row
from nidsflow.demo.traffic import BENIGN
from nidsflow.demo.wire import ip_to_str

log = logging.getLogger(__name__)

HIKARI_COLUMNS: tuple[str, ...] = (
    "", "Unnamed: 0", "uid", "originh", "originp", "responh", "responp", "flow_duration", "fwd_pkts_tot",
    "bwd_pkts_tot", "fwd_data_pkts_tot", "bwd_data_pkts_tot", "fwd_pkts_per_sec", "bwd_pkts_per_sec",
    "flow_pkts_per_sec", "down_up_ratio", "fwd_header_size_tot", "fwd_header_size_min", "fwd_header_size_max",
    "bwd_header_size_tot", "bwd_header_size_min", "bwd_header_size_max", "flow_FIN_flag_count",
    "flow_SYN_flag_count", "flow_RST_flag_count", "fwd_PSH_flag_count", "bwd_PSH_flag_count", "flow_ACK_flag_count",
    "fwd_URG_flag_count", "bwd_URG_flag_count", "flow_CWR_flag_count", "flow_ECE_flag_count",
    "fwd_pkts_payload.min", "fwd_pkts_payload.max", "fwd_pkts_payload.tot", "fwd_pkts_payload.avg",
    "fwd_pkts_payload.std", "bwd_pkts_payload.min", "bwd_pkts_payload.max", "bwd_pkts_payload.tot",
    "bwd_pkts_payload.avg", "bwd_pkts_payload.std", "flow_pkts_payload.min", "flow_pkts_payload.max",
    "flow_pkts_payload.tot", "flow_pkts_payload.avg", "flow_pkts_payload.std", "fwd_iat.min", "fwd_iat.max",
    "fwd_iat.tot", "fwd_iat.avg", "fwd_iat.std", "bwd_iat.min", "bwd_iat.max", "bwd_iat.tot", "bwd_iat.avg",
    "bwd_iat.std", "flow_iat.min", "flow_iat.max", "flow_iat.tot", "flow_iat.avg", "flow_iat.std",
    "payload_bytes_per_second", "fwd_subflow_pkts", "bwd_subflow_pkts", "fwd_subflow_bytes", "bwd_subflow_bytes",
    "fwd_bulk_bytes", "bwd_bulk_bytes", "fwd_bulk_packets", "bwd_bulk_packets", "fwd_bulk_rate", "bwd_bulk_rate",
    "active.min", "active.max", "active.tot", "active.avg", "active.std", "idle.min", "idle.max", "idle.tot",
    "idle.avg", "idle.std", "fwd_init_window_size", "bwd_init_window_size", "fwd_last_window_size",
    "traffic_category", "Label",
)

#: HIKARI traffic_category of each demo label (benign services split into Benign / Background).
HIKARI_CATEGORY = {
    "SYN Flood": "Probing", "PortScan": "Probing", "UDP Flood": "Probing", "Slow HTTP DoS": "Probing",
    "SSH-Patator": "Bruteforce", "FTP-Patator": "Bruteforce", "Web Attack - Oversized": "Bruteforce-XML",
    "C2 Beaconing": "XMRIGCC CryptoMiner",
}
#: Benign kinds HIKARI would call "Background" (infrastructure chatter rather than user activity).
HIKARI_BACKGROUND_KINDS = frozenset({"dns", "ntp", "long"})


def _zeek_uid(rnd: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "C" + "".join(rnd.choice(alphabet) for _ in range(17))


def hikari_category(label: str, kind: str) -> str:
    if label == BENIGN:
        return "Background" if kind in HIKARI_BACKGROUND_KINDS else "Benign"
    return HIKARI_CATEGORY[label]


def write_hikari(path: Path, results: list, n_rows: int, seed: int) -> Counter:
    """HIKARI-2021-format CSV of ``n_rows`` flows drawn without replacement from all domains' flows
    (``results``: the :class:`nidsflow.demo.generate.DomainResult` of each domain)."""
    pool = [(d, i) for d, res in enumerate(results) for i in range(len(res.flows))]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2021]))
    if n_rows >= len(pool):
        log.warning("demo HIKARI CSV: %d rows asked, only %d flows exist: writing all of them", n_rows, len(pool))
        chosen = pool
    else:
        pick = np.sort(rng.choice(len(pool), size=n_rows, replace=False))
        chosen = [pool[int(k)] for k in pick]
    chosen.sort(key=lambda di: (results[di[0]].flows[di[1]].start_us, di))
    rnd = random.Random(f"nidsflow-demo-hikari/{seed}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HIKARI_COLUMNS)
    cats: Counter = Counter()
    for row_i, (d, i) in enumerate(chosen):
        res = results[d]
        f: Flow = res.flows[i]
        label = res.labels[i]
        cat = hikari_category(label, res.sessions[f.sid].kind)
        cats[cat] += 1
        feats = hikari_row(f, flow_arrays(f, res.cols))
        w.writerow([row_i, row_i, _zeek_uid(rnd), ip_to_str(f.src), f.sport, ip_to_str(f.dst), f.dport,
                    *[repr(float(v)) if isinstance(v, (float, np.floating)) else int(v) for v in feats],
                    cat, 0 if label == BENIGN else 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue())
    return cats


__all__ = ["HIKARI_BACKGROUND_KINDS", "HIKARI_CATEGORY", "HIKARI_COLUMNS", "hikari_category", "write_hikari"]
