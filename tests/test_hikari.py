"""HIKARI branch: table loading, preprocessing, thresholds, residual scores, the whole branch on a tiny
HIKARI-shaped table, the leakage guarantee (test labels reach no fit), test rows scored one at a time,
the end-to-end permutation test catching a planted leak the seed's test misses, the validation suite,
and per-rule params (a threshold-policy change reruns only the rules that read it)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from nidsflow.demo.hikari_csv import HIKARI_COLUMNS
from nidsflow.fixtures import generate_hikari_like
from nidsflow.hikari import data as hdata
from nidsflow.hikari.config import STAGE_KEYS, resolve, stage_config
from nidsflow.hikari.models import ResidualModel
from nidsflow.hikari.stacking import BlockScaler, meta_inputs, pr_threshold, pr_thresholds

TINY = {
    "seed": 3, "threads": 1, "test_size": 0.3,
    "ae": {"epochs": 1, "batch_size": 64, "width": 32, "latent_dim": 8, "patience": 1},
    "meta": {"n_splits": 2}, "latent_lr": {"calibration_cv": 2},
    "xgb": {"n_estimators": 15, "max_depth": 3},
    "iforest": {"n_estimators": 20},
    "gate": {"n_clusters": 3, "n_init": 1},
    "validation": {"n_permutations": 3, "n_bootstrap": 30, "n_perturb": 2, "e2e_permutations": 2},
}


@pytest.fixture(scope="module")
def hikari_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("hk") / "ALLFLOWMETER_HIKARI2021.csv"
    df = generate_hikari_like(700, seed=5, attack_overlap=0.2)
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def branch_run(hikari_csv, tmp_path_factory):
    from nidsflow.hikari.pipeline import run_branch

    out = tmp_path_factory.mktemp("run_a")
    result = run_branch({"csv": str(hikari_csv)}, TINY, out, threads=1)
    return out, result


# ------------------------------------------------------------------------------------------ data


def test_hikari_header_label_and_id_columns(hikari_csv):
    assert open(hikari_csv).readline().strip().split(",") == list(HIKARI_COLUMNS)
    t = hdata.load_flow_table({"csv": str(hikari_csv)})
    assert t.label_column == "Label"                       # Label wins over traffic_category
    for dropped in ("uid", "originh", "originp", "responh", "responp", "traffic_category", "Unnamed: 0"):
        assert dropped in t.dropped_columns, dropped
        assert dropped not in t.features.columns
    for kept in ("flow_duration", "idle.min", "flow_iat.avg", "fwd_init_window_size"):
        assert kept in t.features.columns, kept
    df = pd.read_csv(hikari_csv)
    assert t.y.sum() == df["Label"].sum()
    assert set(t.labels) <= set(df["traffic_category"])    # per-class names come from traffic_category


def test_cic_labels_map_benign_to_zero(tmp_path):
    df = pd.DataFrame({"Flow ID": ["a", "b", "c", "d"], "Src IP": ["1.1.1.1"] * 4, "Dst Port": [80, 80, 22, 53],
                       "Timestamp": ["t"] * 4, "Flow Duration": [1.0, 2.0, np.inf, 4.0],
                       "Total TCP Flow Time": [1, 2, 3, 4], " Label": ["BENIGN", "DDoS", "benign", "Portscan"]})
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_csv(tmp_path / "b.csv", index=False)
    t = hdata.load_flow_table({"csv": str(tmp_path)})     # a folder: both files
    assert t.label_column == "Label" and len(t.y) == 8
    assert t.y.tolist() == [0, 1, 0, 1] * 2
    assert list(t.features.columns) == ["Flow Duration"]   # Flow ID, Src IP, Dst Port, time columns dropped
    assert np.isnan(t.features["Flow Duration"].iloc[2])   # +Inf -> NaN (imputed later)


def test_missing_label_and_one_class_tables_raise(tmp_path):
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(hdata.HikariDataError, match="no label column"):
        hdata.load_flow_table({"csv": str(tmp_path / "x.csv")})
    pd.DataFrame({"a": [1, 2], "Label": ["BENIGN", "BENIGN"]}).to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(hdata.HikariDataError, match="both normal and attack"):
        hdata.load_flow_table({"csv": str(tmp_path / "y.csv")})
    with pytest.raises(hdata.HikariDataError, match="not found"):
        hdata.load_flow_table({"csv": str(tmp_path / "nope.csv")})


def test_imputer_uses_training_medians_and_drops_constants():
    train = pd.DataFrame({"a": [1.0, 2.0, np.nan, 10.0], "c": [5.0, 5.0, 5.0, 5.0]})
    imp = hdata.Imputer.fit(train)
    assert imp.names == ["a"]
    test = pd.DataFrame({"a": [np.inf, 100.0], "c": [1.0, 1.0]})
    assert imp.transform(test)[:, 0].tolist() == [2.0, 100.0]   # median of {1, 2, 10}


def test_store_source(tmp_path):
    from nidsflow.store import StoreWriter

    n = 40
    rng = np.random.default_rng(0)
    flows = pd.DataFrame({"flow_id": np.arange(n), "src_ip": "10.0.0.1", "src_port": 1, "dst_ip": "10.0.0.2",
                          "dst_port": 80, "protocol": 6, "first_ts": 0.0, "last_ts": 1.0, "n_packets": 3,
                          "label": ["BENIGN"] * 30 + ["DoS"] * 8 + ["UNMATCHED"] * 2,
                          "attack_class": ["benign"] * 30 + ["dos"] * 8 + ["unmatched"] * 2,
                          "is_attack": [False] * 30 + [True] * 10, "source_file": "x"})
    feats = pd.DataFrame({"duration": rng.random(n), "fwd_pkts": rng.integers(1, 9, n), "dst_port": 80})
    w = StoreWriter(tmp_path / "store", T=4)
    w.finish(flows, feats, has_packets=False)
    t = hdata.load_flow_table({"store": str(tmp_path / "store")})
    assert len(t.y) == 38 and t.y.sum() == 8               # UNMATCHED skipped, not made benign
    assert list(t.features.columns) == ["duration", "fwd_pkts"]


# ------------------------------------------------------------------------------------------ math


def test_pr_threshold_policies():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    p = np.linspace(0.05, 0.95, 10)
    best = pr_threshold(y, p)
    assert best["kind"] == "max_f1" and best["f1"] == pytest.approx(2 * (5 / 6) * 1 / (5 / 6 + 1))
    tp = pr_threshold(y, p, target_precision=1.0)
    assert tp["precision"] == 1.0 and tp["recall"] == pytest.approx(0.8) and tp["threshold"] == pytest.approx(p[6])
    tr = pr_threshold(y, p, target_recall=1.0)
    assert tr["recall"] == 1.0 and tr["threshold"] == pytest.approx(p[4])
    allp = pr_thresholds(y, p, resolve({})["thresholds"])
    assert allp["selected"] == best["threshold"]
    assert allp["two_stage"]["alert"]["threshold"] <= allp["two_stage"]["confirm"]["threshold"]


def test_residual_scores_closed_forms():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((4000, 3))
    cfg = resolve({})["residual"] | {"pca_dim": 2}
    m = ResidualModel.fit(r, cfg, seed=0)
    x = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    s = m.scores(x)
    assert s["mse"].tolist() == pytest.approx([3.0, 0.0])
    assert s["md"][0] == pytest.approx(3.0, rel=0.05)     # covariance ~ I: Mahalanobis ~ Euclidean
    h = m.scores(r)["hybrid"]
    assert abs(h.mean()) < 1e-9                              # no validation rows: z-scored on the fit rows
    assert s["gmm"][0] > s["gmm"][1]                         # far point: lower likelihood
    # with the AE's validation normals the z-statistics are theirs (here: residuals twice as large)
    val = 2.0 * rng.standard_normal((1000, 3))
    mv = ResidualModel.fit(r, cfg, seed=0, residual_val=val)
    assert np.array_equal(mv.precision, m.precision)         # Mahalanobis still from the training residuals
    assert abs(mv.scores(val)["hybrid"].mean()) < 1e-9 and mv.scores(r)["hybrid"].mean() < -0.5


def test_meta_inputs_use_training_statistics():
    F = np.arange(12, dtype=float).reshape(6, 2)
    fold = np.array([0, 0, 0, 1, 1, 1])
    sc = [BlockScaler(np.array([0.0, 1.0]), np.array([2.0, 1.0])), BlockScaler.fit(np.ones((4, 2)))]
    M = meta_inputs(F, fold, sc, True)
    assert np.array_equal(M[:3], (F[:3] - [0, 1]) / [2, 1])  # each fold by its own training statistics
    assert np.array_equal(M[3:], F[3:] - 1.0)                # constant on training: std 1, not 1e-9
    assert np.array_equal(meta_inputs(F, None, sc[0], True), (F - [0, 1]) / [2, 1])   # a batch: not its own stats
    assert np.array_equal(meta_inputs(F, fold, sc, False), F)


def test_stage_config_holds_only_the_stage_keys():
    cfg = stage_config({"thresholds": {"policy": "target_recall"}, "ae": {"epochs": 2}}, "thresholds")
    assert cfg == {"thresholds": resolve({"thresholds": {"policy": "target_recall"}})["thresholds"]}
    ae = stage_config({"ae": {"epochs": 2}}, "ae")
    assert set(ae) == {"seed", "preprocess", "ae"} and set(ae["preprocess"]) == {"clip"} and ae["ae"]["epochs"] == 2
    for stage in STAGE_KEYS:          # idempotent: a stage's cut resolves to itself
        assert stage_config(stage_config(TINY, stage), stage) == stage_config(TINY, stage)
    assert "thresholds" not in stage_config(TINY, "meta") and "thresholds" not in stage_config(TINY, "permutation")
    with pytest.raises(ValueError, match="fit_on"):
        resolve({"iforest": {"fit_on": "attacks"}})


# ------------------------------------------------------------------------------------------ branch


def test_branch_writes_every_artifact(branch_run):
    out, result = branch_run
    for name in ("meta_prob_test.npy", "y_test.npy", "oof_X.npy", "oof_y.npy", "feature_names.json",
                 "thresholds.json", "comparison.md", "comparison.csv", "confusion_matrix.png", "ae.keras",
                 "validation_summary.json", "calibration_curve.png", "probability_distributions.png"):
        assert (out / name).is_file(), name
    prob, y = np.load(out / "meta_prob_test.npy"), np.load(out / "y_test.npy")
    assert prob.shape == y.shape and np.all((prob >= 0) & (prob <= 1))
    assert np.load(out / "oof_X.npy").shape == (len(np.load(out / "oof_y.npy")), 5)
    comp = pd.read_csv(out / "comparison.csv")
    assert {"XGBoost", "IsolationForest (fit on all training rows) (meta input)",
            "IsolationForest (fit on normal training rows)", "AE per-cluster gate (hybrid, q99.5)",
            "AE per-cluster gate (hybrid, q99, relaxed)", "Meta ensemble (selected)"} <= set(comp["detector"])
    gate = comp[comp["detector"].str.startswith("AE per-cluster gate")].set_index("threshold_rule")
    assert gate.loc["per-cluster q99", "recall"] >= gate.loc["per-cluster q99.5", "recall"]   # relaxed flags more
    assert set(comp.columns) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "ap"}
    # the generated attacks are learnable: the ensemble ranks far better than chance
    assert comp.loc[comp["detector"] == "Meta ensemble (selected)", "roc_auc"].iloc[0] > 0.8
    thr = json.loads((out / "thresholds.json").read_text())
    assert {"max_f1", "target_precision", "target_recall", "two_stage", "selected"} <= set(thr)


def test_validation_summary_and_permutation_near_chance(branch_run):
    out, result = branch_run
    s = json.loads((out / "validation_summary.json").read_text())
    for key in ("separation", "operating_point", "calibration", "permutation_test", "permutation_test_end_to_end",
                "ablation", "bootstrap", "label_noise", "perturbation", "conformal"):
        assert key in s, key
    assert abs(s["permutation_test"]["mean_perm_auc"] - 0.5) < 0.15
    e2e = s["permutation_test_end_to_end"]
    assert e2e["n_permutations"] == 2 and abs(e2e["mean_perm_test_auc"] - 0.5) < 0.2
    # conformal and perturbation on the deployed model, calibrated on normals it never saw
    meta = joblib.load(out / "meta.joblib")
    assert s["conformal"]["model"].startswith("meta.joblib") and s["perturbation"]["model"].startswith("meta.joblib")
    assert s["conformal"]["calibration_normals"] == len(meta.holdout) > 0
    assert np.all(np.load(out / "oof_y.npy")[meta.holdout] == 0)
    # the real labels carry signal the permuted ones do not
    assert s["permutation_test"]["base_oof_auc"] > max(s["permutation_test"]["perm_aucs"]) + 0.1
    b = s["bootstrap"]["recall"]
    assert b["lo"] <= b["point"] <= b["hi"]
    assert set(s["ablation"]["features"]) == {"ae_hybrid", "gmm_score", "iso_score", "latent_prob", "xgb_prob"}
    assert 0 <= s["calibration"]["ece"] <= 1


def test_shuffled_test_labels_change_no_fitted_parameter(branch_run, tmp_path):
    """Rerun every fitting stage on a prep.npz whose test labels are permuted: nothing fitted may move."""
    from nidsflow.hikari import pipeline as P

    a, _ = branch_run
    b = tmp_path / "run_b"
    b.mkdir()
    prep = P.load_prep(a / "prep.npz")
    rng = np.random.default_rng(0)
    prep["y_test"] = rng.permutation(prep["y_test"])
    prep["labels_test"] = rng.permutation(prep["labels_test"])
    np.savez_compressed(b / "prep.npz", **prep)
    P.ae_stage(b / "prep.npz", TINY, b / "ae.keras", b / "scalers.joblib", b / "ae_history.json")
    P.residual_stage(b / "prep.npz", b / "ae.keras", b / "scalers.joblib", b / "ae_history.json", TINY,
                     b / "residual.joblib", b / "residual_scores.npz")
    P.base_stage(b / "prep.npz", b / "scalers.joblib", b / "residual_scores.npz", TINY, b / "xgb.json",
                 b / "iforest.joblib", b / "latent_lr.joblib", b / "base_scores.npz")
    P.meta_stage(b / "prep.npz", b / "residual_scores.npz", b / "base_scores.npz", TINY, b)
    P.thresholds_stage(b, TINY, b / "thresholds.json")

    wa, wb = P.load_ae(a / "ae.keras").get_weights(), P.load_ae(b / "ae.keras").get_weights()
    assert len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))
    sa, sb = joblib.load(a / "scalers.joblib"), joblib.load(b / "scalers.joblib")
    for f in ("ae_mean", "ae_std", "sup_mean", "sup_std"):
        assert np.array_equal(getattr(sa, f), getattr(sb, f)), f
    ra, rb = joblib.load(a / "residual.joblib"), joblib.load(b / "residual.joblib")
    assert np.array_equal(ra["residual"].precision, rb["residual"].precision)
    assert ra["residual"].mse_mean == rb["residual"].mse_mean
    assert np.array_equal(ra["gate"].thresholds, rb["gate"].thresholds)
    assert (a / "xgb.json").read_bytes() == (b / "xgb.json").read_bytes()
    la, lb = joblib.load(a / "latent_lr.joblib"), joblib.load(b / "latent_lr.joblib")
    assert np.array_equal(la.calibrated_classifiers_[0].estimator.coef_, lb.calibrated_classifiers_[0].estimator.coef_)
    ma, mb = joblib.load(a / "meta.joblib"), joblib.load(b / "meta.joblib")
    assert np.array_equal(ma.lr.coef_, mb.lr.coef_) and np.array_equal(ma.lr.intercept_, mb.lr.intercept_)
    assert np.array_equal(np.load(a / "oof_X.npy"), np.load(b / "oof_X.npy"))
    assert (a / "thresholds.json").read_text() == (b / "thresholds.json").read_text()
    assert np.array_equal(np.load(a / "meta_prob_test.npy"), np.load(b / "meta_prob_test.npy"))
    # ...while the labels really were shuffled
    assert not np.array_equal(np.load(a / "y_test.npy"), np.load(b / "y_test.npy"))


def test_a_test_row_scores_the_same_alone_as_in_the_test_set(branch_run):
    """The meta inputs of test rows use training statistics: no row's probability depends on the others
    (the seed z-scored the test block by its own mean/std: one row alone became all zeros)."""
    from nidsflow.hikari import pipeline as P

    out, _ = branch_run
    meta = joblib.load(out / "meta.joblib")
    raw = P.test_meta_features(out / "residual_scores.npz", out / "base_scores.npz")
    prob = np.load(out / "meta_prob_test.npy")
    assert np.array_equal(meta.predict_raw(raw), prob)
    y = np.load(out / "y_test.npy")
    for i in (0, int(np.flatnonzero(y == 1)[0]), int(np.flatnonzero(y == 0)[-1]), len(y) - 1):
        assert meta.predict_raw(raw[i:i + 1])[0] == pytest.approx(prob[i], abs=1e-12), i
    # ...and a test set of another class mix (attacks only) leaves every probability as it was
    att = y == 1
    assert np.allclose(meta.predict_raw(raw[att]), prob[att], atol=1e-12)
    # the old per-block z-score fails this: one row alone is mapped to zeros
    old_one = meta.predict_proba(np.zeros((1, raw.shape[1])))[0]
    assert not np.allclose(prob, old_one)


def test_in_memory_ensemble_is_the_staged_branch(branch_run):
    """The end-to-end permutation test refits ``fit_score_ensemble``; on the real labels it gives the staged
    rules' test probabilities, so the test permutes the labels of the very pipeline that is deployed."""
    from nidsflow.hikari import pipeline as P
    from nidsflow.hikari.stacking import fit_score_ensemble

    out, _ = branch_run
    prep = P.load_prep(out / "prep.npz")
    cfg = stage_config(TINY, "permutation")
    prob = fit_score_ensemble(prep["X_train"], prep["y_train"], prep["X_test"], cfg, int(cfg["seed"]))
    assert np.allclose(prob, np.load(out / "meta_prob_test.npy"), atol=1e-6)


