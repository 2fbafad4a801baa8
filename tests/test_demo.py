"""The demo traffic generator, checked by an independent reader (dpkt) on a reduced configuration."""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import json
import socket
import struct
from collections import defaultdict
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest

from nidsflow.demo.flows import CIC_COLUMNS
from nidsflow.demo.generate import DEFAULTS, PROFILES, generate_demo
from nidsflow.demo.hikari_csv import HIKARI_COLUMNS
from nidsflow.demo.traffic import ATTACK_FAMILIES

SMALL = {"seed": 11, "benign_sessions": 160, "attack_sessions": 96, "duration_s": 600, "hikari_rows": 300}
IDLE_US = 120_000_000
ACTIVE_US = 1_800_000_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out, SMALL)


# ---------------------------------------------------------------- an independent reader (dpkt)


def read_capture(path: Path) -> list[dict]:
    """Every packet of a pcap/pcapng, parsed by dpkt, with its checksums and lengths verified."""
    with open(path, "rb") as fh:
        reader = dpkt.pcapng.Reader(fh) if path.suffix == ".pcapng" else dpkt.pcap.Reader(fh)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        packets = []
        for ts, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            assert isinstance(ip, dpkt.ip.IP), f"non-IPv4 frame in {path}"
            l2 = 14 + 4 * len(getattr(eth, "vlan_tags", []) or [])
            wire = buf[l2:]
            hdr = wire[: ip.hl * 4]
            l4 = wire[ip.hl * 4: ip.len]
            pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, ip.p, len(l4))
            pkt = {
                "ts": int(round(ts * 1e6)), "src": socket.inet_ntoa(ip.src), "dst": socket.inet_ntoa(ip.dst),
                "proto": ip.p, "ip_len": ip.len, "wire_len": len(wire), "ip_ok": dpkt.in_cksum(hdr) == 0,
                "l4_ok": dpkt.in_cksum(pseudo + l4) == 0, "vlan": l2 == 18,
            }
            seg = ip.data
            pkt["sport"], pkt["dport"] = seg.sport, seg.dport
            if ip.p == dpkt.ip.IP_PROTO_TCP:
                pkt.update(flags=seg.flags, seq=seg.seq, ack=seg.ack, win=seg.win, plen=len(seg.data))
            else:
                pkt.update(flags=0, seq=0, ack=0, win=0, plen=len(seg.data))
            packets.append(pkt)
    return packets


def assemble(packets: list[dict]) -> list[dict]:
    """Bidirectional flows: canonical 5-tuple, idle 120 s / active 1800 s, RST or last ACK after two FINs."""
    table, flows = {}, []
    for i, p in enumerate(packets):
        a, b = (p["src"], p["sport"]), (p["dst"], p["dport"])
        key = (p["proto"],) + (a + b if a <= b else b + a)
        f = table.get(key)
        if f is not None and (p["ts"] - f["last"] > IDLE_US or p["ts"] - f["start"] > ACTIVE_US):
            f = None
        if f is None:
            f = {"key": key, "src": a, "start": p["ts"], "last": p["ts"], "pkts": [], "fins": set()}
            table[key] = f
            flows.append(f)
        f["pkts"].append(i)
        f["last"] = p["ts"]
        fwd = a == f["src"]
        if p["proto"] == 6:
            if p["flags"] & dpkt.tcp.TH_RST:
                del table[key]
            elif p["flags"] & dpkt.tcp.TH_FIN:
                f["fins"].add(fwd)
            elif len(f["fins"]) == 2 and p["flags"] == dpkt.tcp.TH_ACK and p["plen"] == 0:
                del table[key]
    for f in flows:
        f["n_fwd"] = sum((packets[i]["src"], packets[i]["sport"]) == f["src"] for i in f["pkts"])
        f["n_bwd"] = len(f["pkts"]) - f["n_fwd"]
    return flows


@pytest.fixture(scope="module")
def parsed(demo) -> dict:
    out, manifest = demo
    result = {}
    for domain, info in manifest["domains"].items():
        packets = read_capture(out / info["capture"])
        result[domain] = (packets, assemble(packets))
    return result


# ---------------------------------------------------------------- captures


