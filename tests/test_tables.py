"""Result tables and figures: computed cells, "not run" for missing ones, provenance on every table."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nidsflow.evaluate.aggregators import make_aggregator
from nidsflow.evaluate.figures import dataset_figures
from nidsflow.evaluate.tables import TABLE_NAMES, ResultSet, config_hash, write_tables
from nidsflow.fixtures import make_janus_like_table
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable

CONFIG = {"seeds": [1, 2], "evaluate": {"fpr_target": 0.01}, "janus": {"variants": ["full", "B3"]}}


def _save(table, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    table.save(path)
    return path


def _baseline_table(seed):
    t = make_janus_like_table(seed=seed)
    return ScoreTable(t.flow_id, t.split, t.label, t.attack_class, t.is_attack, ("score",),
                      t.scores[:, :1] + t.scores[:, 3:4])


def _empty():
    return ScoreTable(np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, str), np.zeros(0, str), np.zeros(0, bool),
                      ("score",), np.zeros((0, 1), np.float32))


#: Ablation cross scores: (src, tgt, variant, seed) -> shift of the attack classes (how separable they are).
#: da's B3 and full models score db (seeds 1, 2) and dc (seed 1; B3 seed 2 has no full to compare with);
#: db's B3 and full models score da (seed 1). None of these may enter the cross matrix or the group-A table.
ABLATION_CROSS = {
    ("da", "db", "full", 1): 2.0, ("da", "db", "full", 2): 2.5, ("da", "db", "B3", 1): 1.0, ("da", "db", "B3", 2): 3.0,
    ("da", "dc", "full", 1): 1.5, ("da", "dc", "B3", 1): 0.5, ("da", "dc", "B3", 2): 4.0,
    ("db", "da", "full", 1): 1.0, ("db", "da", "B3", 1): 1.2,
}
DISC = tuple(n for n in JANUS_SCORE_NAMES if n.startswith("disc"))


def _cross_path(r, src, tgt, variant, seed):
    return r / f"cross/{src}__{tgt}/{variant}/seed{seed}/cross_scores.npz"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two datasets x two seeds of JANUS full, one ablation (B3, NaN discrete columns), one cross pair, two baselines
    (ocsvm "not run": empty file), one cross pair missing; the ablation cross scores of ABLATION_CROSS."""
    tmp_path = tmp_path_factory.mktemp("tables")
    r = tmp_path / "results" / "unit"  # results/{study}/ of a study named "unit"
    p1, cr, bl = [], [], []
    for i, ds in enumerate(["da", "db"]):
        for seed in (1, 2):
            p1.append(_save(make_janus_like_table(seed=10 * i + seed), r / ds / "janus/full" / f"seed{seed}/phase1_scores.npz"))
            bl.append(_save(_baseline_table(seed), r / ds / "baselines/iforest" / f"seed{seed}/scores.npz"))
            bl.append(_save(_empty(), r / ds / "baselines/ocsvm" / f"seed{seed}/scores.npz"))
    p1.append(_save(make_janus_like_table(seed=1, nan_columns=DISC), r / "da/janus/B3/seed1/phase1_scores.npz"))
    for seed in (1, 2):  # issue 11's fix ablation: a model without the IAT fix, less separable, on da
        p1.append(_save(make_janus_like_table(seed=50 + seed, shift=1.0), r / f"da/janus/nofix_iat/seed{seed}/phase1_scores.npz"))
    cr.append(_save(make_janus_like_table(seed=30, shift=1.5), _cross_path(r, "da", "db", "cross", 1)))
    for i, ((src, tgt, variant, seed), shift) in enumerate(ABLATION_CROSS.items()):
        cr.append(_save(make_janus_like_table(seed=40 + i, shift=shift), _cross_path(r, src, tgt, variant, seed)))
    (r / "da/baselines/ocsvm/seed1/auroc.json").write_text(json.dumps({"status": "not run", "reason": "test reason"}))
    for seed, n in ((1, 1000), (2, 3000)):  # what run_baseline records (common.parameter_record)
        (r / f"da/baselines/iforest/seed{seed}/auroc.json").write_text(json.dumps(
            {"status": "ok", "n_parameters": n, "parameter_count": "stored values: 2 per tree node"}))
    out = tmp_path / "tables"
    write_tables([str(p) for p in p1], [str(p) for p in cr], [str(p) for p in bl], out, CONFIG, fpr_target=0.01)
    return r, out


