"""The demo traffic generator (SPEC "Demo data"): real captures + CIC label CSVs + a HIKARI CSV.

For each domain of ``cfg["domains"]`` (profiles in :data:`PROFILES`: demo_a, demo_b, demo_c differ in
RTT, MTU, TCP windows/OS mix, service and attack mix, capture format and clock) this writes

- ``{out_dir}/{domain}/capture.pcap`` (classic pcap) or ``capture.pcapng`` (demo_c; some clients
  VLAN-tagged), Ethernet, microsecond timestamps, starting at the profile's ``epoch`` (UTC);
- ``{out_dir}/{domain}/sessions.csv``: the generator's ground truth, one row per generated session
  (label, service or family, 5-tuple, start, whether a full handshake was generated);
- ``{out_dir}/{domain}/labels.csv``: one CIC-IDS2017 GeneratedLabelledFlows row per flow of the
  capture (flow definition and statistics in :mod:`nidsflow.demo.flows`), the Timestamp
  being the flow's first packet in the domain's local time (capture UTC + ``utc_offset_s``: demo_a
  UTC-3 h, demo_b UTC+1 h, demo_c UTC+7 h), written with ``timestamp_format``
  ("%d/%m/%Y %H:%M:%S", as CIC-IDS2017's Monday file);

and, over all domains, ``{out_dir}/hikari/ALLFLOWMETER_HIKARI2021.csv`` (``hikari_rows`` flows drawn
without replacement from the domains' flows, HIKARI-2021 columns) and ``{out_dir}/manifest.json``
(per-domain packet and flow counts per label). The same ``seed`` gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nidsflow.demo.flows import CIC_COLUMNS, assemble_flows, cic_row, flow_arrays, flow_label, packet_columns
from nidsflow.demo.hikari_csv import write_hikari
from nidsflow.demo.traffic import ATTACK_FAMILIES, BENIGN, PROFILES, DomainBuilder, DomainProfile
from nidsflow.demo.wire import FrameBuilder, ip_to_str, write_pcap, write_pcapng

log = logging.getLogger(__name__)

#: Defaults of the ``demo:`` config section.
DEFAULTS = {
    "seed": 7,
    "domains": ["demo_a", "demo_b", "demo_c"],
    "benign_sessions": 2400,
    "attack_sessions": 900,
    "duration_s": 3600,
    "hikari_rows": 6000,
    "idle_timeout_s": 120.0,
    "active_timeout_s": 1800.0,
}

HIKARI_FILE = "hikari/ALLFLOWMETER_HIKARI2021.csv"
MANIFEST_FILE = "manifest.json"


def capture_file(domain: str) -> str:
    """Capture path of a domain relative to the demo folder (``{domain}/capture.pcap[ng]``)."""
    return f"{domain}/capture.{profile(domain).capture_format}"


def labels_file(domain: str) -> str:
    return f"{domain}/labels.csv"


def sessions_file(domain: str) -> str:
    """Generator ground truth (one row per generated session), for checks of the extractor."""
    return f"{domain}/sessions.csv"


SESSION_COLUMNS = ("sid", "label", "kind", "proto", "client", "client_port", "server", "server_port",
                   "start_utc", "complete_handshake")


def profile(domain: str) -> DomainProfile:
    if domain not in PROFILES:
        raise ValueError(f"demo domain {domain!r} is unknown; known domains: {sorted(PROFILES)}")
    return PROFILES[domain]


@dataclass
class DomainResult:
    """One generated domain: its flows (with labels), column arrays of its packets and its sessions."""

    domain: str
    flows: list
    labels: list
    cols: dict
    sessions: list
    n_packets: int


def _seed_for(seed: int, domain: str) -> int:
    return random.Random(f"nidsflow-demo-frames/{seed}/{domain}").getrandbits(32)


def generate_domain(domain: str, out_dir: str | Path, seed: int, benign_sessions: int, attack_sessions: int,
                    duration_s: float, idle_timeout_s: float = 120.0, active_timeout_s: float = 1800.0) -> DomainResult:
    """Generate one domain's capture and label CSV under ``out_dir`` (see the module docstring)."""
    prof = profile(domain)
    if benign_sessions < 1 or attack_sessions < 0 or duration_s <= 0:
        raise ValueError(f"demo {domain}: benign_sessions must be >= 1, attack_sessions >= 0 and duration_s > 0 "
                         f"(got {benign_sessions}, {attack_sessions}, {duration_s})")
    out = Path(out_dir)
    (out / domain).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    builder = DomainBuilder(prof, seed, duration_s)
    traffic = builder.build(benign_sessions, attack_sessions)
    records = sorted(traffic.records)  # (ts_us, emission order) first: a total order
    t1 = time.perf_counter()
    frames = FrameBuilder(_seed_for(seed, domain), builder.is_internal)
    epoch_us = prof.epoch * 1_000_000
    path = out / capture_file(domain)
    if prof.capture_format == "pcapng":
        n = write_pcapng(path, records, frames, epoch_us, comment=f"nidsflow demo domain {domain}, seed {seed}")
    else:
        n = write_pcap(path, records, frames, epoch_us)
    t2 = time.perf_counter()
    flows = assemble_flows(records, idle_timeout_s, active_timeout_s)
    cols = packet_columns(records)
    labels = [flow_label(f, cols["sid"], traffic.sessions) for f in flows]
    order = sorted(range(len(flows)), key=lambda i: (flows[i].start_us, flows[i].idx[0]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CIC_COLUMNS)
    for i in order:
        w.writerow(cic_row(flows[i], flow_arrays(flows[i], cols), labels[i], prof.utc_offset_s, epoch_us,
                           prof.timestamp_format))
    (out / labels_file(domain)).write_text(buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SESSION_COLUMNS)
    for ss in traffic.sessions:
        w.writerow([ss.sid, ss.label, ss.kind, ss.proto, ip_to_str(ss.client), ss.sport, ip_to_str(ss.server), ss.dport,
                    f"{prof.epoch + ss.start_s:.6f}", int(ss.complete)])
    (out / sessions_file(domain)).write_text(buf.getvalue())
    t3 = time.perf_counter()
    log.info("demo %s: %d sessions, %d packets, %d flows (%d attack); build %.1fs, write %.1fs, labels %.1fs",
             domain, len(traffic.sessions), n, len(flows), sum(lab != BENIGN for lab in labels),
             t1 - t0, t2 - t1, t3 - t2)
    return DomainResult(domain, flows, labels, cols, traffic.sessions, n)


def _resolve(cfg: dict) -> dict:
    unknown = set(cfg) - set(DEFAULTS) - {"out_dir"}
    if unknown:
        raise ValueError(f"demo config: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    full = {**DEFAULTS, **{k: v for k, v in cfg.items() if k != "out_dir"}}
    for d in full["domains"]:
        profile(d)
    if int(full["hikari_rows"]) < 1:
        raise ValueError(f"demo config: hikari_rows must be >= 1 (got {full['hikari_rows']})")
    return full


def generate_demo(out_dir: str | Path, cfg: dict) -> dict:
    """Generate every demo file under ``out_dir`` from the ``demo:`` config section; returns the manifest
    (also written to ``{out_dir}/manifest.json``)."""
    c = _resolve(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(c["seed"])
    results = []
    manifest: dict = {
        "seed": seed, "duration_s": float(c["duration_s"]), "benign_sessions": int(c["benign_sessions"]),
        "attack_sessions": int(c["attack_sessions"]),
        "flow_definition": {"idle_timeout_s": float(c["idle_timeout_s"]), "active_timeout_s": float(c["active_timeout_s"]),
                            "tcp_end": "RST, or the first pure ACK after FINs from both directions"},
        "domains": {},
    }
    for domain in c["domains"]:
        res = generate_domain(domain, out, seed, int(c["benign_sessions"]), int(c["attack_sessions"]),
                              float(c["duration_s"]), float(c["idle_timeout_s"]), float(c["active_timeout_s"]))
        results.append(res)
        prof = profile(domain)
        per_label = Counter(res.labels)
        manifest["domains"][domain] = {
            "capture": capture_file(domain), "capture_format": prof.capture_format, "labels": labels_file(domain),
            "sessions": sessions_file(domain),
            "pcaps": 1, "packets": res.n_packets,
            "vlan_tagged_packets": int(np.count_nonzero(res.cols["vlan"])),
            "flows": len(res.flows),
            "benign_flows": per_label.get(BENIGN, 0), "attack_flows": len(res.flows) - per_label.get(BENIGN, 0),
            "flows_per_label": {lab: per_label.get(lab, 0) for lab in (BENIGN, *ATTACK_FAMILIES)},
            "sessions_per_kind": dict(sorted(Counter(s.kind for s in res.sessions).items())),
            "epoch_utc": prof.epoch, "utc_offset_s": prof.utc_offset_s, "timestamp_format": prof.timestamp_format,
            "mtu": prof.mtu, "mss": prof.mss, "rtt_median_s": prof.rtt_median_s, "lan": prof.lan,
        }
    cats = write_hikari(out / HIKARI_FILE, results, int(c["hikari_rows"]), seed)
    manifest["hikari"] = {"csv": HIKARI_FILE, "rows": sum(cats.values()), "per_category": dict(sorted(cats.items()))}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


__all__ = ["DEFAULTS", "PROFILES", "SESSION_COLUMNS", "DomainResult", "capture_file", "labels_file", "sessions_file",
           "generate_demo", "generate_domain", "profile"]