def plant_label_leak(prep: dict) -> dict:
    """A leaky preprocessing step: a feature equal to the label, in train (the labels the pipeline is
    given) and in test (the test labels)."""
    p = dict(prep)
    p["X_train"] = np.column_stack([prep["X_train"], prep["y_train"]]).astype(np.float32)
    p["X_test"] = np.column_stack([prep["X_test"], prep["y_test"]]).astype(np.float32)
    return p


def test_end_to_end_permutation_catches_a_planted_leak_the_seeds_test_misses(branch_run):
    from nidsflow.hikari import pipeline as P
    from nidsflow.hikari.stacking import fit_meta, oof_meta_features
    from nidsflow.hikari.models import BasePipeline
    from nidsflow.hikari.validation import end_to_end_permutation, oof_permutation_test

    out, _ = branch_run
    cfg = stage_config(TINY, "permutation")
    seed = int(cfg["seed"])
    leaky = plant_label_leak(P.load_prep(out / "prep.npz"))
    # The seed's test, on the OOF matrix the leaky branch produces: near chance, so "no leakage".
    oof = oof_meta_features(leaky["X_train"], leaky["y_train"], cfg, seed)
    full = BasePipeline.fit(leaky["X_train"], leaky["y_train"], cfg, seed)
    _, oof_X = fit_meta(oof, leaky["y_train"], full.meta_features(leaky["X_train"]), cfg, seed)
    seed_test = oof_permutation_test(oof_X, leaky["y_train"].astype(int), 3, seed, 3, np.random.default_rng(seed))
    assert seed_test["base_oof_auc"] > 0.99                  # the leak makes the OOF matrix perfect...
    assert abs(seed_test["mean_perm_auc"] - 0.5) < 0.15      # ...and the seed's test does not see it
    # The end-to-end test: permuted training labels still reach the test score through the leak.
    caught = end_to_end_permutation(P.load_prep(out / "prep.npz"), cfg, seed, 2, transform=plant_label_leak)
    assert caught["mean_perm_test_auc"] > 0.95, caught
    clean = json.loads((out / "permutation_e2e.json").read_text())
    assert abs(clean["mean_perm_test_auc"] - 0.5) < 0.2, clean     # without the leak: chance


