"""Dataset drivers, the per-file label driver, the flow-table driver and extract's error handling."""

from __future__ import annotations

import json
import socket

import dpkt
import numpy as np
import pandas as pd
import pytest

from nidsflow.capture.drivers import DRIVERS, get_driver, normalise_class
from nidsflow.capture.extract import ExtractError, extract_dataset
from nidsflow.capture.features import FEATURE_NAMES
from nidsflow.store import BENIGN, UNMATCHED, Store

EXTRACT = {"T": 8, "idle_timeout_s": 120, "active_timeout_s": 1800, "label_tolerance_s": 2.0,
           "time_offset_s": "auto", "shard_flows": 3}


def write_pcap(path, conns, t0=1.5e9):
    """conns: list of (src, sport, dst, dport, proto, start, n_packets); packets alternate direction."""
    pkts = []
    for src, sport, dst, dport, proto, start, n in conns:
        for k in range(n):
            a, b, pa, pb = (src, dst, sport, dport) if k % 2 == 0 else (dst, src, dport, sport)
            l4 = (dpkt.tcp.TCP(sport=pa, dport=pb, flags=dpkt.tcp.TH_ACK | (dpkt.tcp.TH_SYN if k == 0 else 0),
                               win=1000 + k, data=b"x" * (10 * k)) if proto == 6 else
                  dpkt.udp.UDP(sport=pa, dport=pb, data=b"y" * (5 + k)))
            if proto == 17:
                l4.ulen = 8 + len(l4.data)
            ip = dpkt.ip.IP(src=socket.inet_aton(a), dst=socket.inet_aton(b), p=proto, data=l4)
            ip.len = 20 + len(bytes(l4))
            eth = dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x01" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            pkts.append((t0 + start + 0.01 * k, bytes(eth)))
    pkts.sort(key=lambda x: x[0])
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for t, b in pkts:
            w.writepkt(b, ts=t)
    return path


def test_registry_and_class_normalisation():
    for name in ("cicids2017", "cicddos2019", "ciciot2023", "iscxtor2016", "demo", "per_file", "flow_table"):
        assert get_driver(name).name == name
    with pytest.raises(ValueError, match="unknown dataset driver 'nope'"):
        get_driver("nope")
    assert normalise_class("Web Attack \x96 Brute Force") == "web_attack_brute_force"
    d = DRIVERS["cicids2017"]
    assert d.attack_class("Web Attack \x96 XSS") == "web_attack_xss"
    assert d.attack_class("BENIGN") == "benign" and d.is_dropped("DoS Hulk - Attempted")
    assert get_driver("ciciot2023").attack_class("DDoS-SYN_Flood") == "ddos"
    assert get_driver("iscxtor2016").attack_class("nonTOR") == "benign"


def test_per_file_driver_and_sharding(tmp_path):
    a = write_pcap(tmp_path / "benign.pcap", [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, i, 4) for i in range(5)])
    b = write_pcap(tmp_path / "flood.pcap", [("10.0.0.9", 2000 + i, "10.0.0.2", 53, 17, i, 3) for i in range(4)])
    cfg = {"driver": "per_file", "captures": [str(a), str(b)], "labels": {str(a): "BENIGN", str(b): "UDP Flood"}}
    rep = extract_dataset("pf", cfg, EXTRACT, tmp_path / "store")
    s = Store(tmp_path / "store")
    assert rep["flows"] == 9 and rep["packets"] == 32
    assert rep["matched_per_label"] == {BENIGN: 5, "UDP Flood": 4}
    assert s.flows.groupby("source_file").label.first().to_dict() == {str(a): BENIGN, str(b): "UDP Flood"}
    assert set(s.flows.attack_class) == {"benign", "udp_flood"}
    assert len(s.shards) == 4  # 5 flows -> 3 + 2, 4 flows -> 3 + 1: shards never span captures
    x, n = s.packets(np.arange(9))
    assert x.shape == (9, 8, 9) and n.tolist() == s.flows.n_packets.tolist()
    assert json.loads((tmp_path / "store" / "extract_report.json").read_text())["flows"] == 9


