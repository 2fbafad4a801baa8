"""Extraction in parts: the job plan, per-part extraction + gather (equal to one job), pruned store reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nidsflow.capture.extract import (ExtractError, ExtractPart, extract_dataset, extract_part, gather_store,
                                      plan_parts)
from nidsflow.store import BENIGN, Store, StoreError, read_rows
from test_drivers import EXTRACT, write_pcap

BIG = {**EXTRACT, "part_target_bytes": 1 << 40}   # everything in one part: what one job over the dataset did
ONE_EACH = {**EXTRACT, "part_target_bytes": 1}   # one part per capture


def sized(path, n):
    path.write_bytes(b"\0" * n)
    return str(path)


def test_plan_groups_small_captures_contiguously_and_deterministically(tmp_path):
    files = [sized(tmp_path / f"c{i}.pcap", s) for i, s in enumerate([40, 40, 30, 500, 10, 10])]
    cfg = {"driver": "per_file", "captures": files, "labels": {str(tmp_path / "*"): "BENIGN"}}
    plan = plan_parts("d", cfg, {"part_target_bytes": 100})
    assert [p.captures for p in plan] == [tuple(files[:2]), (files[2],), (files[3],), tuple(files[4:])]
    assert [p.name for p in plan] == ["p0000", "p0001", "p0002", "p0003"]
    assert plan_parts("d", cfg, {"part_target_bytes": 100}) == plan
    # a glob keeps the sorted order of its matches
    glob_plan = plan_parts("d", {**cfg, "captures": [str(tmp_path / "c*.pcap")]}, {"part_target_bytes": 100})
    assert glob_plan == plan
    assert ExtractPart.from_dict(json.loads(json.dumps(plan[0].as_dict()))) == plan[0]
    with pytest.raises(ExtractError, match="part_target_bytes"):
        plan_parts("d", cfg, {"part_target_bytes": 0})


def test_plan_of_missing_generated_capture_is_one_part_and_strict_mode_refuses(tmp_path):
    cfg = {"driver": "demo", "captures": [str(tmp_path / "later" / "*.pcap"), str(tmp_path / "x.pcap")],
           "labels": [str(tmp_path / "labels.csv")]}
    plan = plan_parts("d", cfg, {}, strict=False)
    assert [p.captures for p in plan] == [(str(tmp_path / "later" / "*.pcap"),), (str(tmp_path / "x.pcap"),)]
    assert all(p.labels == (str(tmp_path / "labels.csv"),) for p in plan)
    with pytest.raises(ExtractError, match="matches no file"):
        plan_parts("d", cfg, {})


def test_plan_gives_each_day_its_own_csvs(tmp_path):
    caps = [sized(tmp_path / n, 10) for n in ("Monday-WorkingHours.pcap", "Tuesday-WorkingHours.pcap",
                                              "extra.pcap")]
    csvs = [sized(tmp_path / n, 1) for n in ("Monday-WorkingHours.pcap_ISCX.csv",
                                             "Tuesday-WorkingHours-Morning.pcap_ISCX.csv",
                                             "Tuesday-WorkingHours-Afternoon.pcap_ISCX.csv")]
    plan = plan_parts("ids", {"driver": "cicids2017", "captures": caps, "labels": csvs}, {})
    assert [(p.captures, p.labels, p.day) for p in plan] == [
        ((caps[0],), (csvs[0],), "Monday"), ((caps[1],), tuple(csvs[1:]), "Tuesday"),
        ((caps[2],), tuple(csvs), None)]  # no day known: every CSV, as one job over the dataset
    d = tmp_path / "ddos"
    (d / "01-12").mkdir(parents=True)
    (d / "03-11").mkdir()
    caps = [sized(d / f"SAT-01-12-2018_0{i}", 10) for i in range(3)] + [sized(d / "SAT-03-11-2018_0", 10)]
    csvs = [sized(d / "01-12" / "DrDoS_DNS.csv", 1), sized(d / "03-11" / "Syn.csv", 1)]
    plan = plan_parts("dd", {"driver": "cicddos2019", "captures": caps, "labels": csvs}, {"part_target_bytes": 25})
    assert [(len(p.captures), p.labels) for p in plan] == [(2, (csvs[0],)), (1, (csvs[0],)), (1, (csvs[1],))]


def assert_same_store(a, b):
    for name in ("flows.parquet", "flow_features.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), check_exact=True)
    sa, sb = Store(a), Store(b)
    assert sa.manifest == sb.manifest
    if sa.has_packets:
        ids = np.arange(len(sa.flows))
        for x, y in zip(sa.packets(ids), sb.packets(ids)):
            np.testing.assert_array_equal(x, y)


def test_parts_give_the_store_of_one_job_per_file_labels(tmp_path):
    a = write_pcap(tmp_path / "benign.pcap", [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, i, 4) for i in range(5)])
    b = write_pcap(tmp_path / "flood.pcap", [("10.0.0.9", 2000 + i, "10.0.0.2", 53, 17, i, 3) for i in range(4)])
    c = write_pcap(tmp_path / "more.pcap", [("10.0.0.7", 3000 + i, "10.0.0.2", 22, 6, i, 2) for i in range(7)])
    cfg = {"driver": "per_file", "captures": [str(a), str(b), str(c)],
           "labels": {str(a): "BENIGN", str(b): "UDP Flood", str(c): "BENIGN"}}
    one = extract_dataset("pf", cfg, BIG, tmp_path / "one")
    many = extract_dataset("pf", cfg, ONE_EACH, tmp_path / "many")
    assert len(one["parts"]) == 1 and len(many["parts"]) == 3
    assert_same_store(tmp_path / "one", tmp_path / "many")
    assert {k: v for k, v in one.items() if k not in ("parts", "seconds")} == \
        {k: v for k, v in many.items() if k not in ("parts", "seconds")}
    s = Store(tmp_path / "many")
    assert s.flows.flow_id.tolist() == list(range(16)) and len(s.shards) == 2 + 2 + 3
    assert not (tmp_path / "many" / "_parts").exists()


def test_csv_parts_sharing_one_csv_count_unmatched_rows_over_all_parts(tmp_path):
    conns1 = [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, 10 * i, 4) for i in range(6)]
    conns2 = [("10.0.0.3", 2000 + i, "10.0.0.2", 80, 6, 10 * i, 4) for i in range(6)]
    c1, c2 = write_pcap(tmp_path / "a.pcap", conns1), write_pcap(tmp_path / "b.pcap", conns2)
    lines = ["Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Label"]
    extra = [("10.9.9.9", 1, "10.0.0.2", 80, 6, 5, 1)]  # a row no flow matches
    for i, (src, sp, dst, dp, pr, start, _) in enumerate(conns1 + conns2[:4] + extra):
        ts = pd.Timestamp(1.5e9 + start, unit="s").strftime("%d/%m/%Y %H:%M:%S")
        lines.append(f"f,{src},{sp},{dst},{dp},{pr},{ts},{'DDoS' if i % 3 == 0 else 'BENIGN'}")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    cfg = {"driver": "demo", "captures": [str(c1), str(c2)], "labels": [str(csv)], "time_offset_s": 0}
    one = extract_dataset("d", cfg, BIG, tmp_path / "one")
    many = extract_dataset("d", cfg, ONE_EACH, tmp_path / "many")
    assert len(many["parts"]) == 2
    assert_same_store(tmp_path / "one", tmp_path / "many")
    # each part alone leaves the other part's rows unmatched; over the dataset only the extra row is
    assert one["unmatched_rows"] == many["unmatched_rows"] == 1 and many["label_rows"] == 11
    assert one["unmatched_flows"] == many["unmatched_flows"] == 2
    assert one["matched_per_label"] == many["matched_per_label"]


def test_gather_refuses_a_part_not_extracted_and_a_dataset_without_benign(tmp_path):
    a = write_pcap(tmp_path / "flood.pcap", [("10.0.0.9", 2000 + i, "10.0.0.2", 53, 17, i, 3) for i in range(4)])
    cfg = {"driver": "per_file", "captures": [str(a)], "labels": {str(a): "UDP Flood"}}
    with pytest.raises(ExtractError, match="no part.json"):
        gather_store("x", cfg, EXTRACT, [tmp_path / "nothing"], tmp_path / "s")
    (part,) = plan_parts("x", cfg, EXTRACT)
    rep = extract_part("x", cfg, EXTRACT, part.as_dict(), tmp_path / "p")
    assert rep["flows"] == 4 and rep["labels"] == {"UDP Flood": 4}
    with pytest.raises(ExtractError, match="no benign flow"):
        gather_store("x", cfg, EXTRACT, [tmp_path / "p"], tmp_path / "s")


def test_part_memory_does_not_hold_the_flows_of_per_file_captures(tmp_path, monkeypatch, caplog):
    """Per-file labels stream: the part writes row groups as it goes (many row groups, none the whole table)."""
    import nidsflow.capture.extract as ex

    monkeypatch.setattr(ex, "ROW_GROUP_FLOWS", 10)
    a = write_pcap(tmp_path / "a.pcap", [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, 200 * i, 2) for i in range(45)])
    cfg = {"driver": "per_file", "captures": [str(a)], "labels": {str(a): "BENIGN"}}
    (part,) = plan_parts("x", cfg, EXTRACT)
    extract_part("x", cfg, {**EXTRACT, "batch_packets": 4}, part, tmp_path / "p")
    md = pq.ParquetFile(tmp_path / "p" / "flows.parquet").metadata
    assert md.num_rows == 45 and md.num_row_groups >= 4
    with caplog.at_level("INFO", logger="nidsflow.capture.extract"):
        rep = gather_store("x", cfg, EXTRACT, [tmp_path / "p"], tmp_path / "s")
    assert rep["flows"] == 45 and (Store(tmp_path / "s").flows.label == BENIGN).all()
    assert "dataset x: 45 flows from 1 parts written" in caplog.text
    # one part is the store as it is: its tables are linked, not decoded and written again (issue 25)
    for name in ("flows.parquet", "flow_features.parquet"):
        assert os.path.samefile(tmp_path / "p" / name, tmp_path / "s" / name)
    assert Store(tmp_path / "s").flows.flow_id.tolist() == list(range(45))


def test_read_rows_prunes_columns_and_row_groups(tmp_path):
    df = pd.DataFrame({"flow_id": np.arange(100), "a": np.arange(100) * 2.0, "b": [f"x{i}" for i in range(100)]})
    path = tmp_path / "t.parquet"
    pq.write_table(__import__("pyarrow").Table.from_pandas(df, preserve_index=False), path, row_group_size=7)
    rows = np.array([93, 5, 5, 50])
    got = read_rows(path, ["b"], rows)
    assert got.index.tolist() == rows.tolist() and list(got.columns) == ["b"]
    assert got["b"].tolist() == ["x93", "x5", "x5", "x50"]
    full = read_rows(path)
    assert list(full.columns) == ["a", "b"] and full.index.name == "flow_id" and len(full) == 100
    assert len(read_rows(path, ["a"], np.array([], dtype=np.int64))) == 0
    with pytest.raises(StoreError, match="out of range"):
        read_rows(path, ["a"], [100])
    with pytest.raises(StoreError, match="no column"):
        read_rows(path, ["zz"])


def test_store_read_helpers_agree_with_whole_tables(tmp_path):
    a = write_pcap(tmp_path / "a.pcap", [("10.0.0.1", 1000 + i, "10.0.0.2", 80, 6, i, 4) for i in range(9)])
    extract_dataset("x", {"driver": "per_file", "captures": [str(a)], "labels": {str(a): "BENIGN"}}, EXTRACT,
                    tmp_path / "s")
    s = Store(tmp_path / "s")
    ids = np.array([7, 1, 3])
    pd.testing.assert_frame_equal(s.read_flows(["label", "n_packets"], ids),
                                  s.flows.set_index("flow_id").loc[ids, ["label", "n_packets"]])
    pd.testing.assert_frame_equal(s.read_features(["Flow Duration"], ids), s.flow_features.loc[ids, ["Flow Duration"]])
    assert s.n_flows == 9


def test_real_captures_in_parts_equal_one_job(shared_data, tmp_path):
    """Real captures (nDPI corpus excerpt + the CIC-DDoS2019 attack pcaps), per-file labels: one part per
    ~200 kB vs one part for all: the same flows, features and packets (and the same as the old single-job
    extractor, checked once against /work/main for the report of issue 15)."""
    ndpi = sorted((shared_data / "pcaps-ndpi").glob("*.pcap"))[:12]
    ddos = sorted((shared_data / "cicddos2019-attack-pcaps").glob("*.pcap"))
    caps = [str(p) for p in ndpi + ddos]
    labels = {**{str(p): "BENIGN" for p in ndpi}, **{str(p): p.stem.split("-")[-1] for p in ddos}}
    cfg = {"driver": "per_file", "captures": caps, "labels": labels}
    ext = {"T": 16, "idle_timeout_s": 120, "active_timeout_s": 1800, "shard_flows": 500, "tcp_close": True}
    one = extract_dataset("real", cfg, {**ext, "part_target_bytes": 1 << 40}, tmp_path / "one")
    many = extract_dataset("real", cfg, {**ext, "part_target_bytes": 200_000}, tmp_path / "many")
    assert len(one["parts"]) == 1 and len(many["parts"]) > 3
    assert_same_store(tmp_path / "one", tmp_path / "many")
    assert one["flows"] == many["flows"] > 1000
