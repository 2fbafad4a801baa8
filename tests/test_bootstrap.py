"""The bootstrap interval of the AUROC against its closed forms."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nidsflow.evaluate.metrics import (MetricError, _neg_cumsum, _pair_positions, _weighted_auroc, auroc_replicates,
                                      bootstrap_auroc, percentile_interval)


def test_weighted_auroc_with_unit_weights_is_sklearns_auroc_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 300).astype(float)      # many ties
    y = rng.random(300) < 0.3
    order, lo, hi = _pair_positions(s[y], s[~y])
    got = _weighted_auroc(np.ones((1, y.sum())), _neg_cumsum(np.ones((1, (~y).sum()))), lo, hi)[0]
    assert got == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_weighted_auroc_counts_a_row_as_often_as_it_is_drawn():
    rng = np.random.default_rng(1)
    s, y = rng.normal(size=200), rng.random(200) < 0.5
    w = rng.integers(0, 4, 200)
    rep = np.repeat(np.arange(200), w)
    order, lo, hi = _pair_positions(s[y], s[~y])
    got = _weighted_auroc(w[y][None], _neg_cumsum(w[~y][order][None]), lo, hi)[0]
    assert got == pytest.approx(roc_auc_score(y[rep], s[rep]), abs=1e-12)


def test_perfect_detector_interval_is_exactly_one():
    y = np.r_[np.zeros(500, bool), np.ones(50, bool)]
    s = np.r_[np.linspace(0, 1, 500), np.linspace(2, 3, 50)]
    assert bootstrap_auroc(y, s, n_boot=200) == (1.0, 1.0)
    groups = np.repeat(np.arange(55), 10)
    assert bootstrap_auroc(y, s, groups=groups, n_boot=200) == (1.0, 1.0)


@pytest.mark.parametrize("n", [200, 5000])
def test_random_detector_interval_covers_one_half_and_narrows_with_n(n):
    rng = np.random.default_rng(n)
    y = rng.random(n) < 0.5
    s = rng.normal(size=n)
    lo, hi = bootstrap_auroc(y, s, n_boot=500, seed=3)
    assert lo < 0.5 < hi
    # the AUROC's standard error under H0 is sqrt((n0 + n1 + 1) / (12 n0 n1)); a 95 % interval ~ 3.92 of it
    n1, n0 = y.sum(), (~y).sum()
    se = np.sqrt((n0 + n1 + 1) / (12 * n0 * n1))
    assert hi - lo == pytest.approx(3.92 * se, rel=0.2)


def test_resampling_captures_widens_the_interval_when_flows_of_a_capture_agree():
    rng = np.random.default_rng(7)
    n_caps, per = 40, 50
    groups = np.repeat(np.arange(n_caps), per)
    y = np.repeat(rng.random(n_caps) < 0.5, per)
    # a capture-level effect: flows of one capture share a shift
    s = np.repeat(rng.normal(size=n_caps), per) + 0.3 * rng.normal(size=n_caps * per) + 0.5 * y
    flow_lo, flow_hi = bootstrap_auroc(y, s, n_boot=400, seed=1)
    cap_lo, cap_hi = bootstrap_auroc(y, s, groups=groups, n_boot=400, seed=1)
    assert cap_hi - cap_lo > 2 * (flow_hi - flow_lo)


def test_same_seed_same_interval_and_one_class_is_an_error():
    rng = np.random.default_rng(2)
    y, s = rng.random(300) < 0.4, rng.normal(size=300)
    assert bootstrap_auroc(y, s, seed=5) == bootstrap_auroc(y, s, seed=5)
    with pytest.raises(MetricError, match="both benign and attack"):
        bootstrap_auroc(np.zeros(10, bool), np.arange(10.0))


def _direct(y, s, units, counts_of):
    """sklearn's AUROC of the rows repeated as often as their unit was drawn (each stratum's draw)."""
    rep = []
    for stratum in (~y, y):
        u, inv = np.unique(units[stratum], return_inverse=True)
        rep.append(np.repeat(np.flatnonzero(stratum), counts_of(u)[inv]))
    rows = np.concatenate(rep)
    return roc_auc_score(y[rows], s[rows])


@pytest.mark.parametrize("by_capture", [False, True])
def test_each_replicate_is_the_auroc_of_the_drawn_rows(by_capture):
    """A replicate is the AUROC of the sample it stands for: every flow (or every flow of a capture) repeated as
    often as the draw took it, benign and attack drawn apart; per class the same with that class's units."""
    from nidsflow.evaluate.metrics import ResamplingDraws

    rng = np.random.default_rng(3)
    n = 400
    cls = rng.choice(["benign", "benign", "dos", "scan"], n)
    y = cls != "benign"
    s = rng.normal(size=n) + y * rng.random(n) + rng.integers(0, 3, n)  # ties
    units = (np.char.add("cap", (rng.integers(0, 25, n)).astype(str)) if by_capture else np.arange(n).astype(str))
    draws = ResamplingDraws(n_boot=5, seed=11)
    reps = auroc_replicates(y, s, units, attack_class=cls, draws=draws)
    for r in range(5):
        counts_of = lambda u: draws.counts(u)[r]  # noqa: E731
        assert reps["overall"][r] == pytest.approx(_direct(y, s, units, counts_of), abs=1e-12)
        for c in ("dos", "scan"):
            m = (cls == "benign") | (cls == c)
            assert reps[c][r] == pytest.approx(_direct(y[m], s[m], units[m], counts_of), abs=1e-12)


def test_the_same_units_get_the_same_draws_and_other_units_other_draws():
    """Draws are keyed by the units: a class's replicates from the full table equal those of the class alone,
    and a test set of other flows is drawn afresh."""
    rng = np.random.default_rng(4)
    cls = rng.choice(["benign", "dos", "scan"], 300)
    y, s = cls != "benign", rng.normal(size=300)
    full = auroc_replicates(y, s, attack_class=cls, n_boot=50, seed=2)
    m = cls != "scan"
    alone = auroc_replicates(y[m], s[m], groups=np.flatnonzero(m), n_boot=50, seed=2)
    assert np.array_equal(full["dos"], alone["overall"])
    other = auroc_replicates(y[m], s[m], groups=np.flatnonzero(m) + 1000, n_boot=50, seed=2)
    assert not np.array_equal(alone["overall"], other["overall"])
    lo, hi = percentile_interval(full["overall"], 0.9)
    assert (lo, hi) == pytest.approx((np.quantile(full["overall"], 0.05), np.quantile(full["overall"], 0.95)))


def test_auroc_and_average_precision_equal_sklearns_with_ties():
    from sklearn.metrics import average_precision_score

    from nidsflow.evaluate.metrics import auroc, average_precision

    rng = np.random.default_rng(5)
    for n, levels in ((50, 3), (500, 20), (2000, None)):
        y = rng.random(n) < 0.3
        s = rng.integers(0, levels, n).astype(float) if levels else rng.normal(size=n)
        s = s + 0.8 * y * (rng.random(n) < 0.5)
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    y, s = np.array([0, 1, 0, 1], bool), np.array([1.0, np.inf, -np.inf, 2.0])  # unscorable flows ranked at the ends
    assert auroc(y, s) == 1.0 and average_precision(y, s) == 1.0
