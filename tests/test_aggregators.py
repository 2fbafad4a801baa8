"""Aggregators (group A) and evaluation metrics: closed forms, label independence, NaN columns, artifacts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nidsflow.evaluate.aggregators import (AGGREGATORS, AggregatorError, fit_deployable, load_artifact,
                                           make_aggregator, save_artifact)
from nidsflow.evaluate.metrics import (evaluate_scores, format_mean_std, mean_std, threshold_at_fpr)
from nidsflow.fixtures import make_janus_like_table
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable

NAMES5 = tuple(f"s{i}" for i in range(5))


def _gaussian(n, seed, p=5):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(p, p))
    cov = A @ A.T / p + 0.5 * np.eye(p)
    mu = rng.normal(size=p) * 3
    return rng.multivariate_normal(mu, cov, size=n), mu, cov


@pytest.mark.parametrize("n,seed", [(30, 0), (200, 1), (2000, 2)])
def test_oas_matches_closed_form(n, seed):
    """Sigma = (1 - rho) S + rho tr(S)/p I with rho = (tr(S^2) + tr(S)^2) / ((n + 1)(tr(S^2) - tr(S)^2 / p)),
    capped at 1 (sklearn's form of Chen et al. 2010 Eq. 23, the 2/p terms dropped); S the biased covariance."""
    X, _, _ = _gaussian(n, seed)
    p = X.shape[1]
    mean = X.mean(0)
    S = (X - mean).T @ (X - mean) / n
    tr_s2, tr_s = np.trace(S @ S), np.trace(S)
    rho = min((tr_s2 + tr_s ** 2) / ((n + 1) * (tr_s2 - tr_s ** 2 / p)), 1.0)
    sigma = (1 - rho) * S + rho * tr_s / p * np.eye(p)
    agg = make_aggregator("A1").fit(X, NAMES5)
    assert agg.shrinkage_ == pytest.approx(rho, rel=1e-10)
    np.testing.assert_allclose(agg.covariance_, sigma, rtol=1e-10, atol=1e-12)
    Y, _, _ = _gaussian(50, seed + 100)
    D = Y - mean
    expected = np.einsum("ij,jk,ik->i", D, np.linalg.inv(sigma), D)
    np.testing.assert_allclose(agg.score(Y, NAMES5), expected, rtol=1e-8)
    # shrinkage goes to 0 as n grows (the estimate approaches S)
    if n == 2000:
        assert rho < 0.01


def test_mahalanobis_of_known_gaussian():
    """With many benign val rows, d^2 approaches the true (x - mu)^T Sigma^-1 (x - mu), and benign d^2 ~ chi2(p)."""
    X, mu, cov = _gaussian(200_000, 3)
    agg = make_aggregator("A1").fit(X, NAMES5)
    rng = np.random.default_rng(4)
    Y = mu + rng.normal(size=(20, 5)) * 3
    true = np.einsum("ij,jk,ik->i", Y - mu, np.linalg.inv(cov), Y - mu)
    np.testing.assert_allclose(agg.score(Y, NAMES5), true, rtol=0.03)
    assert agg.score(X[:20_000], NAMES5).mean() == pytest.approx(5.0, rel=0.03)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_no_aggregator_reads_test_labels_or_test_rows(name):
    """Permuting the test rows' labels, and replacing the test rows' scores, leaves every fitted parameter unchanged."""
    t = make_janus_like_table(seed=5)
    if name in ("A8", "A9"):  # rows of the cnf_nll score option
        t = _with_cnf(t)
    if name == "flow_nllL":  # the flow_nll column's row
        t = _with_flow_nll(t)
    if name in ("A10", "A11"):  # the flow_nll score option's rows: the same construction under their column name
        t = _with_cnf(t)
        col = "flow_nll" if name == "A10" else "flow_nll_z"
        t = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, t.score_names[:-1] + (col,), t.scores)
    ref = make_aggregator(name).fit_table(t).to_dict()
    rng = np.random.default_rng(0)
    test = np.nonzero(t.split == "test")[0]
    perm = rng.permutation(test)
    label, cls, att, scores = t.label.copy(), t.attack_class.copy(), t.is_attack.copy(), t.scores.copy()
    label[test], cls[test], att[test] = label[perm], cls[perm], ~att[perm]
    scores[test] = rng.normal(size=(len(test), scores.shape[1])) * 100
    t2 = ScoreTable(t.flow_id, t.split, label, cls, att, t.score_names, scores, t.n_packets)
    assert make_aggregator(name).fit_table(t2).to_dict() == ref
    # and the val rows do matter (the test above is not vacuous)
    scores3 = t.scores.copy()
    scores3[t.split == "val"] *= 2
    t3 = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, t.score_names, scores3, t.n_packets)
    assert make_aggregator(name).fit_table(t3).to_dict() != ref