def test_bad_capture_is_reported_and_others_go_through(tmp_path):
    good = write_pcap(tmp_path / "good.pcap", [("10.0.0.1", 1000, "10.0.0.2", 80, 6, 0, 4)])
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    cfg = {"driver": "per_file", "captures": [str(bad), str(good), str(empty)],
           "labels": {str(good): "BENIGN", str(bad): "BENIGN", str(empty): "BENIGN"}}
    rep = extract_dataset("bad", cfg, EXTRACT, tmp_path / "store")
    assert rep["flows"] == 1
    assert [f["file"] for f in rep["failed_captures"]] == [str(bad), str(empty)]
    assert "not a pcap or pcapng file" in rep["failed_captures"][0]["error"]
    cfg = {"driver": "per_file", "captures": [str(bad)], "labels": {str(bad): "BENIGN"}}
    with pytest.raises(ExtractError, match="every capture failed"):
        extract_dataset("bad", cfg, EXTRACT, tmp_path / "store2")


def test_no_benign_flow_is_an_error(tmp_path):
    a = write_pcap(tmp_path / "a.pcap", [("10.0.0.1", 1000, "10.0.0.2", 80, 6, 0, 4)])
    with pytest.raises(ExtractError, match="no benign flow"):
        extract_dataset("x", {"driver": "per_file", "captures": [str(a)], "labels": {str(a): "DDoS"}},
                        EXTRACT, tmp_path / "s")


def test_csv_driver_end_to_end_with_offset_and_unmatched(tmp_path):
    conns = [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, 10 * i, 4) for i in range(12)]
    cap = write_pcap(tmp_path / "c.pcap", conns, t0=1.5e9)
    # CSV on local time (capture clock - 3 h), day-first; the last two connections are missing from it
    lines = ["Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Label"]
    for i, (src, sp, dst, dp, pr, start, _) in enumerate(conns[:10]):
        ts = pd.Timestamp(1.5e9 + start - 3 * 3600, unit="s").strftime("%d/%m/%Y %H:%M:%S")
        lines.append(f"f,{dst},{dp},{src},{sp},{pr},{ts},{'DDoS' if i % 4 == 0 else 'BENIGN'}")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    rep = extract_dataset("d", {"driver": "demo", "captures": [str(cap)], "labels": [str(csv)]}, EXTRACT,
                          tmp_path / "s")
    assert rep["time_offset_s"] == -10800.0
    assert rep["matched_per_label"] == {BENIGN: 7, "DDoS": 3}
    assert rep["unmatched_flows"] == 2 and rep["unmatched_rows"] == 0
    f = Store(tmp_path / "s").flows
    assert (f.label == UNMATCHED).sum() == 2 and not f.loc[f.label == UNMATCHED, "is_attack"].any()
    assert f.is_attack.sum() == 3 and set(f.attack_class) == {"benign", "ddos", "unmatched"}


def test_flow_table_store_from_improved_sample(shared_data, tmp_path):
    d = shared_data / "cicids2017-improved-sample"
    files = [str(d / "BENIGN_5000.csv"), str(d / "Heartbleed_11.csv"), str(d / "Web_Attack_-_XSS_18.csv")]
    rep = extract_dataset("ft", {"driver": "flow_table", "labels": files}, EXTRACT, tmp_path / "s")
    s = Store(tmp_path / "s")
    assert not s.has_packets
    assert rep["matched_per_label"] == {BENIGN: 5000, "Heartbleed": 11, "Web Attack - XSS": 18}
    assert len(s.flows) == len(s.flow_features) == 5029
    assert set(s.flow_features.columns) <= set(FEATURE_NAMES) and len(s.flow_features.columns) >= 70
    raw = pd.read_csv(d / "Heartbleed_11.csv")
    hb = s.flows.index[s.flows.label == "Heartbleed"]
    np.testing.assert_allclose(s.flow_features.loc[hb, "Flow Duration"], raw["Flow Duration"])
    np.testing.assert_allclose(s.flow_features.loc[hb, "Total Fwd Packets"], raw["Total Fwd Packet"])
    assert (s.flows.loc[hb, "src_ip"] == "172.16.0.1").all()
    assert set(s.flows.attack_class) == {"benign", "heartbleed", "web_attack_xss"}
    with pytest.raises(Exception, match="no packet sequences"):
        s.packets(np.array([0]))