def _a1_auroc(table):
    s = make_aggregator("A1").fit_table(table).score_table(table)
    test = table.split == "test"
    return roc_auc_score(table.is_attack[test], s[test])


def test_every_table_is_written_with_provenance(results):
    _, out = results
    h = hashlib.sha256(json.dumps(CONFIG, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert config_hash(CONFIG) == h
    for name in TABLE_NAMES:
        md = (out / f"{name}.md").read_text()
        page = (out / f"{name}.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and page.count("<table>") == md.count("\n|---")
        csv = (out / f"{name}.csv").read_text()
        for text in (md, csv):
            assert f"config sha256: {h}" in text
            assert "git commit:" in text and "date (UTC):" in text and "seeds: 1" in text
        assert "Provenance" in md


def test_within_cells_are_computed_and_missing_ones_say_not_run(results):
    r, out = results
    df = pd.read_csv(out / "within.csv", comment="#")
    janus = df[(df.dataset == "da") & (df.method == "JANUS (full, A1)") & (df.column == "overall")].iloc[0]
    vals = [_a1_auroc(ScoreTable.load(r / f"da/janus/full/seed{s}/phase1_scores.npz")) for s in (1, 2)]
    assert janus.auroc_mean == pytest.approx(np.mean(vals))
    assert janus.auroc_std == pytest.approx(np.std(vals, ddof=1))
    assert janus.n_seeds == 2
    assert set(df[df.method == "JANUS (full, A1)"].column) == {"overall", "per-class median", "dos", "scan"}
    ocsvm = df[(df.dataset == "da") & (df.method == "OCSVM")]
    assert (ocsvm.cell == "not run").all() and (ocsvm.reason == "test reason").all()
    tslanet = df[df.method == "TSLANet-style"]  # built, but no run among these results
    assert len(tslanet) and (tslanet.cell == "not run").all() and (tslanet.reason == "no result").all()
    md = (out / "within.md").read_text()
    assert f"{100 * np.mean(vals):.2f} ± {100 * np.std(vals, ddof=1):.2f}" in md


def test_within_rows_are_the_configured_or_run_methods(results, tmp_path):
    """With baselines.methods in the config, a method neither configured nor run has no row (no "not run" noise);
    a configured one without results still says so."""
    r, _ = results
    files = {kind: sorted(str(p) for p in r.rglob(name)) for kind, name in
             (("p1", "phase1_scores.npz"), ("cross", "cross_scores.npz"), ("bl", "scores.npz"))}
    cfg = {**CONFIG, "baselines": {"methods": ["iforest", "tslanet"]}}
    write_tables(files["p1"], files["cross"], files["bl"], tmp_path, cfg, fpr_target=0.01)
    df = pd.read_csv(tmp_path / "within.csv", comment="#")
    assert {"Isolation Forest", "OCSVM", "TSLANet-style"} <= set(df.method)  # configured, or run (ocsvm)
    assert not {"kNN (mean distance)", "RD4AD", "kNN (mean distance) + context"} & set(df.method)
    assert (df[df.method == "TSLANet-style"].reason == "no result").all()


def _class_aurocs(table, scores):
    """Per attack class: AUROC of that class vs the test benign flows, computed here with sklearn."""
    test = table.split == "test"
    y, cls, s = table.is_attack[test], table.attack_class[test].astype(str), scores[test]
    return {c: roc_auc_score(y[~y | (cls == c)], s[~y | (cls == c)]) for c in sorted(set(cls[y]))}


def test_within_has_the_per_class_median_for_every_method(results):
    """Median over attack classes of each run's per-class AUROC, then mean ± std over seeds, for JANUS and every
    baseline that ran; "not run" where the method did not run."""
    r, out = results
    df = pd.read_csv(out / "within.csv", comment="#")
    med = df[df.column == "per-class median"]
    assert set(med.method) == set(df.method)  # every method row has the column
    for ds in ("da", "db"):
        janus = [ScoreTable.load(r / f"{ds}/janus/full/seed{s}/phase1_scores.npz") for s in (1, 2)]
        j = [np.median(list(_class_aurocs(t, make_aggregator("A1").fit_table(t).score_table(t)).values()))
             for t in janus]
        b = [np.median(list(_class_aurocs(t, t.scores[:, 0]).values()))
             for t in (ScoreTable.load(r / f"{ds}/baselines/iforest/seed{s}/scores.npz") for s in (1, 2))]
        for method, vals in (("JANUS (full, A1)", j), ("Isolation Forest", b)):
            row = med[(med.dataset == ds) & (med.method == method)].iloc[0]
            assert row.auroc_mean == pytest.approx(np.mean(vals)) and row.n_seeds == 2
            assert row.auroc_std == pytest.approx(np.std(vals, ddof=1))
    assert (med[(med.dataset == "da") & (med.method == "OCSVM")].cell == "not run").all()
    md = (out / "within.md").read_text()
    assert "| method | params | overall (400 / 200) | per-class median | dos (400 / 100) | scan (400 / 100) |" in md
    assert "## Overview (per-class median AUROC)" in md
    b3 = med[(med.dataset == "da") & (med.method == "JANUS (full, A1)")].iloc[0]
    assert f"{100 * b3.auroc_mean:.2f} ± {100 * b3.auroc_std:.2f}" in md.split("## Overview (per-class median")[1]


def test_cross_matrix_diagonal_is_within_and_missing_pair_not_run(results):
    r, out = results
    df = pd.read_csv(out / "cross_matrix.csv", comment="#")
    cell = lambda a, b: df[(df.source == a) & (df.target == b)].iloc[0]  # noqa: E731
    assert cell("db", "da").cell == "not run"
    assert cell("da", "db").auroc_mean == pytest.approx(_a1_auroc(ScoreTable.load(_cross_path(r, "da", "db", "cross", 1))))
    assert cell("da", "db").n_seeds == 1  # the full and B3 models' cross scores of the pair are not the matrix's
    assert cell("db", "da").cell == "not run" and set(df.source) == set(df.target) == {"da", "db"}
    within = pd.read_csv(out / "within.csv", comment="#")
    w = within[(within.dataset == "db") & (within.method == "JANUS (full, A1)") & (within.column == "overall")]
    assert cell("db", "db").auroc_mean == pytest.approx(w.auroc_mean.iloc[0])


def test_aggregator_and_ablation_tables(results):
    _, out = results
    agg = pd.read_csv(out / "aggregators.csv", comment="#")
    from nidsflow.evaluate.aggregators import AGGREGATORS
    assert set(agg.aggregator) == set(AGGREGATORS) and {f"A{i}" for i in range(1, 8)} | {"A1z"} <= set(AGGREGATORS)
    a1 = agg[(agg.aggregator == "A1") & (agg.column == "cross worst")].iloc[0]
    assert a1.auroc_mean == pytest.approx(agg[(agg.aggregator == "A1") & (agg.column == "cross mean")].auroc_mean.iloc[0])
    # group A's cross columns use the "cross" model only: one pair, so its mean is its worst
    assert a1.auroc_mean == pytest.approx(_a1_auroc(ScoreTable.load(_cross_path(results[0], "da", "db", "cross", 1))))
    abl = pd.read_csv(out / "ablation_B.csv", comment="#")
    b3 = abl[(abl.variant == "B3") & (abl.column == "within delta")].iloc[0]
    wf = abl[(abl.variant == "B3") & (abl.column == "within AUROC full")].value.iloc[0]
    wv = abl[(abl.variant == "B3") & (abl.column == "within AUROC variant")].value.iloc[0]
    assert b3.value == pytest.approx(wv - wf)
    assert b3.value < 0  # without the discrete columns the "scan" class is invisible
    assert (abl[abl.variant == "B1"].cell == "not run").all()


def test_ablation_cross_deltas_match_a_hand_computation(results):
    """Variant minus full on the same (source, target, seed); seed mean per pair; cross-mean over the targets,
    then the sources; cross-worst the smallest pair."""
    r, out = results
    auc = {k: _a1_auroc(ScoreTable.load(_cross_path(r, *k))) for k in ABLATION_CROSS}
    pair = {("da", "db"): np.mean([auc["da", "db", "B3", s] - auc["da", "db", "full", s] for s in (1, 2)]),
            ("da", "dc"): auc["da", "dc", "B3", 1] - auc["da", "dc", "full", 1],  # B3 seed 2 has no full: left out
            ("db", "da"): auc["db", "da", "B3", 1] - auc["db", "da", "full", 1]}
    mean = np.mean([np.mean([pair["da", "db"], pair["da", "dc"]]), pair["db", "da"]])
    worst_pair = min(pair, key=pair.get)
    # the shifts make the B3 models worse on da -> db and da -> dc, better on db -> da: the averaging order matters
    assert pair["da", "db"] < 0 and pair["da", "dc"] < 0 < pair["db", "da"]
    assert mean != pytest.approx(np.mean(list(pair.values())))

    abl = pd.read_csv(out / "ablation_B.csv", comment="#", keep_default_na=False, na_values=[""])
    row = lambda column: abl[(abl.variant == "B3") & (abl.column == column)].iloc[0]  # noqa: E731
    assert row("cross-mean delta").value == pytest.approx(mean)
    assert row("cross-mean delta").n_pairs == 3 and row("cross-mean delta").n_datasets == 2
    assert row("cross-worst delta").value == pytest.approx(pair[worst_pair])
    assert row("cross-worst delta").pair == "__".join(worst_pair)
    for (a, b), d in pair.items():
        assert row(f"cross delta {a}__{b}").value == pytest.approx(d)
    full_mean = np.mean([np.mean([np.mean([auc["da", "db", "full", s] for s in (1, 2)]), auc["da", "dc", "full", 1]]),
                         auc["db", "da", "full", 1]])
    assert row("cross-mean AUROC full").value == pytest.approx(full_mean)
    assert row("cross-mean AUROC variant").value - row("cross-mean AUROC full").value == pytest.approx(mean)
    # variants never cross-scored say "not run"
    assert (abl[(abl.variant == "B1") & abl.column.str.startswith("cross")].cell == "not run").all()

    md = (out / "ablation_B.md").read_text()
    b3_line = next(line for line in md.splitlines() if line.startswith("| B3 |"))
    assert f"| {100 * mean:+.2f} |" in b3_line
    assert f"| {100 * pair[worst_pair]:+.2f} ({worst_pair[0]} → {worst_pair[1]}) |" in b3_line
    assert "not with the cross matrix's \"cross\" model" in md and "seeds where both ran" in md


def test_fixes_table_compares_each_undone_fix_with_the_fixed_model(results):
    """Delta = fixed - unfixed per seed, then the mean; the OAS row is A1z - A1 on the main model; the bar is
    the best baseline's seed mean; a dataset without a fix ablation has no rows."""
    r, out = results
    a1 = {(v, s): _a1_auroc(ScoreTable.load(r / f"da/janus/{v}/seed{s}/phase1_scores.npz"))
          for v in ("full", "nofix_iat") for s in (1, 2)}
    delta = np.mean([a1["full", s] - a1["nofix_iat", s] for s in (1, 2)])
    assert delta > 0  # the unfixed tables were drawn less separable

    def a1z(s):
        t = ScoreTable.load(r / f"da/janus/full/seed{s}/phase1_scores.npz")
        z = make_aggregator("A1z").fit_table(t).score_table(t)
        return roc_auc_score(t.is_attack[t.split == "test"], z[t.split == "test"])

    fx = pd.read_csv(out / "fixes.csv", comment="#")
    assert set(fx.dataset) == {"da"}
    cell = lambda row, column: fx[(fx.variant == row) & (fx.column == column)].iloc[0]  # noqa: E731
    assert cell("nofix_iat", "overall delta").auroc_mean == pytest.approx(delta)
    assert cell("nofix_iat", "overall delta").n_seeds == 2
    assert cell("nofix_iat", "overall with the fix").auroc_mean == pytest.approx(np.mean([a1["full", s] for s in (1, 2)]))
    oas = np.mean([a1z(s) - a1["full", s] for s in (1, 2)])
    assert cell("full", "overall delta").auroc_mean == pytest.approx(oas)
    iforest = np.mean([roc_auc_score(t.is_attack[t.split == "test"], t.scores[t.split == "test", 0])
                       for t in (ScoreTable.load(r / f"da/baselines/iforest/seed{s}/scores.npz") for s in (1, 2))])
    bar = fx[(fx.row == "best baseline") & (fx.column == "overall")].iloc[0]
    assert bar.variant == "Isolation Forest" and bar.auroc_mean == pytest.approx(iforest)
    md = (out / "fixes.md").read_text()
    line = next(x for x in md.splitlines() if "nofix_iat → full" in x)
    assert f"| {100 * delta:+.2f} ± " in line and "(Isolation Forest)" in line


def test_unparsable_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="else.npz: is not a path of the form"):
        ResultSet.from_files(phase1_files=[tmp_path / "somewhere/else.npz"])


def test_figures_are_written(results, tmp_path):
    r, _ = results
    roc, dist = tmp_path / "fig/roc.png", tmp_path / "fig/score_distribution.png"
    dataset_figures("da", r / "da/janus/full/seed1/phase1_scores.npz",
                    {"iforest": r / "da/baselines/iforest/seed1/scores.npz",
                     "ocsvm": r / "da/baselines/ocsvm/seed1/scores.npz"}, roc, dist, 0.01)
    for f in (roc, dist):
        assert f.stat().st_size > 10_000 and f.read_bytes()[:4] == b"\x89PNG"
    # no JANUS scores: a labelled placeholder, not a crash
    dataset_figures("dz", None, {}, tmp_path / "z/roc.png", tmp_path / "z/d.png")
    assert (tmp_path / "z/roc.png").exists() and (tmp_path / "z/d.png").exists()


def test_score_distribution_has_one_panel_per_class_with_benign_in_each():
    """22 attack classes (a per-file dataset): one axes per class, titled by the class, each drawing the test benign
    histogram and that class's own; no overlay of every class in one legend."""
    import matplotlib.pyplot as plt

    from nidsflow.evaluate.figures import score_distribution_figure

    rng = np.random.default_rng(0)
    classes = [f"class_{i:02d}" for i in range(22)]
    cls = np.r_[np.full(300, "benign"), np.repeat(classes, 12)]
    split = np.r_[np.full(100, "val"), np.full(len(cls) - 100, "test")]
    scores = rng.gamma(2.0, size=(len(cls), 1)) + 3.0 * (cls != "benign")[:, None]
    table = ScoreTable(np.arange(len(cls)), split, np.where(cls == "benign", "BENIGN", cls), cls, cls != "benign",
                       ("score",), scores.astype(np.float32))
    fig = score_distribution_figure(table, scores[:, 0], "t", threshold=2.0)
    try:
        assert len(fig.axes) == len(classes)
        assert [ax.get_title() for ax in fig.axes] == [f"{c} (n=12)" for c in classes]
        for ax in fig.axes:
            labels = ax.get_legend_handles_labels()[1]
            assert labels == ["benign (n=200)", f"{ax.get_title()}"], labels  # benign + the panel's class only
    finally:
        plt.close(fig)
    benign_only = ScoreTable(table.flow_id[:300], split[:300], table.label[:300], cls[:300], cls[:300] != "benign",
                             ("score",), table.scores[:300])
    fig = score_distribution_figure(benign_only, scores[:300, 0], "t")
    assert len(fig.axes) == 1
    plt.close(fig)


# ---------------------------------------------------------------- the end of the chain: scoring a new capture

def _store_from_capture(pcap, root, extract_cfg):
    """A training store from an unlabelled capture (every flow taken as benign), via the same flow code."""
    from nidsflow.store import StoreWriter
    from nidsflow.deploy.scoring import iter_capture_flows

    parts = list(iter_capture_flows(pcap, extract_cfg))
    frame = pd.concat([p[0] for p in parts], ignore_index=True)
    feats = pd.concat([p[1] for p in parts], ignore_index=True)
    w = StoreWriter(root, extract_cfg["T"])
    w.add_shard(np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))
    frame = frame.drop(columns=["end_reason"], errors="ignore")
    frame["label"], frame["attack_class"], frame["is_attack"], frame["source_file"] = "BENIGN", "benign", False, str(pcap)
    frame["flow_id"] = np.arange(len(frame))
    w.finish(frame, feats)
    return root


def test_new_capture_is_scored_end_to_end(tmp_path):
    """Train a tiny JANUS on one generated capture, fit its aggregator, score a capture it has never seen."""
    import torch

    from nidsflow.demo.generate import capture_file, generate_domain
    from nidsflow.store import Store
    from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
    from nidsflow.deploy.scoring import CSV_COLUMNS, iter_capture_flows, score_capture
    from nidsflow.janus.score import score_split
    from nidsflow.janus.train import train_janus
    from nidsflow.splits import make_split

    torch.set_num_threads(1)
    extract = {"T": 8, "idle_timeout_s": 120, "active_timeout_s": 1800}
    janus = {"T": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "epochs": 1, "batch_size": 64,
             "warmup_steps": 2, "solver_steps": 2, "disc_times": [0.5], "score_batch_size": 256, "patience": 1}
    generate_domain("demo_a", tmp_path / "demo", seed=1, benign_sessions=120, attack_sessions=0, duration_s=300)
    generate_domain("demo_b", tmp_path / "demo", seed=2, benign_sessions=40, attack_sessions=20, duration_s=120)
    train_pcap, new_pcap = tmp_path / "demo" / capture_file("demo_a"), tmp_path / "demo" / capture_file("demo_b")
    store = Store(_store_from_capture(train_pcap, tmp_path / "store", extract))
    n = len(store.flows)
    split = make_split(store.flows, seed=0, n_train=int(n * 0.6), n_val=int(n * 0.3))
    split.save(tmp_path / "split.npz")
    model = train_janus(tmp_path / "store", tmp_path / "split.npz", tmp_path / "model", janus, "full", seed=0,
                        device="cpu", progress=False)
    table = score_split(model, tmp_path / "store", tmp_path / "split.npz", janus, device="cpu", progress=False)
    save_artifact(fit_deployable(table, fpr_target=0.05), tmp_path / "aggregator.json")

    out = tmp_path / "new" / "demo_b.csv"
    summary = score_capture(new_pcap, model, tmp_path / "aggregator.json", out, extract, janus, device="cpu")
    df = pd.read_csv(out)
    n_new = sum(len(p[0]) for p in iter_capture_flows(new_pcap, extract))
    assert list(df.columns) == list(CSV_COLUMNS)
    assert len(df) == n_new == summary["flows"] > 0
    assert np.isfinite(df[list(JANUS_SCORE_NAMES)].to_numpy()).all()
    assert (df["alert"] == (df["deployable_score"] > summary["threshold"])).all()
    assert summary["alerts"] == int(df["alert"].sum())
    with pytest.raises(ValueError, match="not found"):
        score_capture(tmp_path / "nope.pcap", model, tmp_path / "aggregator.json", tmp_path / "x.csv", extract, janus)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.tmp").exists()


def test_within_has_a_parameter_column(results):
    _, out = results
    md = (out / "within.md").read_text()
    assert "| method | params | overall (" in md
    da = md.split("## da")[1].split("## db")[0]
    assert "| Isolation Forest | 2.0k † |" in da  # mean over the seeds, marked as stored values
    assert "| JANUS (full, A1) | - |" in da  # no model.pt beside these synthetic scores
    df = pd.read_csv(out / "within.csv", comment="#")
    row = df[(df.dataset == "da") & (df.method == "Isolation Forest") & (df.column == "overall")].iloc[0]
    assert row.n_parameters == 2000


# ---------------------------------------------------------------- intervals, AUPRC, operating point, small classes

N_BOOT = 200
BOOT = {"n_boot": N_BOOT, "level": 0.9, "seed": 7}
#: flows of the store before the scored ones (train rows): score rows name flow ids 50.., as a real split does
N_TRAIN = 50


def _hand_table(seed):
    """Benign val 200 / test 300 in 12 benign captures; attack classes dos (100 flows, 3 captures), scan (80, 2)
    and rare (10, 1): rare is under the 30-flow minimum. Scores: one column, attacks shifted."""
    rng = np.random.default_rng(seed)
    cls = np.r_[np.full(500, "benign"), np.full(100, "dos"), np.full(80, "scan"), np.full(10, "rare")]
    split = np.r_[np.full(200, "val"), np.full(490, "test")]
    shift = {"benign": 0.0, "dos": 1.5, "scan": 0.7, "rare": 2.5}
    s = rng.normal(size=len(cls)) + np.array([shift[c] for c in cls])
    return ScoreTable(np.arange(len(cls)) + N_TRAIN, split, np.where(cls == "benign", "BENIGN", cls), cls,
                      cls != "benign", ("score",), s[:, None].astype(np.float32))


def _captures(n_flows=N_TRAIN + 690):
    """source_file of every flow of the store (flow id = position): train flows, 12 benign, 6 attack captures."""
    rng = np.random.default_rng(0)
    src = np.r_[np.full(N_TRAIN, "train.pcap"), rng.choice([f"benign{i}.pcap" for i in range(12)], 500),
                rng.choice(["dos0.pcap", "dos1.pcap", "dos2.pcap"], 100), rng.choice(["scan0.pcap", "scan1.pcap"], 80),
                np.full(10, "rare.pcap")]
    assert len(src) == n_flows
    return src


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """Three datasets of one baseline (iforest) at seeds 1, 2: flows (split by flow), caps (split by capture, its
    store's flows.parquet given) and same (both seeds' score files identical)."""
    tmp = tmp_path_factory.mktemp("hand")
    r = tmp / "results" / "unit"
    files = []
    for ds in ("flows", "caps", "same"):
        for seed in (1, 2):
            t = _hand_table(100 if ds == "same" else 10 * seed + len(ds))
            files.append(_save(t, r / ds / "baselines/iforest" / f"seed{seed}/scores.npz"))
    store = r / "caps/store/flows.parquet"
    store.parent.mkdir(parents=True)
    pd.DataFrame({"flow_id": np.arange(N_TRAIN + 690), "source_file": _captures()}).to_parquet(store)
    out = tmp / "tables"
    write_tables([], [], [str(f) for f in files], out, CONFIG, fpr_target=0.05, bootstrap=BOOT,
                 group_by={"flows": "none", "caps": "source_file", "same": "none"}, store_flows=[str(store)])
    return r, out


def _expected(r, ds, category, units):
    """The row intervals.csv should hold, computed here from the score files directly."""
    from nidsflow.evaluate.metrics import auroc_replicates, percentile_interval, threshold_at_fpr
    from sklearn.metrics import average_precision_score

    au, ap, det, fpr, reps = [], [], [], [], []
    for seed in (1, 2):
        t = ScoreTable.load(r / ds / "baselines/iforest" / f"seed{seed}/scores.npz")
        test = t.split == "test"
        y, cls, s = t.is_attack[test], t.attack_class[test], t.scores[test, 0].astype(float)
        g = units(t.flow_id)[test]
        m = np.ones(len(y), bool) if category == "overall" else (~y | (cls == category))
        au.append(roc_auc_score(y[m], s[m]))
        ap.append(average_precision_score(y[m], s[m]))
        thr = threshold_at_fpr(t.scores[t.split == "val", 0], 0.05)
        det.append(np.mean(s[m & y] > thr))
        fpr.append(np.mean(s[~y] > thr))
        reps.append(auroc_replicates(y[m], s[m], g[m], n_boot=N_BOOT, seed=BOOT["seed"])["overall"])
    lo, hi = percentile_interval(np.mean(reps, axis=0), BOOT["level"])
    return {"auroc": np.mean(au), "auroc_lo": lo, "auroc_hi": hi, "auprc": np.mean(ap), "det_rate": np.mean(det),
            "fpr_realised": np.mean(fpr), "n_seeds": 2, "n_benign": 300,
            "n_attack": {"overall": 190, "dos": 100, "scan": 80, "rare": 10}[category]}


def test_intervals_csv_matches_a_direct_computation(hand):
    r, out = hand
    df = pd.read_csv(out / "intervals.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == ["dataset", "method", "category", "n_benign", "n_attack", "n_seeds", "auroc",
                                "auroc_lo", "auroc_hi", "auprc", "det_rate", "fpr_realised", "fpr_target",
                                "in_median", "group_by"]
    assert set(zip(df.dataset, df.category)) == {(d, c) for d in ("flows", "caps", "same")
                                                 for c in ("overall", "dos", "scan", "rare")}
    assert set(df.method) == {"Isolation Forest"} and (df.fpr_target == 0.05).all()
    sources = _captures()
    for ds, units, group_by in (("flows", lambda ids: ids, "none"), ("caps", lambda ids: sources[ids], "source_file")):
        for category in ("overall", "dos", "scan", "rare"):
            row = df[(df.dataset == ds) & (df.category == category)].iloc[0]
            for k, v in _expected(r, ds, category, units).items():
                assert row[k] == pytest.approx(v, abs=1e-12), (ds, category, k)
            assert row.group_by == group_by
            assert row.auroc_lo < row.auroc < row.auroc_hi
    # resampling captures is another interval than resampling flows (12 benign captures: a wider one)
    wide = df[df.category == "overall"].set_index("dataset")
    assert (wide.auroc_hi - wide.auroc_lo)["caps"] > 1.5 * (wide.auroc_hi - wide.auroc_lo)["flows"]
    within = pd.read_csv(out / "within.csv", comment="#")
    w = within[(within.dataset == "caps") & (within.column == "dos") & (within.method == "Isolation Forest")].iloc[0]
    row = df[(df.dataset == "caps") & (df.category == "dos")].iloc[0]
    assert (w.auroc_lo, w.auroc_hi, w.auprc_mean) == pytest.approx((row.auroc_lo, row.auroc_hi, row.auprc))


def test_a_class_under_the_minimum_is_shown_but_not_in_the_median(hand):
    r, out = hand
    df = pd.read_csv(out / "intervals.csv")
    assert dict(zip(df[df.dataset == "flows"].category, df[df.dataset == "flows"].in_median)) == {
        "overall": True, "dos": True, "scan": True, "rare": False}
    within = pd.read_csv(out / "within.csv", comment="#")
    flows = within[(within.dataset == "flows") & (within.method == "Isolation Forest")].set_index("column")
    assert flows.few_flows["rare"] and not flows.few_flows["dos"] and flows.cell["rare"] != "not run"
    med = []
    for seed in (1, 2):
        t = ScoreTable.load(r / "flows/baselines/iforest" / f"seed{seed}/scores.npz")
        per = _class_aurocs(t, t.scores[:, 0])
        assert set(per) == {"dos", "scan", "rare"}
        med.append(np.median([per["dos"], per["scan"]]))  # rare left out
    assert flows.auroc_mean["per-class median"] == pytest.approx(np.mean(med))
    md = (out / "within.md").read_text()
    assert "| rare (300 / 10) ‡ |" in md and "| dos (300 / 100) |" in md and "| overall (300 / 190) |" in md
    assert "fewer than 30 test flows in a run" in md and "left out of the per-class median" in md


def test_identical_seeds_give_one_seeds_interval_unwidened(hand):
    """Both seeds score the same flows the same way: the same units draw the same counts, so the seed mean's
    replicates are one seed's and its interval is that seed's bootstrap interval, exactly."""
    from nidsflow.evaluate.metrics import bootstrap_auroc

    r, out = hand
    df = pd.read_csv(out / "intervals.csv")
    row = df[(df.dataset == "same") & (df.category == "overall")].iloc[0]
    t = ScoreTable.load(r / "same/baselines/iforest/seed1/scores.npz")
    test = t.split == "test"
    lo, hi = bootstrap_auroc(t.is_attack[test], t.scores[test, 0], groups=t.flow_id[test], n_boot=N_BOOT,
                             level=BOOT["level"], seed=BOOT["seed"])
    assert (row.auroc_lo, row.auroc_hi) == (lo, hi)


def test_within_markdown_bolds_the_best_and_shows_the_operating_point(hand, results):
    _, out = hand
    md = (out / "within.md").read_text()
    assert "### flows: AUPRC (%) and the operating point at the benign-val threshold for 5 % false positives" in md
    assert "Bootstrap units: captures." in md.split("## caps")[1] and "Bootstrap units: flows." in md.split("## flows")[1]
    _, out2 = results  # two methods: JANUS separates better than Isolation Forest on every column
    da = (out2 / "within.md").read_text().split("## da")[1].split("## db")[0]
    janus = next(x for x in da.splitlines() if x.startswith("| JANUS (full, A1) | - |"))
    iforest = next(x for x in da.splitlines() if x.startswith("| Isolation Forest |"))
    b3 = next(x for x in da.splitlines() if x.startswith("| JANUS (B3, A1) |"))  # a variant's row of its own
    assert janus.count("**") == 2 * 3 and b3.count("**") == 2 and "**" not in iforest  # B3 is best on dos
    overview = (out2 / "within.md").read_text().split("## Overview (overall AUROC)")[1]
    assert next(x for x in overview.splitlines() if x.startswith("| JANUS (full, A1) |")).count("**") == 4


def test_capture_intervals_need_the_store(tmp_path):
    f = _save(_hand_table(1), tmp_path / "results/unit/caps/baselines/iforest/seed1/scores.npz")
    with pytest.raises(ValueError, match="caps: split.group_by is source_file.*store/flows.parquet"):
        write_tables([], [], [str(f)], tmp_path / "t", CONFIG, 0.05, BOOT, group_by={"caps": "source_file"})
