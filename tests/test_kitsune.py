"""Kitsune baseline (evaluate/baselines/kitsune.py): KitNET's feature map, autoencoders, end to end on a store."""

import numpy as np
import pytest

from nidsflow.evaluate.baselines.kitsune import (KitNET, _ae_rmse, _ae_step, correlation_distance, feature_map,
                                                 flow_packets)


def _correlated(n=600, groups=(7, 13, 3, 25, 1), seed=0):
    """Columns in groups that share a latent factor (plus a constant column)."""
    rng = np.random.default_rng(seed)
    cols = []
    for g in groups:
        z = rng.normal(size=(n, 1))
        cols.append(z + 0.1 * rng.normal(size=(n, g)))
    cols.append(np.full((n, 1), 3.0))
    return np.concatenate(cols, axis=1)


@pytest.mark.parametrize("m", [1, 4, 10, 100])
def test_feature_map_is_a_partition_with_no_cluster_above_m(m):
    x = _correlated()
    clusters = feature_map(x, m)
    flat = np.concatenate(clusters)
    assert sorted(flat.tolist()) == list(range(x.shape[1]))  # every feature exactly once
    assert max(len(c) for c in clusters) <= min(m, x.shape[1])
    if m == 10:  # a correlated group of at most m features stays together
        assert any(set(c) == set(range(7)) for c in clusters)


def test_correlation_distance_is_one_minus_the_correlation():
    x = _correlated(n=4000, groups=(2, 2))
    d = correlation_distance(x)
    ref = 1 - np.corrcoef(x[:, :4].T)
    np.testing.assert_allclose(d[:4, :4], np.clip(ref, 0, None), atol=0.02)  # the running-mean residuals
    assert (d[-1, :-1] == 1).all() and (d >= 0).all()  # the constant column is at distance 1


def test_autoencoder_rmse_decreases_on_its_training_data():
    rng = np.random.default_rng(1)
    z = rng.uniform(size=(500, 2))
    x = np.concatenate([z, z @ rng.uniform(size=(2, 6))], axis=1)  # 8 inputs on a 2-D manifold
    nv, nh = 8, 6
    W = rng.uniform(-1 / nv, 1 / nv, (nv, nh))
    hb, vb = np.zeros(nh), np.zeros(nv)
    nmin, nmax = x.min(axis=0), x.max(axis=0)
    before = _ae_rmse(x, W, hb, vb, nmin, nmax).mean()
    y, zz, e, g = np.empty(nh), np.empty(nv), np.empty(nv), np.empty(nh)
    for _ in range(20):
        for row in x:
            _ae_step(W, hb, vb, nmin, nmax, row.copy(), nv, nh, 0.1, y, zz, e, g)
    after = _ae_rmse(x, W, hb, vb, nmin, nmax).mean()
    assert after < 0.5 * before


def test_kitnet_scores_an_out_of_range_packet_above_benign_ones():
    x = _correlated(n=3000, seed=2)
    net = KitNET(m=10, seed=0).fit(x[:2000], n_fm=200, epochs=3)
    assert net.train_rmse[-200:].mean() < net.train_rmse[:200].mean()
    benign = net.score(x[2000:])
    odd = x[2000:2100].copy()
    span = x[:2000].max(axis=0) - x[:2000].min(axis=0)
    odd[:, :7] += 3 * span[:7]  # the first group far out of its training range
    assert net.score(odd).min() > benign.max()
    again = KitNET(m=10, seed=0).fit(x[:2000], n_fm=200, epochs=3)
    np.testing.assert_array_equal(again.score(x[2000:]), benign)  # seeded


def test_flow_packets_keeps_a_one_packet_flow_once():
    ctx = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    ctx[1, 1] = ctx[1, 0]
    rows, flow = flow_packets(ctx)
    assert flow.tolist() == [0, 0, 1, 2, 2]
    np.testing.assert_array_equal(rows[2], ctx[1, 0])


@pytest.fixture(scope="module")
def context_store(tmp_path_factory):
    from nidsflow.capture.extract import extract_dataset
    from nidsflow.splits import make_split
    from nidsflow.store import Store
    from test_drivers import EXTRACT, write_pcap

    tmp_path = tmp_path_factory.mktemp("kitsune")
    rng = np.random.default_rng(0)
    benign = [(f"10.0.0.{1 + int(rng.integers(5))}", 1000 + i, f"10.0.1.{int(rng.integers(3))}", 80, 6,
               float(2.0 * i + rng.uniform()), int(rng.integers(2, 7))) for i in range(400)]
    a = write_pcap(tmp_path / "benign.pcap", benign)
    # a flood: one source, hundreds of one-packet UDP flows within two seconds
    b = write_pcap(tmp_path / "flood.pcap", [("10.0.0.66", 5000 + i, "10.0.1.0", 53, 17, 0.005 * i, 1)
                                             for i in range(300)])
    cfg = {"driver": "per_file", "captures": [str(a), str(b)], "labels": {str(a): "BENIGN", str(b): "UDP Flood"}}
    extract_dataset("k", cfg, {**EXTRACT, "context": True}, tmp_path / "s")
    store = Store(tmp_path / "s")
    return store, make_split(store.flows, seed=0, n_train=200, n_val=60)