def test_corrupt_record_mid_file_keeps_flows_read_before_it(tmp_path):
    import struct

    p = write_pcap(tmp_path / "cut.pcap", [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, i, 4) for i in range(5)])
    p.write_bytes(p.read_bytes() + struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + b"x" * 100)
    ok = write_pcap(tmp_path / "ok.pcap", [("10.0.0.3", 1000, "10.0.0.2", 80, 6, 0, 4)])
    cfg = {"driver": "per_file", "captures": [str(p), str(ok)], "labels": {str(p): "BENIGN", str(ok): "BENIGN"}}
    rep = extract_dataset("cut", cfg, {**EXTRACT, "batch_packets": 4}, tmp_path / "s")
    assert [f["file"] for f in rep["failed_captures"]] == [str(p)]
    assert "absurd captured length" in rep["failed_captures"][0]["error"]
    assert rep["per_capture"][0]["packets"] == 20 and rep["per_capture"][0]["flows"] == 5
    assert rep["flows"] == 6


@pytest.mark.parametrize("domain,offset", [("demo_a", -10800.0), ("demo_c", 25200.0)])
def test_demo_driver_on_generated_domain(tmp_path, domain, offset):
    demo = pytest.importorskip("nidsflow.demo.generate")
    demo.generate_domain(domain, tmp_path, seed=7, benign_sessions=120, attack_sessions=40, duration_s=600)
    cap = next((tmp_path / domain).glob("capture.*"))
    rep = extract_dataset(domain, {"driver": "demo", "captures": [str(cap)],
                                   "labels": [str(tmp_path / domain / "labels.csv")]}, EXTRACT, tmp_path / "s")
    assert rep["time_offset_s"] == offset
    assert rep["unmatched_flows"] == 0 and rep["unmatched_rows"] == 0
    assert rep["matched_per_label"][BENIGN] > 0 and len(rep["matched_per_label"]) > 1


# ---- per-file labels from a manifest (file -> category, paths relative to the manifest's folder)

def _manifest(path, rows, extra_header=("packets",)):
    lines = ["\t".join(("file", "category") + tuple(extra_header))]
    lines += ["\t".join((f, c) + ("1",) * len(extra_header)) for f, c in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_maps_files_to_categories(tmp_path):
    import gzip

    from nidsflow.capture.extract import plan_parts
    ben = tmp_path / "benign"
    att = tmp_path / "attacks"
    ben.mkdir(), att.mkdir()
    b = write_pcap(ben / "b.pcap", [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, i, 4) for i in range(5)])
    s1 = write_pcap(att / "scan1.pcap", [("10.0.0.9", 2000 + i, "10.0.0.2", 22, 6, i, 1) for i in range(3)])
    s2 = write_pcap(att / "scan2.pcap", [("10.0.0.8", 3000 + i, "10.0.0.2", 23, 6, i, 1) for i in range(2)])
    lm = att / "lm.pcap.gz"  # a compressed capture, as the manifests of ../shared/data list them
    lm.write_bytes(gzip.compress(write_pcap(tmp_path / "lm.pcap", [("10.0.0.7", 445, "10.0.0.3", 445, 6, 0, 6)])
                                 .read_bytes()))
    man = _manifest(att / "manifest.tsv", [("scan1.pcap", "Port scan"), ("scan2.pcap", "Port scan"),
                                           ("lm.pcap.gz", "Lateral movement")])
    cfg = {"driver": "per_file", "captures": [str(b), str(att / "*.pcap"), str(att / "*.pcap.gz")],
           "labels": {str(ben / "*"): "BENIGN"}, "manifest": str(man)}
    parts = plan_parts("m", cfg, EXTRACT)
    assert all(p.labels == (str(man),) for p in parts)  # the manifest is every part's input
    rep = extract_dataset("m", cfg, EXTRACT, tmp_path / "store")
    assert rep["failed_captures"] == []
    assert rep["matched_per_label"] == {BENIGN: 5, "Port scan": 5, "Lateral movement": 1}
    s = Store(tmp_path / "store")
    assert s.flows.groupby("source_file").attack_class.first().to_dict() == {
        str(b): "benign", str(s1): "port_scan", str(s2): "port_scan", str(lm): "lateral_movement"}
    # a list of manifests works as one; a manifest alone (no labels) works too
    only = _manifest(ben / "manifest.tsv", [("b.pcap", "BENIGN")])
    cfg2 = {"driver": "per_file", "captures": [str(b), str(s1)], "manifest": [str(only), str(man)]}
    assert extract_dataset("m2", cfg2, EXTRACT, tmp_path / "s2")["matched_per_label"] == {BENIGN: 5, "Port scan": 3}


