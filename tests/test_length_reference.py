"""The length-aware benign reference (issue 23): bands, the reference itself, A1L / flow_nllL / baseline +L, the
artifact round trip and the per-band table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nidsflow.evaluate.aggregators import (MIN_BAND, AggregatorError, LengthReference, aggregator_from_dict, band_of,
                                           fit_deployable, length_referenced_score, load_artifact, make_aggregator,
                                           packet_count_bands, per_band_auroc, save_artifact)
from nidsflow.evaluate.tables import write_tables
from nidsflow.fixtures import make_janus_like_table
from nidsflow.scores import FLOW_NLL_SCORES, JANUS_SCORE_NAMES, ScoreTable


def _length_table(seed=0, n_val=3000, n_test=3000, lengths=np.arange(1, 21), noise=True):
    """Benign-only table whose 10 scores depend only on the packet count: location and spread grow with n
    (terminal_* with sqrt(n), disc_nll_* with n), plus (``noise``) noise independent of n."""
    rng = np.random.default_rng(seed)
    n = rng.choice(lengths, size=n_val + n_test)
    eps = rng.standard_t(5, size=(len(n), len(JANUS_SCORE_NAMES))) if noise else 0.0
    k = np.arange(len(JANUS_SCORE_NAMES))
    loc = np.where(k < 3, 0.1 * np.sqrt(n)[:, None], 0.5 * n[:, None] * (1 + k / 10))
    S = loc + (0.02 + 0.01 * n[:, None]) * eps
    split = np.r_[np.full(n_val, "val"), np.full(n_test, "test")]
    cls = np.full(len(n), "benign")
    return ScoreTable(np.arange(len(n)), split, np.full(len(n), "BENIGN"), cls, np.zeros(len(n), bool),
                      JANUS_SCORE_NAMES, S.astype(np.float32), n.astype(np.int64))


def _auroc_long_vs_short(table, scores, short=5, long=15):
    """AUROC of the test flows with >= long packets against those with <= short packets (benign only)."""
    test = table.split == "test"
    m = test & ((table.n_packets <= short) | (table.n_packets >= long))
    return roc_auc_score(table.n_packets[m] >= long, scores[m])


def test_a_score_that_depends_only_on_length_gives_auroc_one_half_between_lengths():
    """The must-show of issue 23: before the reference long flows outrank short ones (AUROC near 1); after it the
    ranking no longer tells lengths apart (AUROC 0.5 within sampling error), for one score and for A1L."""
    t = _length_table()
    raw = t.column("disc_nll_total").astype(float)
    assert _auroc_long_vs_short(t, raw) > 0.99
    assert _auroc_long_vs_short(t, make_aggregator("A1").fit_table(t).score_table(t)) > 0.95
    single = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, ("score",), t.scores[:, 3:4],
                        t.n_packets)
    assert _auroc_long_vs_short(t, length_referenced_score(single)) == pytest.approx(0.5, abs=0.04)
    a1l = make_aggregator("A1L").fit_table(t)
    assert len(a1l.reference.edges_) == 20  # every count has ~150 val flows: its own band
    assert _auroc_long_vs_short(t, a1l.score_table(t)) == pytest.approx(0.5, abs=0.04)
    # A1R, the same reference with one band, keeps the length effect
    assert _auroc_long_vs_short(t, make_aggregator("A1R").fit_table(t).score_table(t)) > 0.9
    # a score that is a function of the length alone: after the reference every flow ties, AUROC exactly 0.5
    exact = _length_table(noise=False)
    assert _auroc_long_vs_short(exact, exact.column("terminal_norm")) == 1.0
    assert _auroc_long_vs_short(exact, make_aggregator("A1L").fit_table(exact).score_table(exact)) == 0.5


def test_bands_hold_min_band_val_flows_and_cover_every_count():
    counts = np.repeat([1, 2, 3, 5, 7, 40], [100, 30, 30, 10, 45, 5])
    edges = packet_count_bands(counts, 50)
    assert edges.tolist() == [1, 2, 5]  # {1}, {2, 3}, {5, 7} and the 5 flows of 40 packets join the top band
    assert np.bincount(band_of(counts, edges)).tolist() == [100, 60, 60]
    # counts never seen on val: below the first edge -> first band, in a gap -> the band below, beyond -> last
    assert band_of(np.array([0, 4, 6, 39, 41, 10_000]), edges).tolist() == [0, 1, 2, 2, 2, 2]
    rng = np.random.default_rng(1)
    for _ in range(20):
        c = rng.geometric(rng.uniform(0.05, 0.6), size=rng.integers(60, 3000))
        e = packet_count_bands(c, MIN_BAND)
        assert np.all(np.bincount(band_of(c, e), minlength=len(e)) >= MIN_BAND)
        assert np.all(np.diff(e) > 0) and e[0] == c.min()
    assert packet_count_bands(np.array([3, 4, 9]), 50).tolist() == [3]  # fewer than min_band in all: one band
    assert packet_count_bands(counts, None).tolist() == [1]


def test_reference_is_median_and_robust_scale_per_band_and_one_sided_columns_clip():
    rng = np.random.default_rng(2)
    n = np.repeat([1, 2], 200)
    X = np.column_stack([rng.normal(size=400) * np.where(n == 1, 1.0, 3.0) + np.where(n == 1, 0.0, 10.0),
                         rng.normal(size=400)])
    ref = LengthReference(50).fit(X, n, one_sided=[False, True])
    for b, m in enumerate((n == 1, n == 2)):
        med = np.median(X[m, 0])
        assert ref.location_[b, 0] == pytest.approx(med)
        assert ref.scale_[b, 0] == pytest.approx(1.482602218505602 * np.median(np.abs(X[m, 0] - med)))
    Z = ref(X, n)
    assert (Z[:, 1] >= 0).all() and (Z[:, 1] == 0).mean() == pytest.approx(0.5, abs=0.01)
    assert (Z[:, 0] < 0).mean() == pytest.approx(0.5, abs=0.01)  # two-sided: kept
    assert ref(X, n, clip=False)[:, 1].min() < 0
    # a band where benign val is constant: the scale is floored, not zero
    Xc = X.copy()
    Xc[n == 1, 0] = 4.0
    ref_c = LengthReference(50).fit(Xc, n)
    assert ref_c.scale_[0, 0] > 0 and np.isfinite(ref_c(Xc, n)).all()


def test_a1l_low_values_surprise_only_on_two_sided_axes():
    """A flow far below its band's benign median on a disc_nll_* axis (one-sided) scores as one at the median; far
    below on terminal_norm (two-sided: too central is atypical) it scores high."""
    t = _length_table(seed=3)
    agg = make_aggregator("A1L").fit_table(t)
    assert agg.reference.one_sided_.tolist() == [c.startswith("disc_nll") for c in JANUS_SCORE_NAMES]
    n = np.array([4])
    base = agg.reference.location_[band_of(n, agg.reference.edges_)].copy()  # the band's medians
    low_disc, low_term = base.copy(), base.copy()
    low_disc[0, JANUS_SCORE_NAMES.index("disc_nll_syn")] -= 100.0
    low_term[0, 0] -= 100 * agg.reference.scale_[band_of(n, agg.reference.edges_)[0], 0]
    s = [agg.score(x, JANUS_SCORE_NAMES, n)[0] for x in (base, low_disc, low_term)]
    assert s[0] == pytest.approx(0.0, abs=1e-12) and s[1] == pytest.approx(0.0, abs=1e-12)
    assert s[2] > 100


def test_length_aware_rows_need_packet_counts_and_round_trip(tmp_path):
    t = make_janus_like_table(seed=7)
    no_lengths = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, t.score_names, t.scores)
    with pytest.raises(AggregatorError, match="packet count"):
        make_aggregator("A1L").fit_table(no_lengths)
    agg = make_aggregator("A1L").fit_table(t)
    with pytest.raises(AggregatorError, match="packet count"):
        agg.score(t.scores, t.score_names)
    # through JSON: the bands and per-band location/scale travel with the aggregator
    back = aggregator_from_dict(json.loads(json.dumps(agg.to_dict())))
    np.testing.assert_array_equal(back.score_table(t), agg.score_table(t))
    assert back.to_dict() == agg.to_dict()
    art = fit_deployable(t, fpr_target=0.05, name="A1L")
    save_artifact(art, tmp_path / "aggregator.json")
    dep, thr, d = load_artifact(tmp_path / "aggregator.json")
    np.testing.assert_array_equal(dep.score_table(t), agg.score_table(t))
    assert np.mean(dep.score_table(t)[t.split == "val"] > thr) <= 0.05
    assert d["params"]["reference"]["band_lower_edges"] == agg.reference.edges_.tolist()
    # the score file carries the packet counts, and one written without them loads without
    t.save(tmp_path / "s.npz")
    np.testing.assert_array_equal(ScoreTable.load(tmp_path / "s.npz").n_packets, t.n_packets)
    no_lengths.save(tmp_path / "old.npz")
    assert ScoreTable.load(tmp_path / "old.npz").n_packets is None
    # an unseen test count far beyond val's largest scores (last band), finite
    assert np.isfinite(agg.score(t.scores[:3], t.score_names, np.array([1, 500, 10_000]))).all()


def test_per_band_auroc_against_a_hand_computation():
    split = np.array(["val"] * 2 + ["test"] * 9)
    n = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 20, 20])
    att = np.array([0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1], bool)
    s = np.array([9, 9, 0.1, 0.5, 0.4, 0.9, 3, 1, 2, 5, 6.0])
    out = per_band_auroc(split, att, n, s, min_class=1)
    # band 1: attacks {0.4, 0.9} vs benign {0.1, 0.5}: pairs won 1 + 2 of 4
    assert out["1"] == {"auroc": 0.75, "n_attack": 2, "n_benign": 2}
    assert out["2"]["auroc"] == 0.0 and out["16+"]["auroc"] == 1.0
    assert out["3-8"] == {"auroc": None, "n_attack": 0, "n_benign": 0}
    assert per_band_auroc(split, att, n, s, min_class=2)["2"]["auroc"] is None  # one benign flow only


def _save(table, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    table.save(path)
    return str(path)


def test_tables_have_plus_l_rows_and_the_length_bands_table(tmp_path):
    r = tmp_path / "results" / "unit"
    p1, bl = [], []
    for seed in (1, 2):
        t = make_janus_like_table(seed=seed)
        p1.append(_save(t, r / f"da/janus/full/seed{seed}/phase1_scores.npz"))
        b = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, ("score",),
                       t.scores[:, :1] + 0.3 * t.n_packets[:, None], t.n_packets)
        bl.append(_save(b, r / f"da/baselines/knn/seed{seed}/scores.npz"))
        old = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, ("score",), t.scores[:, 3:4])
        bl.append(_save(old, r / f"da/baselines/lof/seed{seed}/scores.npz"))  # written before n_packets
    # another model variant (context) on the same dataset: rows of its own in both tables
    p1.append(_save(make_janus_like_table(seed=7), r / "da/janus/context/seed1/phase1_scores.npz"))
    out = tmp_path / "tables"
    write_tables(p1, [], bl, out, {"seeds": [1, 2]}, fpr_target=0.01)
    within = pd.read_csv(out / "within.csv", comment="#")
    overall = within[within.column == "overall"].set_index("method")
    tables = {s: ScoreTable.load(r / f"da/baselines/knn/seed{s}/scores.npz") for s in (1, 2)}
    expected = np.mean([roc_auc_score(tb.is_attack[tb.split == "test"],
                                      length_referenced_score(tb)[tb.split == "test"]) for tb in tables.values()])
    assert overall.loc["kNN (mean distance) +L", "auroc_mean"] == pytest.approx(expected)
    assert overall.loc["LOF +L", "reason"] == "no packet counts in its score files"
    assert "JANUS (full, A1L)" in overall.index and "JANUS (full, flow_nll)" not in overall.index

    bands = pd.read_csv(out / "length_bands.csv", comment="#")
    cell = bands[(bands.method == "JANUS (full, A1L)") & (bands.band == "1")].iloc[0]
    hand = []
    for s in (1, 2):
        t = ScoreTable.load(r / f"da/janus/full/seed{s}/phase1_scores.npz")
        a = make_aggregator("A1L").fit_table(t).score_table(t)  # fitted on every benign val flow
        m = (t.split == "test") & (t.n_packets == 1)
        hand.append(roc_auc_score(t.is_attack[m], a[m]))
    assert cell.auroc_mean == pytest.approx(np.mean(hand)) and cell.n_seeds == 2
    t1 = ScoreTable.load(r / "da/janus/full/seed1/phase1_scores.npz")
    top = bands[(bands.method == "JANUS (full, A1)") & (bands.band == "16+")].iloc[0]
    m = (t1.split == "test") & (t1.n_packets >= 16)
    assert (top.n_attack, top.n_benign) == (t1.is_attack[m].sum(), (~t1.is_attack[m]).sum())
    assert top.cell.startswith("too few flows")  # the geometric counts leave almost no 16+ flow
    lof = bands[bands.method == "LOF +L"]
    assert (lof.cell == "not run").all() and (lof.reason == "no packet counts in the score file").all()
    assert "## da" in (out / "length_bands.md").read_text()
    ctx = bands[bands.method == "JANUS (context, A1L)"].set_index("band")
    t7 = ScoreTable.load(r / "da/janus/context/seed1/phase1_scores.npz")
    a = make_aggregator("A1L").fit_table(t7).score_table(t7)
    m = (t7.split == "test") & (t7.n_packets == 1)
    assert ctx.loc["1", "auroc_mean"] == pytest.approx(roc_auc_score(t7.is_attack[m], a[m]))
    assert ctx.loc["1", "n_seeds"] == 1 and "JANUS (context, A1)" in set(bands.method)


def test_flow_nll_gets_its_own_within_and_band_rows(tmp_path):
    """flow_nll alone is aggregator A10: its row in the within and length_bands tables is that aggregator's."""
    r = tmp_path / "results" / "unit"
    t = make_janus_like_table(seed=3)
    rng = np.random.default_rng(0)
    nll = rng.normal(size=(len(t.flow_id), len(FLOW_NLL_SCORES))) + 4.0 * t.is_attack[:, None] - t.n_packets[:, None]
    t = ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, tuple(t.score_names) + FLOW_NLL_SCORES,
                   np.hstack([t.scores, nll]).astype(np.float32), t.n_packets)
    path = _save(t, r / "da/janus/full/seed1/phase1_scores.npz")
    out = tmp_path / "tables"
    write_tables([path], [], [], out, {"seeds": [1]}, fpr_target=0.01)
    overall = pd.read_csv(out / "within.csv", comment="#").query("column == 'overall'").set_index("method")
    test = t.split == "test"
    a10 = make_aggregator("A10").fit_table(t).score_table(t)
    assert overall.loc["JANUS (full, flow_nll)", "auroc_mean"] == pytest.approx(roc_auc_score(t.is_attack[test],
                                                                                              a10[test]))
    assert "JANUS (full, flow_nllL)" in overall.index
    bands = pd.read_csv(out / "length_bands.csv", comment="#")
    one = bands[(bands.method == "JANUS (full, flow_nll)") & (bands.band == "1")].iloc[0]
    m = test & (t.n_packets == 1)
    assert one.auroc_mean == pytest.approx(roc_auc_score(t.is_attack[m], a10[m]))