def test_manifest_lists_every_domain_and_family(demo):
    out, manifest = demo
    assert list(manifest["domains"]) == DEFAULTS["domains"]
    for domain, info in manifest["domains"].items():
        assert (out / info["capture"]).is_file() and (out / info["labels"]).is_file()
        per_label = info["flows_per_label"]
        assert sum(per_label.values()) == info["flows"]
        assert per_label["BENIGN"] > 0
        for family in ATTACK_FAMILIES:
            assert per_label[family] > 0, f"{domain}: no {family} flows"
    assert (out / "demo_c" / "capture.pcapng").is_file()
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_capture_packets_are_well_formed(demo, parsed):
    _, manifest = demo
    for domain, (packets, _) in parsed.items():
        info = manifest["domains"][domain]
        assert len(packets) == info["packets"]
        assert all(p["ip_ok"] for p in packets), f"{domain}: bad IPv4 header checksum"
        assert all(p["l4_ok"] for p in packets), f"{domain}: bad TCP/UDP checksum"
        assert all(p["ip_len"] == p["wire_len"] for p in packets), f"{domain}: IP total length != bytes on wire"
        ts = [p["ts"] for p in packets]
        assert ts == sorted(ts)
        mtu = PROFILES[domain].mtu
        assert max(p["ip_len"] for p in packets) <= mtu
        assert sum(p["vlan"] for p in packets) == info["vlan_tagged_packets"]
    assert manifest["domains"]["demo_c"]["vlan_tagged_packets"] > 0
    assert manifest["domains"]["demo_a"]["vlan_tagged_packets"] == 0


def test_domains_differ_in_mtu_windows_and_rtt(parsed):
    syn_windows, full_segments = {}, {}
    for domain, (packets, _) in parsed.items():
        syns = [p for p in packets if p["proto"] == 6 and p["flags"] == dpkt.tcp.TH_SYN]
        syn_windows[domain] = np.median([p["win"] for p in syns])
        full_segments[domain] = max(p["ip_len"] for p in packets if p["proto"] == 6)
    assert full_segments == {d: PROFILES[d].mtu for d in parsed}  # MSS-sized segments fill the MTU
    assert len(set(syn_windows.values())) > 1


