"""The shared contracts: the flow store round trip, score tables and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nidsflow.capture.store import CHANNELS, UNMATCHED, Store, StoreError, StoreWriter
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import Split, make_split


def _flows(labels):
    n = len(labels)
    return pd.DataFrame({
        "flow_id": np.arange(n), "src_ip": "10.0.0.1", "src_port": 1000 + np.arange(n), "dst_ip": "10.0.0.2",
        "dst_port": 80, "protocol": 6, "first_ts": np.arange(n, dtype=float), "last_ts": np.arange(n) + 0.5,
        "n_packets": 3, "label": labels, "attack_class": ["benign" if l == "BENIGN" else l.lower() for l in labels],
        "is_attack": [l not in ("BENIGN", UNMATCHED) for l in labels], "source_file": "x.pcap",
    })


def test_store_round_trip_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    T = 5
    a = rng.normal(size=(3, T, len(CHANNELS))).astype(np.float32)
    b = rng.normal(size=(4, T, len(CHANNELS))).astype(np.float32)
    w = StoreWriter(tmp_path / "store", T)
    w.add_shard(a, np.array([1, 2, 3]))
    w.add_shard(b, np.array([4, 5, 6, 7]))
    flows = _flows(["BENIGN"] * 7)
    w.finish(flows, pd.DataFrame({"duration": np.arange(7.0)}))
    s = Store(tmp_path / "store")
    x, n = s.packets(np.array([6, 0, 3]))
    np.testing.assert_array_equal(x, np.stack([b[3], a[0], b[0]]))
    np.testing.assert_array_equal(n, [7, 1, 4])
    assert list(s.flow_features.index) == list(range(7))
    assert s.has_packets


def test_store_refuses_misaligned_tables(tmp_path):
    w = StoreWriter(tmp_path / "s", 2)
    w.add_shard(np.zeros((2, 2, len(CHANNELS))), np.array([1, 1]))
    with pytest.raises(StoreError, match="packet shards hold 2 flows"):
        w.finish(_flows(["BENIGN"] * 3), pd.DataFrame({"d": np.zeros(3)}))
    with pytest.raises(StoreError, match="not a flow store"):
        Store(tmp_path / "nothing")


def test_flow_table_store_has_no_packets(tmp_path):
    w = StoreWriter(tmp_path / "s", 4)
    w.finish(_flows(["BENIGN", "DoS"]), pd.DataFrame({"d": [1.0, 2.0]}), has_packets=False)
    s = Store(tmp_path / "s")
    assert not s.has_packets
    with pytest.raises(StoreError, match="no packet sequences"):
        s.packets(np.array([0]))


def test_split_is_disjoint_seeded_and_excludes_unmatched():
    labels = ["BENIGN"] * 100 + ["DoS"] * 30 + ["Scan"] * 5 + [UNMATCHED] * 7
    flows = _flows(labels)
    s1 = make_split(flows, seed=1, n_train=50, n_val=20, max_test_per_class=10)
    s2 = make_split(flows, seed=1, n_train=50, n_val=20, max_test_per_class=10)
    s3 = make_split(flows, seed=2, n_train=50, n_val=20, max_test_per_class=10)
    for a, b in ((s1.train, s2.train), (s1.val, s2.val), (s1.test, s2.test)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(s1.train, s3.train)
    assert not set(s1.train) & set(s1.val) and not set(s1.train) & set(s1.test) and not set(s1.val) & set(s1.test)
    test_labels = flows.loc[s1.test, "label"]
    assert (test_labels == "BENIGN").sum() == 30 and (test_labels == "DoS").sum() == 10 and (test_labels == "Scan").sum() == 5
    assert UNMATCHED not in set(flows.loc[np.concatenate([s1.train, s1.val, s1.test]), "label"])
    assert flows.loc[s1.train, "is_attack"].sum() == 0


def test_split_without_benign_flows_is_a_clear_error():
    with pytest.raises(ValueError, match="no benign flows"):
        make_split(_flows(["DoS"] * 5), seed=0, n_train=2, n_val=1, source="attack_only.parquet")


def test_split_save_load(tmp_path):
    s = make_split(_flows(["BENIGN"] * 20 + ["DoS"] * 3), seed=0, n_train=10, n_val=5)
    s.save(tmp_path / "s.npz")
    t = Split.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(s.test, t.test)


def test_score_table_round_trip_and_views(tmp_path):
    flows = _flows(["BENIGN"] * 4 + ["DoS"] * 2)
    scores = np.arange(60, dtype=np.float32).reshape(6, 10)
    t = ScoreTable.from_flows(flows, np.arange(6), np.array(["val"] * 2 + ["test"] * 4), JANUS_SCORE_NAMES, scores)
    t.save(tmp_path / "s.npz")
    u = ScoreTable.load(tmp_path / "s.npz")
    assert u.score_names == JANUS_SCORE_NAMES
    np.testing.assert_array_equal(u.test.column("terminal_flow"), scores[2:, 1])
    assert u.val.is_attack.sum() == 0 and u.test.is_attack.sum() == 2
    with pytest.raises(ValueError, match="scores shape"):
        ScoreTable(u.flow_id, u.split, u.label, u.attack_class, u.is_attack, ("a",), u.scores)


def test_split_with_too_few_benign_flows_keeps_a_test_share():
    flows = _flows(["BENIGN"] * 100 + ["DoS"] * 10)
    s = make_split(flows, seed=0, n_train=200, n_val=100)
    n_test_benign = int((~flows.loc[s.test, "is_attack"]).sum())
    assert n_test_benign >= 20 and len(s.train) + len(s.val) + n_test_benign == 100
    assert len(s.train) > len(s.val) > 0