def test_kitsune_runs_on_an_extracted_store_with_context(context_store):
    from nidsflow.evaluate.baselines import run_baseline, why_not_runnable

    store, split = context_store
    params = {"ad_updates": 3000}
    t1, info = run_baseline(store, split, "kitsune", params, seed=3)
    assert info["status"] == "ok", info
    assert info["selected"]["largest_cluster"] <= 10 and info["selected"]["epochs"] >= 2
    assert np.isfinite(t1.scores).all() and info["auroc"] > 0.8, info
    t2, _ = run_baseline(store, split, "kitsune", params, seed=3)
    np.testing.assert_array_equal(t1.scores, t2.scores)
    tm, info_m = run_baseline(store, split, "kitsune_mean", params, seed=3)
    assert info_m["status"] == "ok" and (tm.scores <= t1.scores + 1e-12).all()  # mean <= max
    # a store without context: the method is not run, with the reason
    assert "extract.context" in why_not_runnable("kitsune", True, False)


def test_flow_feature_baselines_take_the_context_on_request(context_store):
    from nidsflow.evaluate.baselines import BaselineError, load_inputs, run_baseline, why_not_runnable

    store, split = context_store
    flow = load_inputs(store, split.train[:5], "flow")
    both = load_inputs(store, split.train[:5], "flow", "flow+context")
    assert both.flow.shape[1] == flow.flow.shape[1] + 270
    np.testing.assert_array_equal(both.flow[:, :flow.flow.shape[1]], flow.flow)
    assert both.feature_names[-1] == "last_Dnew_0.01_share"
    _, info = run_baseline(store, split, "iforest", {"features": "flow+context", "max_samples_grid": [64]}, seed=0)
    assert info["status"] == "ok" and info["features"] == "flow+context"
    assert why_not_runnable("iforest", True, False, "flow+context") is not None
    assert why_not_runnable("iforest", True, False, "flow") is None
    with pytest.raises(BaselineError, match="features"):
        run_baseline(store, split, "iforest", {"features": "context"}, seed=0)


def test_janus_context_variant_models_the_context(context_store, tmp_path):
    """Variant ``context``: the FLOW token models the flow features and the 270 context values; scoring reads
    the same columns from the store (deployment: tests/test_watch.py)."""
    from nidsflow.janus.score import score_split
    from nidsflow.janus.train import load_model, train_janus
    from nidsflow.janus.variants import is_context_column, trained_as
    from test_janus_train import CFG

    store, split = context_store
    split.save(tmp_path / "split.npz")
    CFG = {**CFG, "ot_method": "sinkhorn_log", "ot_reg": 0.1, "ot_pairing": "sample_unique"}  # the default coupling
    assert trained_as(CFG, "context") == "context"  # a model of its own, not full's
    model = train_janus(store.root, tmp_path / "split.npz", tmp_path / "m", {**CFG, "epochs": 1}, "context", 42,
                        progress=False)
    m, norm, _ = load_model(model)
    n_flow = len(store.flow_features.columns)
    assert norm.reads_context and m.cfg.n_flow_features == len(norm.feature_names) == n_flow + 270
    assert [is_context_column(c) for c in norm.feature_names] == [False] * n_flow + [True] * 270
    table = score_split(model, store.root, tmp_path / "split.npz", CFG, progress=False)
    assert len(table.flow_id) == len(split.val) + len(split.test) and np.isfinite(table.scores).all()
    full = train_janus(store.root, tmp_path / "split.npz", tmp_path / "f", {**CFG, "epochs": 1}, "full", 42,
                       progress=False)
    assert not load_model(full)[1].reads_context


def test_context_twins_run_their_detector_on_flow_plus_context_with_its_settings(context_store):
    from nidsflow.evaluate.baselines import (BASELINES, CONTEXT_TWINS, DISPLAY, feature_set, method_params,
                                             run_baseline)

    assert set(CONTEXT_TWINS) == {f"{m}_context" for m in ("iforest", "ocsvm", "knn", "lof", "ecod", "copod")}
    assert all(t in BASELINES and DISPLAY[t].endswith(" + context") for t in CONTEXT_TWINS)
    assert feature_set("knn_context", {}) == "flow+context" and feature_set("knn", {}) == "flow"
    cfg = {"knn": {"k_grid": [3]}, "lof_context": {"n_neighbors_grid": [7]}}
    assert method_params(cfg, "knn_context") == {"k_grid": [3]}             # the detector's own settings
    assert method_params(cfg, "lof_context") == {"n_neighbors_grid": [7]}   # unless the twin has its own
    assert method_params(cfg, "ecod_context") == {}
    store, split = context_store
    plain, info_plain = run_baseline(store, split, "iforest", {"max_samples_grid": [64]}, seed=0)
    twin, info = run_baseline(store, split, "iforest_context", {"max_samples_grid": [64]}, seed=0)
    assert info["status"] == "ok" and info["features"] == "flow+context" and info_plain["features"] == "flow"
    assert not np.allclose(twin.scores, plain.scores)
