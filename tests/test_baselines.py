"""Baselines: each detects obviously different synthetic attacks, is deterministic per seed, never reads labels,
and a packet baseline on a flow-table store (or an unbuilt baseline) is "not run"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nidsflow.evaluate.baselines import (ALL_METHODS, BASELINES, NOT_RUN, BaselineError, make_baseline,
                                         run_baseline, why_not_runnable)
from nidsflow.evaluate.baselines.common import BaselineInput, FlowPreprocessor, PacketPreprocessor
from nidsflow.fixtures import make_synflood_exfil_store, synthetic_split
from nidsflow.store import Store

torch.set_num_threads(1)

#: Small settings so each fit takes about a second.
FAST = {
    "iforest": {"n_estimators": 100, "max_samples_grid": [128, 256]},
    "ocsvm": {"gamma_scale_grid": [1.0, 0.3]},
    "knn": {"n_neighbors_grid": [5, 10]},
    "lof": {"n_neighbors_grid": [20, 10]},
    "ecod": {},
    "copod": {},
    "ganomaly": {"epochs": 8, "latent_grid": [8]},
    "anoformer": {"epochs": 4, "mask_ratio_grid": [0.3], "d_model": 16, "n_heads": 2, "n_layers": 1},
    "mmr": {"epochs": 10, "mask_ratio_grid": [0.25]},
    "stfpm": {"epochs": 15, "min_steps": 0, "teacher_epochs": 15, "teacher_min_steps": 0, "widths": [16, 16, 16]},
    "shafir_nf": {"epochs": 15, "n_layers_grid": [4], "rf_trees": 20, "perm_repeats": 2},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(make_synflood_exfil_store(tmp_path_factory.mktemp("bl") / "store", n_benign=700, n_attack=60, seed=1))


@pytest.fixture(scope="module")
def flow_only_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("bl_flow") / "store"
    return Store(make_synflood_exfil_store(root, n_benign=500, n_attack=40, seed=2, with_packets=False))


@pytest.fixture(scope="module")
def split(store):
    return synthetic_split(store, seed=0, n_train=300, n_val=120)


def test_every_seed_baseline_has_a_row():
    assert set(ALL_METHODS) == set(BASELINES) | set(NOT_RUN)
    for m in ("iforest", "ocsvm", "knn", "lof", "ecod", "copod", "ganomaly", "anoformer", "mmr", "stfpm", "shafir_nf"):
        assert m in BASELINES
    for m in NOT_RUN:
        with pytest.raises(BaselineError, match="not run"):
            make_baseline(m, 0)


@pytest.mark.parametrize("method", sorted(FAST))  # the deep baselines of issue 12: tests/test_deep_baselines.py
def test_baseline_detects_obvious_anomalies_and_is_deterministic(method, store, split):
    t1, info = run_baseline(store, split, method, FAST[method], seed=7, fpr_target=0.05)
    assert info["status"] == "ok"
    assert info["auroc"] > 0.8, info
    for cls in ("synflood", "exfil"):
        assert cls in info["per_class"]
    assert t1.score_names == ("score",)
    assert set(t1.split) == {"val", "test"} and len(t1.flow_id) == len(split.val) + len(split.test)
    assert np.isfinite(t1.scores).all()
    t2, info2 = run_baseline(store, split, method, FAST[method], seed=7)
    np.testing.assert_array_equal(t1.scores, t2.scores)
    assert info2["selected"] == info["selected"]
    assert isinstance(info["n_parameters"], int) and info["n_parameters"] > 0 and info["parameter_count"]


@pytest.mark.parametrize("method", ["ganomaly", "shafir_nf"])
def test_seed_changes_a_stochastic_baseline(method, store, split):
    a, _ = run_baseline(store, split, method, FAST[method], seed=1)
    b, _ = run_baseline(store, split, method, FAST[method], seed=2)
    assert not np.array_equal(a.scores, b.scores)


@pytest.mark.parametrize("method", ["iforest", "mmr"])
def test_baseline_never_reads_labels(method, store, split, tmp_path):
    """The same store with every label shuffled gives exactly the same scores."""
    root = tmp_path / "store"
    root.mkdir()
    import shutil
    shutil.copytree(store.root / "packets", root / "packets")
    shutil.copy(store.root / "flow_features.parquet", root / "flow_features.parquet")
    flows = store.flows.copy()
    perm = np.random.default_rng(0).permutation(len(flows))
    for c in ("label", "attack_class", "is_attack"):
        flows[c] = flows[c].to_numpy()[perm]
    flows.to_parquet(root / "flows.parquet", index=False)
    a, _ = run_baseline(store, split, method, FAST[method], seed=3)
    b, _ = run_baseline(Store(root), split, method, FAST[method], seed=3)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_flow_table_store_runs_flow_baselines_only(flow_only_store):
    sp = synthetic_split(flow_only_store, seed=0, n_train=250, n_val=100)
    for method in ("anoformer", "stfpm"):
        table, info = run_baseline(flow_only_store, sp, method, FAST[method], seed=0)
        assert table is None and info["status"] == "not run" and "packet" in info["reason"]
    table, info = run_baseline(flow_only_store, sp, "iforest", FAST["iforest"], seed=0)
    assert info["status"] == "ok" and info["auroc"] > 0.8
    assert why_not_runnable("tslanet", False) is not None and why_not_runnable("tslanet", True) is None
    assert why_not_runnable("shafir_nf", False) is None


def test_flow_preprocessing_handles_heavy_tails_inf_and_constants():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(8, 3, 500), np.ones(500), rng.normal(size=500)])
    X[3, 0] = np.inf
    X[4, 2] = np.nan
    pre = FlowPreprocessor(clip=20).fit(X, ("bytes", "const", "z"))
    Z = pre.transform(X)
    assert Z.shape == (500, 3) and np.isfinite(Z).all()
    assert pre.names_ == ("bytes", "const", "z") and (Z[:, 1] == 0).all()  # constant on train: kept, scale 1
    assert np.abs(np.median(Z, axis=0)).max() < 0.05  # robust centring
    assert np.abs(Z).max() <= 20


def test_packet_preprocessing_masks_padding():
    x = np.zeros((2, 4, 9), np.float32)
    x[:, :, 0] = 100
    x[:, :, 8] = 1
    tok, valid = PacketPreprocessor().fit(x, np.array([2, 9])).transform(x, np.array([2, 9]))
    assert valid.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert (tok[0, 2:] == 0).all() and (tok[1, :, 8] == 1).all()


def test_baseline_rejects_the_wrong_view():
    m = make_baseline("stfpm", 0)
    with pytest.raises(BaselineError, match="packet sequences"):
        m.fit(BaselineInput(flow=np.zeros((20, 3))))
    with pytest.raises(BaselineError, match="at least 10"):
        make_baseline("iforest", 0).fit(BaselineInput(flow=np.zeros((5, 3))))


def test_stfpm_teacher_is_pretrained_frozen_and_padding_is_ignored(store, split):
    """The teacher is trained (not its random initialisation) and frozen; what lies beyond a flow's
    length never changes its score."""
    from nidsflow.evaluate.baselines import load_inputs
    from nidsflow.evaluate.baselines.nn_utils import seed_torch
    from nidsflow.evaluate.baselines.student_teacher import N_CHANNELS, _PyramidCNN

    m = make_baseline("stfpm", 5, FAST["stfpm"])
    m.fit(load_inputs(store, split.train, "packets"), load_inputs(store, split.val, "packets"))
    assert np.isfinite(m.selected["teacher_val_reconstruction"]) and m.selected["teacher_best_epoch"] >= 0
    assert all(not q.requires_grad for q in m.teacher.parameters())
    seed_torch(5 + 100_003)
    init = _PyramidCNN(N_CHANNELS, [16, 16, 16])
    moved = [float((a - b).abs().max()) for a, b in zip(m.teacher.state_dict().values(), init.state_dict().values())]
    assert min(moved) > 0  # every teacher tensor left its initialisation
    x = load_inputs(store, split.test, "packets")
    s1 = m.score(x)
    garbage = x.packets.copy()
    beyond = np.arange(garbage.shape[1])[None, :] >= np.minimum(x.lengths, garbage.shape[1])[:, None]
    garbage[beyond] = np.random.default_rng(0).uniform(0, 1e5, size=(int(beyond.sum()), garbage.shape[2]))
    s2 = m.score(BaselineInput(packets=garbage, lengths=x.lengths))
    np.testing.assert_array_equal(s1, s2)


def test_stfpm_reference_is_length_conditional():
    """Each layer's mismatch is standardised against benign val flows of similar length: the same raw
    mismatch is alarming for a short flow (short benign flows fit tightly) and ordinary for a long one."""
    from nidsflow.evaluate.baselines.student_teacher import STFPMBaseline

    rng = np.random.default_rng(0)
    m = STFPMBaseline(seed=0, norm_neighbours=50)
    m.T_ = 16
    n = np.r_[np.full(150, 2), np.full(150, 16)]
    mis = np.r_[rng.normal(0.001, 0.0002, 150), rng.normal(0.1, 0.03, 150)][:, None].repeat(3, axis=1)
    m._fit_normaliser(mis, n)
    z = lambda L, v: (v - m.norm_loc_[L]) / m.norm_scale_[L]  # noqa: E731
    assert (z(2, 0.05) > 50).all() and (z(16, 0.05) < 0).all()
    assert np.allclose(m.norm_loc_[2], 0.001, atol=1e-4) and np.allclose(m.norm_loc_[16], 0.1, atol=0.01)


def test_shafir_configured_features_must_exist(store, split):
    with pytest.raises(BaselineError, match="not .*flow features"):
        run_baseline(store, split, "shafir_nf", {**FAST["shafir_nf"], "features": ["nope", "duration"]}, seed=0)
    _, info = run_baseline(store, split, "shafir_nf", {**FAST["shafir_nf"], "features": ["duration", "mean_size"]},
                           seed=0)
    assert info["selected"]["features"] == ["duration", "mean_size"]


def test_shafir_ranking_falls_back_to_impurity_not_column_order():
    from nidsflow.evaluate.baselines.shafir_nf import importance_order, rank_features_label_free

    mdi = np.array([0.1, 0.3, 0.05, 0.2, 0.35])
    # no clear permutation importance anywhere (redundant features): impurity order, not column order
    assert importance_order(np.zeros(5), np.zeros(5), mdi).tolist() == [4, 1, 3, 0, 2]
    # a clear one (mean > 2 std) comes first; one within its noise (0.01 +- 0.02) counts as none
    perm, std = np.array([0.0, 0.0, 0.02, 0.0, 0.01]), np.array([0.0, 0.0, 0.001, 0.0, 0.02])
    assert importance_order(perm, std, mdi).tolist() == [2, 4, 1, 3, 0]
    # a permutation importance of a few flipped pairs (both repeats alike, std 0) is noise, not clear;
    # and impurity values equal up to float noise keep column order
    assert importance_order(np.array([0, 0, 2e-6, 0, 0]), np.zeros(5), mdi).tolist() == [4, 1, 3, 0, 2]
    assert importance_order(np.zeros(3), np.zeros(3), np.array([0.2, 0.2 + 1e-12, 0.1])).tolist() == [0, 1, 2]
    # on data: two independent noise columns first, then a structured (correlated) group, which ranks first
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 1))
    X = np.hstack([rng.normal(size=(600, 2)), z, z + 0.01 * rng.normal(size=(600, 1)),
                   -z, 2 * z + 0.01 * rng.normal(size=(600, 1))])
    assert set(importance_order(*rank_features_label_free(X[:400], X[400:], seed=0, n_estimators=50))[:4]) == {2, 3, 4, 5}


@pytest.mark.parametrize("method", ["ecod", "copod"])
def test_empirical_tail_scores_are_pyods_for_one_new_flow_and_batch_independent(method, store, split):
    """Each flow gets the score PyOD gives it when it is the only new row (ECDFs of benign train + that
    row); unlike PyOD's batch scoring, a flow's score does not depend on which other flows are scored."""
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD

    from nidsflow.evaluate.baselines import load_inputs

    m = make_baseline(method, 0)
    m.fit(load_inputs(store, split.train, "flow"), load_inputs(store, split.val, "flow"))
    test = load_inputs(store, split.test, "flow")
    ours = m.score(test)
    ref = (ECOD if method == "ecod" else COPOD)().fit(m.pre.transform(load_inputs(store, split.train, "flow").flow)
                                                     .astype(np.float64))
    from scipy.stats import skew

    Z = m.pre.transform(test.flow).astype(np.float64)
    rows = np.arange(0, len(Z), 7)
    one_by_one = np.array([ref.decision_function(Z[i:i + 1])[0] for i in rows])
    # PyOD takes the skewness sign from train + the new row; ours from benign train alone (the model does
    # not change with the flow it scores): compare where the two signs agree in every dimension
    same = np.array([(np.sign(np.nan_to_num(skew(np.vstack([ref.X_train, Z[i:i + 1]]), axis=0))) == m.skew_sign_).all()
                     for i in rows])
    assert same.mean() > 0.5
    np.testing.assert_allclose(ours[rows[same]], one_by_one[same], rtol=1e-9)
    np.testing.assert_array_equal(m.score(test.subset(np.arange(10))), ours[:10])
    assert not np.allclose(ref.decision_function(Z)[rows], one_by_one)  # PyOD's batch scores are transductive


def test_calibration_selection_keeps_the_default_unless_clearly_better():
    from nidsflow.evaluate.baselines.classical import select_by_calibration

    rng = np.random.default_rng(0)
    train = rng.normal(size=1000)
    val_ok, val_off = rng.normal(size=400), rng.normal(0.5, 1.0, size=400)
    fits = {"default": (None, train, val_ok), "near": (None, train, val_ok + 1e-3), "bad": (None, train, val_off)}
    i, gaps, _ = select_by_calibration(["default", "near"], fits.get, 0.05, 400)
    assert i == 0  # a gap within one binomial standard error never moves the choice
    i, gaps, _ = select_by_calibration(["bad", "default"], fits.get, 0.05, 400)
    assert i == 1 and gaps[1] < gaps[0] - np.sqrt(0.05 * 0.95 / 400)


def test_parameter_record_of_deep_and_classical_baselines(store, split):
    from nidsflow.evaluate.baselines import load_inputs
    from nidsflow.evaluate.baselines.common import count_parameters, parameter_record

    g = make_baseline("ganomaly", 0, FAST["ganomaly"]).fit(load_inputs(store, split.train, "flow"),
                                                             load_inputs(store, split.val, "flow"))
    rec = parameter_record(g)
    assert rec["n_parameters"] == sum(p.numel() for p in g.net.parameters()) == count_parameters(g.net)
    o = make_baseline("ocsvm", 0, FAST["ocsvm"]).fit(load_inputs(store, split.train, "flow"),
                                                     load_inputs(store, split.val, "flow"))
    sv = o.model.detector_.support_vectors_
    assert parameter_record(o) == {"n_parameters": sv.shape[0] * (sv.shape[1] + 1),
                                   "parameter_count": "stored values: support vectors x dims + one dual coefficient each"}