def test_manifest_refuses_missing_files_and_uncovered_captures(tmp_path):
    from nidsflow.capture.labels import LabelError
    b = write_pcap(tmp_path / "b.pcap", [("10.0.0.1", 1000, "10.0.0.2", 80, 6, 0, 4)])
    a = write_pcap(tmp_path / "a.pcap", [("10.0.0.9", 2000, "10.0.0.2", 22, 6, 0, 1)])
    man = _manifest(tmp_path / "manifest.tsv", [("a.pcap", "Port scan"), ("gone.pcap.gz", "Port scan")])
    cfg = {"driver": "per_file", "captures": [str(b), str(a)], "labels": {str(b): "BENIGN"}, "manifest": str(man)}
    with pytest.raises(LabelError, match=r"manifest\.tsv: line 3: file 'gone\.pcap\.gz' does not exist \(.*gone\.pcap\.gz\)"):
        extract_dataset("m", cfg, EXTRACT, tmp_path / "s")
    _manifest(man, [("a.pcap", "Port scan")])
    c = write_pcap(tmp_path / "c.pcap", [("10.0.0.5", 5000, "10.0.0.2", 22, 6, 0, 2)])
    cfg["captures"].append(str(c))
    with pytest.raises(ExtractError, match=r"captures without a label .*c\.pcap"):
        extract_dataset("m", cfg, EXTRACT, tmp_path / "s")
    cfg = {"driver": "per_file", "captures": [str(b), str(a)], "labels": {str(b): "BENIGN", str(a): "DDoS"},
           "manifest": str(man)}
    with pytest.raises(ExtractError, match=r"a\.pcap is 'DDoS' in labels .* but 'Port scan' in manifest"):
        extract_dataset("m", cfg, EXTRACT, tmp_path / "s")
    (tmp_path / "bad.tsv").write_text("name\tclass\na.pcap\tx\n")
    with pytest.raises(LabelError, match=r"bad\.tsv: label manifest lacks column\(s\) \['file', 'category'\]"):
        extract_dataset("m", {**cfg, "labels": {str(b): "BENIGN"}, "manifest": str(tmp_path / "bad.tsv")},
                        EXTRACT, tmp_path / "s")


def test_real_manifests_resolve(shared_data):
    from nidsflow.capture.labels import read_label_manifest
    m = read_label_manifest(shared_data / "lab-ad-attacks" / "manifest.tsv")
    assert len(m) == 66 and all(f.endswith((".pcap.gz", ".pcapng.gz")) for f in m)
    assert {"Lateral movement", "Credential access", "Malware and exploit kit"} <= set(m.values())