def test_validation_cli_on_an_artifacts_folder(branch_run, tmp_path):
    out, _ = branch_run
    h = subprocess.run([sys.executable, "-m", "nidsflow.hikari.validation", "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "artifacts_dir" in h.stdout
    art = tmp_path / "art"
    art.mkdir()
    for n in ("meta_prob_test.npy", "y_test.npy", "oof_X.npy", "oof_y.npy"):   # the seed's minimal set
        shutil.copy(out / n, art / n)
    proc = subprocess.run([sys.executable, "-m", "nidsflow.hikari.validation", str(art), "--n-bootstrap", "20",
                           "--n-permutations", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((art / "validation_summary.json").read_text())
    assert "max-F1" in s["operating_point"]["threshold_source"]
    assert (art / "calibration_curve.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "nidsflow.hikari.validation", str(tmp_path / "empty")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "missing artifacts" in bad.stderr


# ------------------------------------------------------------------------------------------ real data


def test_real_cicids2017_sample_labels(shared_data):
    folder = shared_data / "cicids2017-improved-sample"
    if not folder.is_dir():
        pytest.skip("cicids2017-improved-sample absent")
    t = hdata.load_flow_table({"csv": str(folder / "B*.csv")})     # BENIGN_5000 + Botnet_736
    assert len(t.y) == 5736 and int(t.y.sum()) == 736
    for dropped in ("Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Timestamp", "id", "Attempted Category"):
        assert dropped in t.dropped_columns, dropped
    assert "Flow Duration" in t.features.columns and "Idle Mean" in t.features.columns


def test_real_hikari_header_is_read(shared_data, tmp_path):
    src = shared_data / "hikari2021-rows-sample" / "ALLFLOWMETER_HIKARI2021_25rows.csv"
    if not src.is_file():
        pytest.skip("hikari2021-rows-sample absent")
    df = pd.read_csv(src)
    assert list(df.columns) == list(pd.read_csv(io.StringIO(",".join(HIKARI_COLUMNS) + "\n")).columns)
    with pytest.raises(hdata.HikariDataError, match="normal 0, attack 24"):   # one class only: a clear error
        hdata.load_flow_table({"csv": str(src)})


def test_workflow_dry_run_of_the_hikari_rules(tmp_path, shared_data):
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, work / name)
    (tmp_path / "shared").symlink_to(shared_data.parent)       # ../shared/data as seen from the copy
    (work / "workflow" / "Snakefile_hikari").write_text(
        'configfile: "config/config.yaml"\n\n\ninclude: "rules/common.smk"\ninclude: "rules/hikari.smk"\n')
    proc = subprocess.run(["snakemake", "-s", "workflow/Snakefile_hikari", "-n", "--cores", "2",
                           "results/hikari_cicids2017/hikari/cicids2017/comparison.md",
                           "results/hikari_cicids2017/hikari/cicids2017/validation_summary.json",
                           "--configfile", "config/hikari_cicids2017.yaml", "--quiet", "rules"],
                          cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rule in ("hikari_preprocess", "hikari_ae", "hikari_residual", "hikari_base", "hikari_meta", "hikari_evaluate",
                 "hikari_validate"):
        assert rule in proc.stdout, rule


def _planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The `Job stats` table of a dry run as {rule: count} (as tests/test_rebuilds.py reads it)."""
    import re

    if "Job stats:" not in dry_run_output:
        return {}
    table = dry_run_output.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for line in table.splitlines()
            if (m := re.match(r"^(\w+)\s+(\d+)$", line.strip())) and m.group(1) != "total"}


@pytest.mark.slow
def test_threshold_policy_change_reruns_only_the_rules_that_read_it(tmp_path):
    """A real Snakemake run of the HIKARI rules on a tiny table, then hikari.thresholds.policy changes: only
    hikari_thresholds (its params) and the two rules reading thresholds.json rerun; the AE, OOF refits and the
    end-to-end permutation test do not (each rule's params hold only the keys it reads)."""
    import yaml

    work = tmp_path / "repo"
    work.mkdir()
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, work / name)
    csv = tmp_path / "tiny_hikari.csv"
    generate_hikari_like(400, seed=2, attack_overlap=0.2).to_csv(csv, index=False)
    cfg = yaml.safe_load((REPO / "config" / "hikari_cicids2017.yaml").read_text())
    cfg["hikari"] = {**resolve(TINY), "datasets": {"tiny": {"csv": str(csv)}}}
    (work / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    (work / "workflow" / "Snakefile_hikari").write_text(
        'configfile: "config/tiny.yaml"\n\n\ninclude: "rules/common.smk"\ninclude: "rules/hikari.smk"\n')
    targets = ["results/hikari_cicids2017/hikari/tiny/comparison.md", "results/hikari_cicids2017/hikari/tiny/validation_summary.json"]

    def smk(*args):
        proc = subprocess.run(["snakemake", "-s", "workflow/Snakefile_hikari", "--cores", "2", *args, *targets],
                              cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    smk()
    assert "Nothing to be done" in smk("-n")
    cfg["hikari"]["thresholds"]["policy"] = "target_recall"
    (work / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    out = smk("-n")
    assert _planned_jobs(out) == {"hikari_thresholds": 1, "hikari_evaluate": 1, "hikari_validate": 1}, out
    assert "Params have changed since last execution" in out
    smk()
    assert json.loads((work / "results/hikari_cicids2017/hikari/tiny/thresholds.json").read_text())["policy"] == "target_recall"
