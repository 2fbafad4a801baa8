"""The HIKARI branch as file-to-file stages (one Snakemake rule each), and ``run_branch`` for all of them.

    preprocess  table -> prep.npz (train/test split, imputed features), imputer.joblib
    ae          prep.npz -> ae.keras, scalers.joblib, ae_history.json           (normal training rows)
    residual    + ae -> residual.joblib (residual model + cluster gate), residual_scores.npz
    base        + residual_scores -> xgb.json, iforest.joblib, latent_lr.joblib, base_scores.npz
    meta        + OOF refits -> meta.joblib, oof_X.npy, oof_y.npy, oof_raw.npy, oof_iforest.npz,
                oof_prob.npy, feature_names.json, meta_prob_test.npy, y_test.npy
    thresholds  oof_prob -> thresholds.json (PR policies; base detectors' OOF max-F1 points)
    evaluate    -> comparison.md, comparison.csv, confusion_matrix.png
    permutation prep.npz -> permutation_e2e.json (every supervised step refitted on permuted labels)
    validate    -> validation_summary.json, calibration_curve.png, probability_distributions.png

Only the ``preprocess`` stage reads labels of test rows (to stratify the split and store them);
every fitted object is fitted on training rows (``X_train``, ``y_train``) alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import numpy as np

from nidsflow.hikari import data as hdata
from nidsflow.hikari.config import resolve, stage_config
from nidsflow.hikari.models import (
    IFOREST_FITS, META_FEATURE_NAMES, ClusterGate, ae_outputs, configure_runtime, fit_autoencoder, fit_residual,
    fit_scalers, fit_supervised, iforest_scores, meta_features_from, supervised_scores,
)
from nidsflow.hikari.stacking import fit_meta, oof_meta_features, pr_threshold, pr_thresholds
from nidsflow.layout import safe_name

log = logging.getLogger(__name__)

STAGE_FILES = {
    "preprocess": ("prep.npz", "imputer.joblib"),
    "ae": ("ae.keras", "scalers.joblib", "ae_history.json"),
    "residual": ("residual.joblib", "residual_scores.npz"),
    "base": ("xgb.json", "iforest.joblib", "latent_lr.joblib", "base_scores.npz"),
    "meta": ("meta.joblib", "oof_X.npy", "oof_y.npy", "oof_raw.npy", "oof_iforest.npz", "oof_prob.npy",
             "feature_names.json", "meta_prob_test.npy", "y_test.npy"),
    "thresholds": ("thresholds.json",),
    "evaluate": ("comparison.md", "comparison.csv", "confusion_matrix.png"),
    "permutation": ("permutation_e2e.json",),
    "validate": ("validation_summary.json", "calibration_curve.png", "probability_distributions.png"),
}


def _mkparent(*paths):
    for p in paths:
        Path(p).parent.mkdir(parents=True, exist_ok=True)


def load_prep(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ------------------------------------------------------------------------------------------ stages


def preprocess_stage(source: dict, cfg: dict, out_prep, out_imputer) -> dict:
    """Load, label, select features, stratified split (test_size, seed), impute (training medians)."""
    cfg = stage_config(cfg, "preprocess")
    from sklearn.model_selection import train_test_split

    pp = cfg["preprocess"]
    table = hdata.load_flow_table(source, tuple(pp["id_tokens"]), tuple(pp["id_names"]), tuple(pp["drop_columns"]))
    idx = np.arange(len(table.y))
    max_rows = cfg.get("max_rows")
    if max_rows and len(idx) > int(max_rows):
        idx, _ = train_test_split(idx, train_size=int(max_rows), stratify=table.y, random_state=int(cfg["seed"]))
        idx = np.sort(idx)
        log.info("hikari.max_rows: stratified subsample of %d of %d rows", len(idx), len(table.y))
    tr, te = train_test_split(idx, test_size=float(cfg["test_size"]), stratify=table.y[idx],
                              random_state=int(cfg["seed"]))
    tr, te = np.sort(tr), np.sort(te)
    imputer = hdata.Imputer.fit(table.features.iloc[tr])
    prep = {
        "X_train": imputer.transform(table.features.iloc[tr]), "y_train": table.y[tr],
        "X_test": imputer.transform(table.features.iloc[te]), "y_test": table.y[te],
        "labels_train": table.labels[tr].astype(str), "labels_test": table.labels[te].astype(str),
        "idx_train": tr, "idx_test": te, "feature_names": np.array(imputer.names, dtype=str),
    }
    log.info("split: train %d (%d attack), test %d (%d attack), %d features", len(tr), int(prep["y_train"].sum()),
             len(te), int(prep["y_test"].sum()), len(imputer.names))
    _mkparent(out_prep, out_imputer)
    np.savez_compressed(out_prep, **prep)
    joblib.dump({"imputer": imputer, "label_column": table.label_column, "dropped": table.dropped_columns,
                 "source": table.source}, out_imputer)
    return prep


def ae_stage(prep_path, cfg: dict, out_model, out_scalers, out_history, threads: int = 1):
    """Scalers and the AE on the normal training rows; ae_history.json also lists the AE's validation
    rows (``val_rows``: indices into the training split)."""
    cfg = stage_config(cfg, "ae")
    configure_runtime(int(cfg["seed"]), threads)
    p = load_prep(prep_path)
    X, y = p["X_train"], p["y_train"]
    scalers = fit_scalers(X, y, cfg)
    model, history, val_rows = fit_autoencoder(scalers.ae(X[y == 0]), cfg["ae"], int(cfg["seed"]))
    history["val_rows"] = np.flatnonzero(y == 0)[val_rows].tolist()
    _mkparent(out_model, out_scalers, out_history)
    model.save(out_model)
    joblib.dump(scalers, out_scalers)
    Path(out_history).write_text(json.dumps(history, indent=1))
    return model, scalers


def load_ae(path):
    import keras

    return keras.models.load_model(path, compile=False)


def residual_stage(prep_path, model_path, scalers_path, history_path, cfg: dict, out_residual, out_scores,
                   threads: int = 1):
    """Residual model (hybrid z-statistics on the AE's validation normals) and cluster gate on normal
    training rows; scores of train and test rows (the gate at its quantile and at the relaxed one)."""
    cfg = stage_config(cfg, "residual")
    configure_runtime(int(cfg["seed"]), threads)
    p = load_prep(prep_path)
    ae, scalers = load_ae(model_path), joblib.load(scalers_path)
    X, y, seed = p["X_train"], p["y_train"], int(cfg["seed"])
    val_train_rows = np.asarray(json.loads(Path(history_path).read_text()).get("val_rows", []), np.int64)
    if np.any(y[val_train_rows] != 0):
        raise ValueError(f"{history_path}: val_rows are not all normal training rows of {prep_path}")
    val_rows = np.searchsorted(np.flatnonzero(y == 0), val_train_rows)     # -> indices into the normals
    residual, tr = fit_residual(ae, scalers, X, y, val_rows, cfg, seed)
    gname = cfg["gate"]["score"]
    gate = ClusterGate.fit(tr["latent"][y == 0], tr[gname][y == 0], cfg["gate"], seed)
    te = ae_outputs(ae, scalers, residual, p["X_test"])
    scores = {"gate_quantile": np.float64(gate.quantile), "gate_relaxed_quantile": np.float64(gate.relaxed_quantile),
              "gate_score": np.array(gname)}
    for split, out in (("train", tr), ("test", te)):
        for k in ("mse", "md", "hybrid", "gmm", "latent"):
            scores[f"{k}_{split}"] = out[k]
        for tag, relaxed in (("gate", False), ("gate_relaxed", True)):
            scores[f"{tag}_ratio_{split}"] = gate.ratio(out["latent"], out[gname], relaxed)
            scores[f"{tag}_flag_{split}"] = gate.flag(out["latent"], out[gname], relaxed)
    _mkparent(out_residual, out_scores)
    joblib.dump({"residual": residual, "gate": gate}, out_residual)
    np.savez_compressed(out_scores, **scores)
    return residual, gate, scores


def base_stage(prep_path, scalers_path, residual_scores_path, cfg: dict, out_xgb, out_iforest, out_latent_lr,
               out_scores, threads: int = 1):
    """Latent LR, XGBoost and both IsolationForests on the whole training split; their train/test scores
    (``iso_*`` is the ``iforest.fit_on`` one, ``iso_all_*`` / ``iso_normal_*`` both)."""
    cfg = stage_config(cfg, "base")
    configure_runtime(int(cfg["seed"]), threads)
    p = load_prep(prep_path)
    scalers = joblib.load(scalers_path)
    with np.load(residual_scores_path) as z:
        lat_tr, lat_te = z["latent_train"], z["latent_test"]
    latent_lr, xgb, iforests = fit_supervised(scalers, lat_tr, p["X_train"], p["y_train"], cfg,
                                              int(cfg["seed"]), threads)
    scores = {"iso_fit_on": np.array(iforests["fit_on"])}
    for split, lat, X in (("train", lat_tr, p["X_train"]), ("test", lat_te, p["X_test"])):
        _, lp, xp = supervised_scores(latent_lr, xgb, None, scalers, lat, X)
        iso = iforest_scores(iforests, scalers.sup(X))
        scores.update({f"iso_{split}": iso[f"iso_{iforests['fit_on']}"], f"latent_prob_{split}": lp,
                       f"xgb_prob_{split}": xp, **{f"{k}_{split}": v for k, v in iso.items()}})
    _mkparent(out_xgb, out_iforest, out_latent_lr, out_scores)
    xgb.save_model(out_xgb)
    joblib.dump(iforests, out_iforest)
    joblib.dump(latent_lr, out_latent_lr)
    np.savez_compressed(out_scores, **scores)
    return latent_lr, xgb, iforests


def split_meta_features(residual_scores_path, base_scores_path, split: str = "test") -> np.ndarray:
    """Raw meta features of the full-training-split models on ``split`` (train | test)."""
    with np.load(residual_scores_path) as r, np.load(base_scores_path) as b:
        return meta_features_from({"hybrid": r[f"hybrid_{split}"], "gmm": r[f"gmm_{split}"]}, b[f"iso_{split}"],
                                  b[f"latent_prob_{split}"], b[f"xgb_prob_{split}"])


def test_meta_features(residual_scores_path, base_scores_path) -> np.ndarray:
    return split_meta_features(residual_scores_path, base_scores_path, "test")


def meta_stage(prep_path, residual_scores_path, base_scores_path, cfg: dict, out_dir, threads: int = 1) -> dict:
    """OOF meta features (K refits), meta LR (+ isotonic; holdout normals out), test meta probabilities
    (inputs scaled with the training split's statistics)."""
    cfg = stage_config(cfg, "meta")
    configure_runtime(int(cfg["seed"]), threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = load_prep(prep_path)
    X, y, seed = p["X_train"], p["y_train"], int(cfg["seed"])
    oof = oof_meta_features(X, y, cfg, seed, threads)
    meta, oof_X = fit_meta(oof, y, split_meta_features(residual_scores_path, base_scores_path, "train"), cfg, seed)
    oof_prob = meta.predict_proba(oof_X)
    meta_prob_test = meta.predict_raw(test_meta_features(residual_scores_path, base_scores_path))
    joblib.dump(meta, out_dir / "meta.joblib")
    np.save(out_dir / "oof_X.npy", oof_X)
    np.save(out_dir / "oof_y.npy", y.astype(np.int8))
    np.save(out_dir / "oof_raw.npy", oof.raw)
    np.savez_compressed(out_dir / "oof_iforest.npz", **oof.iso)
    np.save(out_dir / "oof_prob.npy", oof_prob)
    np.save(out_dir / "meta_prob_test.npy", meta_prob_test)
    np.save(out_dir / "y_test.npy", p["y_test"].astype(np.int8))
    (out_dir / "feature_names.json").write_text(json.dumps(list(META_FEATURE_NAMES)))
    log.info("meta: LR coef %s intercept %s; %d normal rows held out for conformal calibration",
             np.round(meta.lr.coef_, 4).tolist(), np.round(meta.lr.intercept_, 4).tolist(), len(meta.holdout))
    return {"meta": meta, "meta_prob_test": meta_prob_test}


def thresholds_stage(artifacts_dir, cfg: dict, out_thresholds) -> dict:
    """Every PR-threshold policy on the OOF meta probabilities, the ``selected`` one, and each base
    detector's own OOF max-F1 point (both IsolationForests included), for the comparison table."""
    cfg = stage_config(cfg, "thresholds")
    a = Path(artifacts_dir)
    y, oof_prob, oof_raw = np.load(a / "oof_y.npy"), np.load(a / "oof_prob.npy"), np.load(a / "oof_raw.npy")
    thresholds = pr_thresholds(y, oof_prob, cfg["thresholds"])
    thresholds["base_max_f1"] = {n: pr_threshold(y, oof_raw[:, j]) for j, n in enumerate(META_FEATURE_NAMES)}
    with np.load(a / "oof_iforest.npz") as z:
        thresholds["base_max_f1"].update({k: pr_threshold(y, z[k]) for k in z.files})
    _mkparent(out_thresholds)
    Path(out_thresholds).write_text(json.dumps(thresholds, indent=1))
    log.info("selected threshold (%s) %.6g", thresholds["policy"], thresholds["selected"])
    return thresholds


def permutation_stage(prep_path, cfg: dict, out_json, threads: int = 1) -> dict:
    """The end-to-end label-permutation leakage test (``validation.end_to_end_permutation``)."""
    from nidsflow.hikari.validation import end_to_end_permutation

    cfg = stage_config(cfg, "permutation")
    configure_runtime(int(cfg["seed"]), threads)
    result = end_to_end_permutation(load_prep(prep_path), cfg, int(cfg["seed"]),
                                    int(cfg["validation"]["e2e_permutations"]), threads)
    _mkparent(out_json)
    Path(out_json).write_text(json.dumps(result, indent=1))
    return result


def binary_metrics(y: np.ndarray, pred: np.ndarray, score: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    from nidsflow.evaluate.metrics import auroc, average_precision

    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": auroc(y, score) if both else float("nan"),
        "ap": average_precision(y, score) if both else float("nan"),
    }


DETECTOR_LABELS = {"ae_hybrid": "AE hybrid (0.6 z(MSE) + 0.4 z(MD))", "gmm_score": "GMM(3) on PCA of residuals",
                   "iso_score": "IsolationForest", "latent_prob": "Latent LR (calibrated)",
                   "xgb_prob": "XGBoost"}
IFOREST_LABELS = {"all": "IsolationForest (fit on all training rows)",
                  "normal": "IsolationForest (fit on normal training rows)"}


def evaluate_stage(artifacts_dir, residual_scores_path, base_scores_path, out_md, out_csv, out_png):
    """Comparison table (each base detector at its OOF max-F1 threshold, both IsolationForests, the AE
    cluster gate at its quantile and at the relaxed one, the meta ensemble at the selected threshold)
    and the meta ensemble's confusion matrix."""
    import pandas as pd

    from nidsflow.hikari.plots import confusion_matrix_plot

    a = Path(artifacts_dir)
    y = np.load(a / "y_test.npy")
    prob = np.load(a / "meta_prob_test.npy")
    thr = json.loads((a / "thresholds.json").read_text())
    test_raw = test_meta_features(residual_scores_path, base_scores_path)
    with np.load(residual_scores_path) as r, np.load(base_scores_path) as b:
        gate = {tag: (r[f"{tag}_ratio_test"], r[f"{tag}_flag_test"]) for tag in ("gate", "gate_relaxed")}
        gq, gqr, gscore = float(r["gate_quantile"]), float(r["gate_relaxed_quantile"]), str(r["gate_score"])
        iso = {k: b[f"iso_{k}_test"] for k in IFOREST_FITS}
        fit_on = str(b["iso_fit_on"])
    rows = []
    for j, name in enumerate(META_FEATURE_NAMES):
        if name == "iso_score":      # both forests, the meta's input marked
            for k in IFOREST_FITS:
                t = thr["base_max_f1"][f"iso_{k}"]["threshold"]
                label = IFOREST_LABELS[k] + (" (meta input)" if k == fit_on else "")
                rows.append({"detector": label, "threshold": t, "threshold_rule": "OOF max-F1",
                             **binary_metrics(y, (iso[k] >= t).astype(int), iso[k])})
            continue
        t = thr["base_max_f1"][name]["threshold"]
        rows.append({"detector": DETECTOR_LABELS[name], "threshold": t, "threshold_rule": "OOF max-F1",
                     **binary_metrics(y, (test_raw[:, j] >= t).astype(int), test_raw[:, j])})
    for tag, q, extra in (("gate", gq, ""), ("gate_relaxed", gqr, ", relaxed")):
        ratio, flag = gate[tag]
        rows.append({"detector": f"AE per-cluster gate ({gscore}, q{q:g}{extra})", "threshold": float("nan"),
                     "threshold_rule": f"per-cluster q{q:g}", **binary_metrics(y, flag, ratio)})
    for policy in ("max_f1", "target_precision", "target_recall"):
        t = thr[policy]["threshold"]
        sel = " (selected)" if policy == thr["policy"] else ""
        rows.append({"detector": f"Meta ensemble{sel}", "threshold": t, "threshold_rule": f"OOF {policy}",
                     **binary_metrics(y, (prob >= t).astype(int), prob)})
    df = pd.DataFrame(rows)
    _mkparent(out_md, out_csv, out_png)
    df.to_csv(out_csv, index=False)
    Path(out_md).write_text(df.to_markdown(index=False, floatfmt=".4f") + "\n")
    confusion_matrix_plot(y, (prob >= thr["selected"]).astype(int), out_png,
                          title=f"Meta ensemble, test split (threshold {thr['selected']:.4g}, {thr['policy']})")
    return df


# ------------------------------------------------------------------------------------------ everything


def run_branch(source: dict, cfg: dict, out_dir, threads: int = 1, validate: bool = True) -> dict:
    """Every stage in order into ``out_dir`` (the Snakemake rules call the same functions one by one)."""
    cfg = resolve(cfg)
    o = Path(out_dir)
    preprocess_stage(source, cfg, o / "prep.npz", o / "imputer.joblib")
    ae_stage(o / "prep.npz", cfg, o / "ae.keras", o / "scalers.joblib", o / "ae_history.json", threads)
    residual_stage(o / "prep.npz", o / "ae.keras", o / "scalers.joblib", o / "ae_history.json", cfg,
                   o / "residual.joblib", o / "residual_scores.npz", threads)
    base_stage(o / "prep.npz", o / "scalers.joblib", o / "residual_scores.npz", cfg, o / "xgb.json",
               o / "iforest.joblib", o / "latent_lr.joblib", o / "base_scores.npz", threads)
    meta_stage(o / "prep.npz", o / "residual_scores.npz", o / "base_scores.npz", cfg, o, threads)
    thresholds_stage(o, cfg, o / "thresholds.json")
    df = evaluate_stage(o, o / "residual_scores.npz", o / "base_scores.npz", o / "comparison.md",
                        o / "comparison.csv", o / "confusion_matrix.png")
    out = {"comparison": df}
    if validate:
        from nidsflow.hikari.validation import run_validation

        permutation_stage(o / "prep.npz", cfg, o / "permutation_e2e.json", threads)
        out["validation"] = run_validation(o, stage_config(cfg, "validate")["validation"], int(cfg["seed"]), o,
                                           trust_pickle=True)  # meta.joblib: written just above
    return out


def main(argv=None) -> None:
    """``python -m nidsflow.hikari.pipeline CONFIG NAME``: the branch for one configured table, no Snakemake."""
    import argparse

    from nidsflow.config_schema import ConfigError, load_config
    from nidsflow.logs import setup_logging

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("config", help="a config YAML with a hikari section")
    ap.add_argument("name", help="a key of hikari.datasets")
    ap.add_argument("--out", default=None, help="output folder (default results/STUDY/hikari/NAME)")
    ap.add_argument("--threads", type=int, default=None, help="threads (default hikari.threads)")
    args = ap.parse_args(argv)
    setup_logging(None)
    try:
        full = load_config(args.config)  # checked against the workflow's schema, its defaults filled in
    except ConfigError as e:
        raise SystemExit(str(e)) from e
    cfg = full["hikari"]
    if args.name not in cfg["datasets"]:
        raise SystemExit(f"{args.config}: hikari.datasets has no '{args.name}' (has {list(cfg['datasets'])})")
    try:
        safe_name(args.name, "hikari.datasets")
    except ValueError as e:
        raise SystemExit(f"{args.config}: {e}") from None
    run_branch(cfg["datasets"][args.name], cfg, args.out or f"results/{full.get('study', 'demo')}/hikari/{args.name}",
               args.threads or int(cfg["threads"]))


if __name__ == "__main__":
    main()