def _handshake_ok(packets, flow, client) -> bool:
    pk = [packets[i] for i in flow["pkts"]]
    syn = pk[0]
    if syn["flags"] != dpkt.tcp.TH_SYN or (syn["src"], syn["sport"]) != client:
        return False
    j = next(k for k, p in enumerate(pk) if p["flags"] == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
    synack = pk[j]
    if synack["ack"] != (syn["seq"] + 1) & 0xFFFFFFFF:
        return False
    ack = next(p for p in pk[j + 1:] if (p["src"], p["sport"]) == client)
    return (ack["flags"] & dpkt.tcp.TH_ACK and not ack["flags"] & dpkt.tcp.TH_SYN
            and ack["seq"] == (syn["seq"] + 1) & 0xFFFFFFFF and ack["ack"] == (synack["seq"] + 1) & 0xFFFFFFFF)


def test_complete_sessions_have_a_correct_three_way_handshake(demo, parsed):
    out, manifest = demo
    for domain, (packets, flows) in parsed.items():
        first_flow = {}
        for f in flows:
            first_flow.setdefault(f["key"], f)
        sessions = pd.read_csv(out / manifest["domains"][domain]["sessions"])
        complete = sessions[(sessions.complete_handshake == 1) & (sessions.proto == 6)]
        assert len(complete) > 0.5 * (sessions.proto == 6).sum()
        for s in complete.itertuples():
            a, b = (s.client, s.client_port), (s.server, s.server_port)
            flow = first_flow[(6,) + (a + b if a <= b else b + a)]
            assert _handshake_ok(packets, flow, a), f"{domain}: bad handshake in session {s.sid} ({s.kind})"


def test_tcp_sequence_and_ack_numbers_are_consistent(demo, parsed):
    """In every flow of a complete session, each segment either starts at its sender's next sequence
    number or resends earlier bytes, and every ACK acknowledges no more than the peer has sent."""
    out, manifest = demo
    retransmissions = 0
    for domain, (packets, flows) in parsed.items():
        sessions = pd.read_csv(out / manifest["domains"][domain]["sessions"])
        complete = {(s.client, s.client_port, s.server, s.server_port)
                    for s in sessions[(sessions.complete_handshake == 1) & (sessions.proto == 6)].itertuples()}
        for f in flows:
            _, ha, pa, hb, pb = f["key"]
            if (ha, pa, hb, pb) not in complete and (hb, pb, ha, pa) not in complete:
                continue
            nxt = {}
            for i in f["pkts"]:
                p = packets[i]
                me, peer = (p["src"], p["sport"]), (p["dst"], p["dport"])
                span = p["plen"] + bool(p["flags"] & dpkt.tcp.TH_SYN) + bool(p["flags"] & dpkt.tcp.TH_FIN)
                if me not in nxt or p["flags"] & dpkt.tcp.TH_SYN and p["seq"] + 1 == nxt[me]:
                    nxt[me] = (p["seq"] + span) & 0xFFFFFFFF
                elif p["seq"] == nxt[me]:
                    nxt[me] = (p["seq"] + span) & 0xFFFFFFFF
                else:
                    assert (nxt[me] - p["seq"]) & 0xFFFFFFFF <= 1 << 30 and span > 0, \
                        f"{domain}: segment beyond the sender's next sequence number in flow {f['key']}"
                    retransmissions += 1
                if p["flags"] & dpkt.tcp.TH_ACK and peer in nxt:
                    assert (nxt[peer] - p["ack"]) & 0xFFFFFFFF <= 1 << 30, \
                        f"{domain}: ACK of unsent bytes in flow {f['key']}"
    assert retransmissions > 0  # "now and then"


# ---------------------------------------------------------------- label CSVs


def test_label_rows_join_one_to_one_to_flows(demo, parsed):
    out, manifest = demo
    for domain, (packets, flows) in parsed.items():
        info = manifest["domains"][domain]
        with open(out / info["labels"], newline="") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == CIC_COLUMNS
        col = {name: k for k, name in enumerate(rows[0])}  # the duplicated " Fwd Header Length" keeps its last index
        assert len(rows) - 1 == len(flows), f"{domain}: {len(rows) - 1} label rows for {len(flows)} flows"
        index = defaultdict(list)
        for f in flows:
            index[f["key"]].append(f)
        matched = set()
        for row in rows[1:]:
            src, sport = row[col[" Source IP"]], int(row[col[" Source Port"]])
            dst, dport = row[col[" Destination IP"]], int(row[col[" Destination Port"]])
            proto = int(row[col[" Protocol"]])
            assert row[col["Flow ID"]] == f"{dst}-{src}-{dport}-{sport}-{proto}"
            local = dt.datetime.strptime(row[col[" Timestamp"]], info["timestamp_format"])
            start_s = calendar.timegm(local.timetuple()) - info["utc_offset_s"]
            a, b = (src, sport), (dst, dport)
            hits = [f for f in index[(proto,) + (a + b if a <= b else b + a)]
                    if f["src"] == a and f["start"] // 1_000_000 == start_s
                    and f["n_fwd"] == int(row[col[" Total Fwd Packets"]])
                    and f["n_bwd"] == int(row[col[" Total Backward Packets"]]) and id(f) not in matched]
            assert hits, f"{domain}: label row {row[:8]} has no matching flow"
            matched.add(id(hits[0]))
            assert row[col[" Label"]] in ("BENIGN", *ATTACK_FAMILIES)


def test_attack_families_overlap_benign(demo, parsed):
    """No family is separable by a constant: packet sizes overlap benign, and per-flow sizes and
    durations vary within each family."""
    out, manifest = demo
    for domain, (packets, flows) in parsed.items():
        labels = pd.read_csv(out / manifest["domains"][domain]["labels"], skipinitialspace=True)
        by_key = {}
        for row in labels.itertuples(index=False):
            by_key[(row[1], row[2], row[3], row[4], row[5], row[6])] = row[-1]
        size_range = defaultdict(lambda: [1 << 30, 0])
        for f in flows:
            first = packets[f["pkts"][0]]
            local = dt.datetime.fromtimestamp(f["start"] // 1_000_000 + manifest["domains"][domain]["utc_offset_s"],
                                              dt.timezone.utc).strftime(manifest["domains"][domain]["timestamp_format"])
            label = by_key[(first["src"], first["sport"], first["dst"], first["dport"], first["proto"], local)]
            sizes = [packets[i]["ip_len"] for i in f["pkts"]]
            rng = size_range[label]
            rng[0], rng[1] = min(rng[0], min(sizes)), max(rng[1], max(sizes))
        lo, hi = size_range["BENIGN"]
        for family in ATTACK_FAMILIES:
            flo, fhi = size_range[family]
            assert flo <= hi and lo <= fhi, f"{domain}: {family} packet sizes [{flo}, {fhi}] miss benign [{lo}, {hi}]"
            fam = labels[labels["Label"] == family]
            assert fam["Flow Duration"].nunique() > 1, f"{domain}: {family} has one duration"
            assert fam["Fwd Header Length"].nunique() > 1 or fam["Total Length of Fwd Packets"].nunique() > 1
            # per-flow statistics of the family fall partly inside the benign range
            ben = labels[labels["Label"] == "BENIGN"]
            inside = [fam[c].between(ben[c].min(), ben[c].max()).any()
                      for c in ("Flow Duration", "Total Fwd Packets", "Total Length of Fwd Packets", "Flow IAT Mean")]
            assert sum(inside) >= 3, f"{domain}: {family} outside the benign range in {4 - sum(inside)} statistics"


# ---------------------------------------------------------------- HIKARI CSV


def test_hikari_csv_has_the_real_header_and_consistent_labels(demo, shared_data):
    out, manifest = demo
    real = shared_data / "hikari2021-rows-sample" / "ALLFLOWMETER_HIKARI2021_25rows.csv"
    with open(real, newline="") as fh:
        real_header = next(csv.reader(fh))
    with open(out / manifest["hikari"]["csv"], newline="") as fh:
        ours = list(csv.reader(fh))
    assert ours[0] == real_header
    assert tuple(real_header) == HIKARI_COLUMNS
    assert len(ours) - 1 == SMALL["hikari_rows"] == manifest["hikari"]["rows"]
    df = pd.read_csv(out / manifest["hikari"]["csv"])
    assert set(df["Label"]) == {0, 1}
    assert set(df.loc[df.Label == 0, "traffic_category"]) <= {"Benign", "Background"}
    assert set(df.loc[df.Label == 1, "traffic_category"]) <= {"Probing", "Bruteforce", "Bruteforce-XML",
                                                              "XMRIGCC CryptoMiner"}
    assert df["uid"].str.match(r"^C[0-9A-Za-z]{17}$").all() and df["uid"].is_unique
    assert (df["fwd_pkts_tot"] >= 1).all() and np.isfinite(df.select_dtypes("number")).all().all()


def test_cic_header_matches_the_real_cic_file(shared_data):
    real = shared_data / "netml-cicids2017-monday" / "demo.csv"
    with open(real, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh))[1:]  # that copy has a leading pandas index column
    # the real CIC files repeat " Fwd Header Length"; the netml copy went through pandas (".1" suffix)
    assert [h.replace("Fwd Header Length.1", "Fwd Header Length") for h in header] == list(CIC_COLUMNS)


# ---------------------------------------------------------------- determinism and bad input


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(demo, tmp_path):
    out, _ = demo
    small = {**SMALL, "domains": ["demo_a", "demo_c"]}
    generate_demo(tmp_path / "same", small)
    generate_demo(tmp_path / "other", {**small, "seed": SMALL["seed"] + 1})
    first = {k: v for k, v in _tree(out).items() if k.split("/")[0] in ("demo_a", "demo_c")}
    again = {k: v for k, v in _tree(tmp_path / "same").items() if k.split("/")[0] in ("demo_a", "demo_c")}
    assert first.keys() == again.keys() and all(first[k] == again[k] for k in first)
    other = _tree(tmp_path / "other")
    assert other["demo_a/capture.pcap"] != first["demo_a/capture.pcap"]
    assert other["demo_c/labels.csv"] != first["demo_c/labels.csv"]


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="demo_z"):
        generate_demo(tmp_path, {**SMALL, "domains": ["demo_z"]})
    with pytest.raises(ValueError, match="benign_sesions"):
        generate_demo(tmp_path, {**SMALL, "benign_sesions": 3})
