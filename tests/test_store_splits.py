"""The shared contracts: the flow store round trip, score tables and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import Split, make_split
from nidsflow.store import CHANNELS, UNMATCHED, Store, StoreError, StoreWriter


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


def _grouped_flows(files, seed=0):
    """Benign flows from several captures of different sizes (shuffled times), plus two attack classes."""
    rng = np.random.default_rng(seed)
    labels, sources = [], []
    for f, n in files.items():
        labels += ["BENIGN"] * n
        sources += [f] * n
    labels += ["DoS"] * 40 + ["Scan"] * 15
    sources += ["dos.pcap"] * 40 + ["scan.pcap"] * 15
    flows = _flows(labels)
    flows["source_file"] = sources
    flows["first_ts"] = rng.permutation(len(flows)).astype(float) * 0.5
    return flows


def test_split_none_is_unchanged_for_a_fixed_seed():
    """group_by none is the flow-level split of before: the same ids for the same seed (ids recorded from the
    code before group_by existed)."""
    flows = _flows(["BENIGN"] * 30 + ["DoS"] * 6)
    s = make_split(flows, seed=3, n_train=10, n_val=5, max_test_benign=8, max_test_per_class=4)
    t = make_split(flows, seed=3, n_train=10, n_val=5, max_test_benign=8, max_test_per_class=4, group_by="none")
    np.testing.assert_array_equal(s.train, t.train)
    np.testing.assert_array_equal(s.train, [3, 10, 12, 17, 18, 20, 23, 26, 27, 28])
    np.testing.assert_array_equal(s.val, [0, 8, 11, 13, 25])
    np.testing.assert_array_equal(s.test, [1, 2, 6, 9, 14, 15, 16, 29, 31, 32, 33, 34])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_by_source_file_never_shares_a_capture_between_parts(seed):
    files = {f"cap{i}.pcap": n for i, n in enumerate([120, 5, 60, 33, 8, 250, 17, 41, 2, 90])}
    flows = _grouped_flows(files, seed)
    s = make_split(flows, seed=seed, n_train=150, n_val=60, max_test_benign=100, max_test_per_class=20,
                   group_by="source_file")
    src = flows.set_index("flow_id")["source_file"]
    test_benign = [i for i in s.test if not flows.loc[i, "is_attack"]]
    parts = {"train": set(src[s.train]), "val": set(src[s.val]), "test": set(src[test_benign])}
    assert all(parts.values()), parts  # every part holds benign flows
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    assert len(s.train) <= 150 and len(s.val) <= 60 and len(test_benign) <= 100
    assert not set(s.train) & set(s.val) and not set(s.train) & set(s.test) and not set(s.val) & set(s.test)
    assert flows.loc[s.train, "is_attack"].sum() == 0 and flows.loc[s.val, "is_attack"].sum() == 0
    test_labels = flows.loc[s.test, "label"]
    assert (test_labels == "DoS").sum() == 20 and (test_labels == "Scan").sum() == 15
    again = make_split(flows, seed=seed, n_train=150, n_val=60, max_test_benign=100, max_test_per_class=20,
                       group_by="source_file")
    np.testing.assert_array_equal(s.train, again.train)
    np.testing.assert_array_equal(s.test, again.test)


def test_split_by_source_file_seeds_differ_and_aim_at_the_sizes():
    files = {f"cap{i}.pcap": 30 for i in range(12)}
    flows = _grouped_flows(files)
    assignments = set()
    for seed in range(4):
        s = make_split(flows, seed=seed, n_train=120, n_val=60, group_by="source_file")
        assert len(s.train) == 120 and len(s.val) == 60  # 4 + 2 whole files of 30 flows
        assignments.add(tuple(sorted(set(flows.loc[s.train, "source_file"]))))
    assert len(assignments) > 1


def test_split_by_time_keeps_order():
    flows = _grouped_flows({"a.pcap": 80, "b.pcap": 70})
    s = make_split(flows, seed=5, n_train=60, n_val=30, max_test_benign=40, group_by="time")
    ts = flows.set_index("flow_id")["first_ts"]
    test_benign = [i for i in s.test if not flows.loc[i, "is_attack"]]
    assert len(s.train) == 60 and len(s.val) == 30 and len(test_benign) == 40
    assert ts[s.train].max() < ts[s.val].min() and ts[s.val].max() < ts[test_benign].min()
    benign_ts = np.sort(flows.loc[~flows["is_attack"], "first_ts"].to_numpy())
    np.testing.assert_array_equal(np.sort(ts[s.train].to_numpy()), benign_ts[:60])  # the earliest 60


@pytest.mark.parametrize("group_by, flows, match", [
    ("source_file", {"a.pcap": 50, "b.pcap": 50}, "at least 3 capture files"),
    ("time", {"a.pcap": 2}, "only 2 benign flows"),
])
def test_split_group_too_small_is_a_clear_error(group_by, flows, match):
    with pytest.raises(ValueError, match=f"dataset tiny_ds.*{match}"):
        make_split(_grouped_flows(flows), seed=0, n_train=10, n_val=5, group_by=group_by, source="dataset tiny_ds")
    with pytest.raises(ValueError, match="not one of"):
        make_split(_grouped_flows(flows), seed=0, n_train=10, n_val=5, group_by="day", source="dataset tiny_ds")


def test_split_by_source_file_with_captures_larger_than_the_parts():
    """Three captures each larger than n_train: one per part, train and val subsampled, the surplus unused."""
    flows = _grouped_flows({"a.pcap": 500, "b.pcap": 400, "c.pcap": 300})
    s = make_split(flows, seed=0, n_train=100, n_val=50, group_by="source_file")
    src = flows.set_index("flow_id")["source_file"]
    test_benign = [i for i in s.test if not flows.loc[i, "is_attack"]]
    assert len(s.train) == 100 and len(s.val) == 50
    assert src[s.train].nunique() == src[s.val].nunique() == src[test_benign].nunique() == 1
    assert len({src[s.train].iloc[0], src[s.val].iloc[0], src[test_benign].iloc[0]}) == 3
    assert len(test_benign) == (flows["source_file"] == src[test_benign].iloc[0]).sum()  # test keeps its capture


def test_split_sizes_up_to_train_at_least_test():
    from nidsflow.splits import split_sizes
    assert split_sizes(30000, 20000, 2000, 3000) == (20000, 2000)      # enough: as asked
    assert split_sizes(20000, 20000, 2000, 3000) == (15000, 2000)      # train shrinks first
    assert split_sizes(20000, 20000, 2000) == (14545, 1454)            # no floor: the proportional rule of before
    assert split_sizes(5000, 20000, 2000, 3000) == (3636, 363)         # too few even for val + floor: proportional
    with pytest.raises(ValueError, match="max_test_benign 100 < split.min_test_benign 3000"):
        split_sizes(30000, 20000, 2000, 3000, max_test_benign=100)


@pytest.mark.parametrize("group_by", ["none", "source_file"])
def test_split_min_test_benign_keeps_val_and_the_test_floor(group_by):
    files = {f"cap{i:02d}.pcap": n for i, n in enumerate([7, 3, 12, 5, 9, 4, 11, 6, 8, 2, 10, 5] * 4)}
    flows = _grouped_flows(files, seed=1)  # 328 benign flows in 48 captures
    n_benign = int((~flows["is_attack"]).sum())
    kw = dict(n_train=400, n_val=40, min_test_benign=60, max_test_per_class=25, group_by=group_by)
    s = make_split(flows, seed=7, **kw)
    test_benign = [i for i in s.test if not flows.loc[i, "is_attack"]]
    assert len(test_benign) >= 60 and len(s.val) <= 40 and len(s.train) <= n_benign - 40 - 60
    if group_by == "none":
        assert (len(s.train), len(s.val), len(test_benign)) == (n_benign - 100, 40, 60)
    else:  # whole files: near the targets, never above them, every file in one part
        assert len(s.val) >= 30 and len(s.train) >= n_benign - 100 - 12
        src = flows.set_index("flow_id")["source_file"]
        assert not set(src[s.train]) & set(src[test_benign]) and not set(src[s.val]) & set(src[test_benign])
    test_labels = flows.loc[s.test, "label"]
    assert (test_labels == "DoS").sum() == 25 and (test_labels == "Scan").sum() == 15  # the per-class cap
    again = make_split(flows, seed=7, **kw)
    for a, b in ((s.train, again.train), (s.val, again.val), (s.test, again.test)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(make_split(flows, seed=8, **kw).train, s.train)


def test_split_min_test_benign_by_file_samples_test_captures_from_the_whole_pool():
    """Two captures of 400 flows and 200 of 5-15: the test part is a sample of the captures, not the two big
    ones left over when train and val are full (what the first-fit assignment does)."""
    rng = np.random.default_rng(0)
    files = {"big1.pcap": 400, "big2.pcap": 400, **{f"s{i:03d}.pcap": int(rng.integers(5, 16)) for i in range(200)}}
    flows = _grouped_flows(files)
    n_benign = sum(files.values())
    for seed in range(3):
        s = make_split(flows, seed=seed, n_train=n_benign - 700, n_val=300, min_test_benign=300,
                       group_by="source_file")
        src = flows.set_index("flow_id")["source_file"]
        test_benign = [i for i in s.test if not flows.loc[i, "is_attack"]]
        assert src[test_benign].nunique() >= 10 and len(test_benign) >= 300
        assert src[s.val].nunique() >= 10 and 250 <= len(s.val) <= 300
    # without the floor the first-fit assignment of before is unchanged (old datasets keep their splits)
    old = make_split(flows, seed=0, n_train=n_benign - 700, n_val=300, group_by="source_file")
    again = make_split(flows, seed=0, n_train=n_benign - 700, n_val=300, group_by="source_file", min_test_benign=None)
    np.testing.assert_array_equal(old.test, again.test)