def test_nan_columns_of_a_headless_variant_are_skipped():
    disc = tuple(n for n in JANUS_SCORE_NAMES if n.startswith("disc"))
    b3 = make_janus_like_table(seed=1, nan_columns=disc)  # no discrete head
    a1 = make_aggregator("A1").fit_table(b3)
    assert a1.columns == ("terminal_norm", "terminal_flow", "terminal_packet")
    assert np.isfinite(a1.score_table(b3)).all()
    with pytest.raises(AggregatorError, match="no usable score column"):
        make_aggregator("A6").fit_table(b3)
    b4 = make_janus_like_table(seed=1, nan_columns=("terminal_norm", "terminal_flow", "terminal_packet"))
    assert make_aggregator("A1").fit_table(b4).columns == disc
    with pytest.raises(AggregatorError):
        make_aggregator("A4").fit_table(b4)


def test_nonfinite_test_row_scores_inf_and_is_logged(caplog):
    t = make_janus_like_table(seed=2)
    agg = make_aggregator("A1").fit_table(t)
    S = t.scores.copy()
    S[-1, 0] = np.nan
    with caplog.at_level(logging.WARNING):
        s = agg.score(S, t.score_names)
    assert s[-1] == np.inf and np.isfinite(s[:-1]).all()
    assert "non-finite" in caplog.text
    # metrics rank +inf above every finite score
    m = evaluate_scores(t.split, t.attack_class, t.is_attack, s)
    assert 0.5 < m["auroc"] <= 1.0


def test_empirical_covariance_uses_pseudo_inverse_when_singular(caplog):
    X, _, _ = _gaussian(300, 6, p=3)
    X = np.column_stack([X, X[:, 0] + X[:, 1]])  # collinear: singular covariance
    with caplog.at_level(logging.WARNING):
        agg = make_aggregator("A3").fit(X, ("a", "b", "c", "d"))
    assert "pseudo-inverse" in caplog.text
    s = agg.score(X, ("a", "b", "c", "d"))
    assert np.isfinite(s).all() and s.mean() == pytest.approx(3.0, rel=0.05)  # rank 3


def test_deployable_artifact_round_trip_and_threshold(tmp_path):
    t = make_janus_like_table(seed=3)
    art = fit_deployable(t, fpr_target=0.05)
    save_artifact(art, tmp_path / "aggregator.json")
    agg, thr, d = load_artifact(tmp_path / "aggregator.json")
    np.testing.assert_allclose(agg.score_table(t), make_aggregator("A1").fit_table(t).score_table(t))
    val_scores = agg.score_table(t)[t.split == "val"]
    assert np.mean(val_scores > thr) <= 0.05
    assert d["columns"] == list(JANUS_SCORE_NAMES) and d["fpr_target"] == 0.05
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(AggregatorError, match="bad.json"):
        load_artifact(tmp_path / "bad.json")


def test_a7_is_mean_z_and_single_scores_are_monotone():
    t = make_janus_like_table(seed=4)
    val = t.scores[t.split == "val"].astype(float)
    z = (t.scores - val.mean(0)) / val.std(0)
    np.testing.assert_allclose(make_aggregator("A7").fit_table(t).score_table(t), z.mean(1), rtol=1e-5, atol=1e-6)
    a5 = make_aggregator("A5").fit_table(t).score_table(t)
    test = t.split == "test"
    assert roc_auc_score(t.is_attack[test], a5[test]) == pytest.approx(
        roc_auc_score(t.is_attack[test], t.column("terminal_norm")[test]))


def test_per_class_auroc_is_each_class_against_test_benign_only():
    split = np.array(["val"] * 2 + ["test"] * 6)
    cls = np.array(["benign", "benign", "benign", "benign", "a", "a", "b", "b"])
    s = np.array([0, 0, 1.0, 2.0, 3.0, 4.0, 1.5, 0.5])
    m = evaluate_scores(split, cls, cls != "benign", s, fpr_target=0.5)
    assert m["per_class"]["a"]["auroc"] == 1.0
    assert m["per_class"]["b"]["auroc"] == 0.25  # of the 4 (b, benign) pairs only 1.5 > 1.0 is won; "a" is not in it
    assert m["auroc"] == pytest.approx(roc_auc_score(cls[2:] != "benign", s[2:]))
    assert m["threshold"]["value"] == 0.0


def test_threshold_mean_std_and_formatting():
    v = np.arange(1000, dtype=float)
    t = threshold_at_fpr(v, 0.01)
    assert np.mean(v > t) <= 0.01 and np.mean(v >= t) > 0.01
    assert mean_std([0.9, 0.8]) == pytest.approx((0.85, np.std([0.9, 0.8], ddof=1), 2))
    assert format_mean_std([]) == "not run"
    assert format_mean_std([0.98]) == "98.00 (1 seed)"
    assert format_mean_std([0.98, 0.99]) == "98.50 ± 0.71"


@pytest.mark.parametrize("n,seed", [(200, 11), (2000, 12)])
def test_oas_on_standardised_scores_matches_closed_form_and_is_scale_free(n, seed):
    """A1z: z = (s - mean_val) / std_val (ddof 0), then OAS on z: Sigma_z = (1 - rho) R + rho I (tr(R)/p = 1 for
    the correlation matrix R), d^2 = z^T Sigma_z^-1 z. Rescaling one column changes A1 (its shrinkage target
    tr(S)/p I depends on the scale) but not A1z."""
    X, _, _ = _gaussian(n, seed)
    X[:, 0] *= 1e-3  # a low-variance score column (like a disc_nll_* channel)
    p = X.shape[1]
    mean, std = X.mean(0), X.std(0)
    Z = (X - mean) / std
    R = Z.T @ Z / n
    tr_r2, tr_r = np.trace(R @ R), np.trace(R)
    rho = min((tr_r2 + tr_r ** 2) / ((n + 1) * (tr_r2 - tr_r ** 2 / p)), 1.0)
    sigma = (1 - rho) * R + rho * tr_r / p * np.eye(p)
    assert tr_r / p == pytest.approx(1.0)
    agg = make_aggregator("A1z").fit(X, NAMES5)
    assert agg.shrinkage_ == pytest.approx(rho, rel=1e-10)
    np.testing.assert_allclose(agg.covariance_, sigma, rtol=1e-10, atol=1e-12)
    Y, _, _ = _gaussian(50, seed + 100)
    Y[:, 0] *= 1e-3
    Dz = (Y - mean) / std
    np.testing.assert_allclose(agg.score(Y, NAMES5), np.einsum("ij,jk,ik->i", Dz, np.linalg.inv(sigma), Dz), rtol=1e-8)
    # scale: A1z is invariant to a column's unit, A1 is not
    k = np.array([1e3, 1, 1, 1, 1])
    np.testing.assert_allclose(make_aggregator("A1z").fit(X * k, NAMES5).score(Y * k, NAMES5),
                               agg.score(Y, NAMES5), rtol=1e-8)
    a1 = make_aggregator("A1").fit(X, NAMES5).score(Y, NAMES5)
    assert not np.allclose(make_aggregator("A1").fit(X * k, NAMES5).score(Y * k, NAMES5), a1, rtol=1e-3)
    # round trip through the artifact
    agg2 = make_aggregator("A1z").fit(X, NAMES5)
    from nidsflow.evaluate.aggregators import aggregator_from_dict
    np.testing.assert_allclose(aggregator_from_dict(agg2.to_dict()).score(Y, NAMES5), agg.score(Y, NAMES5))


def _with_cnf(t, seed=0):
    """The table with a cnf_nll column (the score option) correlated with terminal_norm."""
    rng = np.random.default_rng(seed)
    cnf = t.column("terminal_norm") + rng.normal(size=len(t.flow_id))
    return ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, t.score_names + ("cnf_nll",),
                      np.column_stack([t.scores, cnf]).astype(np.float32), t.n_packets)


def _with_flow_nll(t, seed=0):
    """The table with a flow_nll column (helper "nll"'s score) that grows with the packet count."""
    rng = np.random.default_rng(seed)
    nll = 5.0 * t.n_packets + t.column("disc_nll_total") + rng.normal(size=len(t.flow_id))
    return ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, t.score_names + ("flow_nll",),
                      np.column_stack([t.scores, nll]).astype(np.float32), t.n_packets)


def test_score_options_have_their_own_rows_and_never_change_the_seed_rows():
    """A cnf_nll column (score option) is read by A8/A9 only: A1-A7 and A1z give the same as without it."""
    t = make_janus_like_table(seed=6)
    tc = _with_cnf(t)
    for name in AGGREGATORS:
        if name in ("A8", "A9", "A10", "A11", "flow_nllL"):  # option rows: without their column they refuse to run
            with pytest.raises(AggregatorError, match="cnf_nll" if name in ("A8", "A9") else "flow_nll"):
                make_aggregator(name).fit_table(t)
            continue
        a, b = make_aggregator(name).fit_table(t), make_aggregator(name).fit_table(tc)
        assert a.columns == b.columns and "cnf_nll" not in b.columns
        np.testing.assert_allclose(a.score_table(t), b.score_table(tc))
    assert make_aggregator("A8").fit_table(tc).columns == ("cnf_nll",)
    assert make_aggregator("A9").fit_table(tc).columns == tuple(JANUS_SCORE_NAMES) + ("cnf_nll",)
