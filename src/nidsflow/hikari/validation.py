"""Statistical validation of the meta ensemble (SPEC "Validation suite").

Inputs (an artifacts folder): ``meta_prob_test.npy``, ``y_test.npy``, ``oof_X.npy``, ``oof_y.npy``;
optional ``feature_names.json``, ``thresholds.json`` (the operating threshold chosen on the OOF PR
curve; without it the max-F1 threshold of a meta LR refitted on the OOF matrix is used), ``meta.joblib``
(the deployed meta model: perturbation and conformal checks use it; without it, a refitted meta LR,
named so in the summary; it is a pickle, which can run code when loaded, so it is only read when the
caller trusts it: the workflow and ``nidsflow hikari`` that wrote it, or ``nidsflow validate
--trust-pickle``; otherwise it is refused, :class:`UntrustedArtifactError`) and ``permutation_e2e.json`` (the end-to-end permutation test). No number is
tuned on test labels: test labels are only used to *measure*.

Checks:
* separation: max normal / min attack probability, gap = min attack - max normal, attacks <= max normal,
  two-sample Kolmogorov-Smirnov statistic D = sup_t |F_normal(t) - F_attack(t)|;
* operating point on test: threshold, precision, recall, F1, ROC AUC, AP;
* calibration: Brier = mean (p - y)^2; ECE = sum_b n_b/n |acc_b - conf_b| over uniform bins;
* leakage, the seed's test (``permutation_test``): the meta LR retrained on permuted OOF labels,
  cross-validated AUC against the permuted labels. It is ~0.5 by construction whatever happened
  upstream (a leak into the OOF matrix is permuted away with the labels), so it cannot fail;
* leakage, end to end (``permutation_test_end_to_end``, Ojala & Garriga 2010): the training labels
  permuted, every supervised step refitted (AE normals, XGBoost, latent LR, OOF, meta), the untouched
  test split scored against its true labels: AUC ~0.5 unless label information reaches the features;
* ablation: cross-validated AUC/AP of the meta LR without each meta feature, and each feature alone;
* bootstrap (Efron 1979) percentile CIs of precision/recall/F1 at the threshold on test;
* label-noise sensitivity: a fraction of OOF training labels flipped, CV AUC/AP against clean labels;
* perturbation robustness: Gaussian noise eps * std_j on the OOF meta inputs, scored by the deployed
  meta model at the operating threshold: metrics and decision flips;
* conformal normal rejection (split conformal, Vovk et al. 2005): threshold = the ceil((n+1)(1-alpha))/n
  quantile of the deployed model's probabilities of the normal training rows held out of its fit
  (``MetaModel.holdout``); the test normal false-alarm rate (<= alpha in expectation) and attack flag rate.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import joblib
import numpy as np

from nidsflow.evaluate.metrics import auroc, average_precision

log = logging.getLogger(__name__)

DEFAULTS = {"n_permutations": 5, "n_bootstrap": 200, "noise_rates": [0.005, 0.01, 0.02, 0.05], "perturb_eps": 0.01,
            "n_perturb": 5, "conformal_alpha": 0.01, "calibration_bins": 10, "cv_splits": 3}
E2E_FILE = "permutation_e2e.json"


class UntrustedArtifactError(ValueError):
    """An artifacts folder holds a pickle the caller did not say it trusts (unpickling can run code)."""


def load_meta_model(path, trust_pickle: bool = False):
    """The deployed meta model of ``meta.joblib``; only with ``trust_pickle`` (joblib unpickles: a file from
    elsewhere could run code), else :class:`UntrustedArtifactError` naming the file and the ways on."""
    if not trust_pickle:
        raise UntrustedArtifactError(
            f"{path}: refused: a joblib pickle, which can run code when loaded. If you or this workflow produced "
            "it, pass --trust-pickle; to validate without it, move it away (the summary then uses a meta LR "
            "refitted on oof_X.npy, named so)")
    return joblib.load(path)


def load_artifacts(folder, trust_pickle: bool = False) -> dict:
    """The arrays (``np.load`` without pickles) and JSON files of an artifacts folder; ``meta.joblib`` only
    with ``trust_pickle`` (:func:`load_meta_model`)."""
    d = Path(folder)
    need = ["meta_prob_test.npy", "y_test.npy", "oof_X.npy", "oof_y.npy"]
    missing = [n for n in need if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing artifacts {missing} (run the hikari_meta rule first)")
    art = {n[:-4]: np.load(d / n, allow_pickle=False) for n in need}
    n_feat = art["oof_X"].shape[1]
    names_file = d / "feature_names.json"
    art["feature_names"] = json.loads(names_file.read_text()) if names_file.is_file() else \
        [f"feat_{j}" for j in range(n_feat)]
    thr_file = d / "thresholds.json"
    art["thresholds"] = json.loads(thr_file.read_text()) if thr_file.is_file() else None
    art["meta"] = load_meta_model(d / "meta.joblib", trust_pickle) if (d / "meta.joblib").is_file() else None
    art["e2e"] = json.loads((d / E2E_FILE).read_text()) if (d / E2E_FILE).is_file() else None
    if len(art["meta_prob_test"]) != len(art["y_test"]) or len(art["oof_X"]) != len(art["oof_y"]):
        raise ValueError(f"{d}: probability/label lengths differ")
    return art


def _meta_lr(seed):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)


def _cv_prob(X, y_fit, seed, k):
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(_meta_lr(seed), X, y_fit, cv=cv, method="predict_proba")[:, 1]


def _auc_ap(y, s):
    return auroc(y, s), average_precision(y, s)


def _prf(y, pred):
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def separation(y, prob) -> dict:
    from scipy.stats import ks_2samp

    pn, pa = prob[y == 0], prob[y == 1]
    max_n, min_a = float(pn.max()), float(pa.min())
    ks = ks_2samp(pn, pa)
    return {"max_normal_prob": max_n, "min_attack_prob": min_a, "gap_width": min_a - max_n,
            "overlapping_attacks": int(np.sum(pa <= max_n)), "n_attacks": int(len(pa)),
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}


def calibration(y, prob, n_bins) -> dict:
    """Brier score, ECE over uniform bins and the reliability curve."""
    edges = np.linspace(0, 1, int(n_bins) + 1)
    b = np.clip(np.digitize(prob, edges[1:-1]), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    conf = np.bincount(b, weights=prob, minlength=n_bins) / np.maximum(count, 1)
    acc = np.bincount(b, weights=y.astype(float), minlength=n_bins) / np.maximum(count, 1)
    ece = float(np.sum(count / len(y) * np.abs(acc - conf)))
    return {"brier": float(np.mean((prob - y) ** 2)), "ece": ece,
            "curve": {"bin_edges": edges.tolist(), "mean_predicted": conf.tolist(), "fraction_positive": acc.tolist(),
                      "count": count.astype(int).tolist()}}


def oof_permutation_test(X: np.ndarray, yo: np.ndarray, n: int, seed: int, k: int, rng) -> dict:
    """The seed's leakage check: CV AUC of the meta LR on the OOF matrix with real and permuted labels."""
    base_auc = _auc_ap(yo, _cv_prob(X, yo, seed, k))[0]
    perm_aucs = []
    for i in range(int(n)):
        yp = rng.permutation(yo)
        perm_aucs.append(_auc_ap(yp, _cv_prob(X, yp, seed + i, k))[0])
    return {"test": "meta LR refitted on permuted OOF labels, CV AUC against them (the seed's)",
            "base_oof_auc": base_auc, "perm_aucs": perm_aucs, "mean_perm_auc": float(np.mean(perm_aucs)),
            "std_perm_auc": float(np.std(perm_aucs)), "n_permutations": len(perm_aucs)}


def end_to_end_permutation(prep: dict, cfg: dict, seed: int, n: int, threads: int = 1, transform=None) -> dict:
    """Label-permutation test of the whole supervised branch (Ojala & Garriga 2010, test 1).

    For each repeat the training labels are permuted (class counts kept), every supervised step is
    refitted on them (``stacking.fit_score_ensemble``: AE on the "normal" rows, residual model,
    latent LR, XGBoost, IsolationForest, OOF, meta) and the untouched test split is scored against
    its true labels. Without a leak the model has nothing to learn: AUC ~0.5. ``transform(prep) ->
    prep``, applied after the permutation, is a preprocessing step under test (e.g. a planted leak).
    """
    from nidsflow.hikari.stacking import fit_score_ensemble

    rng = np.random.default_rng(seed + 7919)       # its own stream: independent of the other checks
    aucs = []
    for i in range(int(n)):
        p = dict(prep)
        p["y_train"] = rng.permutation(prep["y_train"])
        if transform is not None:
            p = transform(p)
        prob = fit_score_ensemble(p["X_train"], p["y_train"], p["X_test"], cfg, seed, threads)
        aucs.append(_auc_ap(p["y_test"].astype(int), prob)[0])
        log.info("end-to-end permutation %d/%d: test AUC %.4f", i + 1, n, aucs[-1])
    return {"test": "training labels permuted, every supervised step refitted, untouched test split scored",
            "perm_test_aucs": aucs, "mean_perm_test_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "std_perm_test_auc": float(np.std(aucs)) if aucs else float("nan"), "n_permutations": len(aucs)}


def run_validation(artifacts_dir, cfg: dict | None, seed: int, out_dir=None, trust_pickle: bool = False) -> dict:
    """Every check on one artifacts folder; writes the JSON summary and both figures into ``out_dir``.
    ``trust_pickle``: read ``meta.joblib`` (see :func:`load_meta_model`)."""
    from nidsflow.hikari.plots import calibration_plot, probability_distributions_plot
    from nidsflow.hikari.stacking import pr_threshold

    c = {**DEFAULTS, **(cfg or {})}
    k = int(c["cv_splits"])
    art = load_artifacts(artifacts_dir, trust_pickle)
    out = Path(out_dir or artifacts_dir)
    out.mkdir(parents=True, exist_ok=True)
    y, prob = art["y_test"].astype(int), art["meta_prob_test"].astype(float)
    X, yo = art["oof_X"].astype(float), art["oof_y"].astype(int)
    rng = np.random.default_rng(seed)
    summary: dict = {"n_test": int(len(y)), "n_test_attacks": int(y.sum()), "n_oof": int(len(yo))}

    # operating threshold, chosen without test labels
    refit = _meta_lr(seed).fit(X, yo)
    oof_prob = refit.predict_proba(X)[:, 1]
    if art["thresholds"] is not None:
        thr, src = float(art["thresholds"]["selected"]), f"thresholds.json ({art['thresholds']['policy']})"
    else:
        thr, src = pr_threshold(yo, oof_prob)["threshold"], "max-F1 of the meta LR refitted on oof_X"
    summary["separation"] = separation(y, prob)
    pred = (prob >= thr).astype(int)
    p, r, f = _prf(y, pred)
    auc, ap = _auc_ap(y, prob)
    summary["operating_point"] = {"threshold": thr, "threshold_source": src, "precision": p, "recall": r, "f1": f,
                                  "roc_auc": auc, "ap": ap}
    summary["calibration"] = calibration(y, prob, int(c["calibration_bins"]))

    # leakage: the seed's permutation test on the OOF matrix, and the end-to-end one (its own rule)
    summary["permutation_test"] = oof_permutation_test(X, yo, int(c["n_permutations"]), seed, k, rng)
    summary["permutation_test_end_to_end"] = art["e2e"] if art["e2e"] is not None else \
        {"test": f"not run (no {E2E_FILE} in the artifacts folder)"}

    # ablation and single-feature AUC/AP
    base_auc_ap = _auc_ap(yo, _cv_prob(X, yo, seed, k))
    abl = {}
    for j, name in enumerate(art["feature_names"]):
        rest = np.delete(X, j, axis=1)
        a_auc, a_ap = _auc_ap(yo, _cv_prob(rest, yo, seed, k)) if rest.shape[1] else (0.5, float(yo.mean()))
        s_auc, s_ap = _auc_ap(yo, X[:, j])
        abl[name] = {"drop_auc": a_auc, "drop_ap": a_ap, "delta_auc": base_auc_ap[0] - a_auc,
                     "delta_ap": base_auc_ap[1] - a_ap, "single_auc": s_auc, "single_ap": s_ap}
    summary["ablation"] = {"cv_auc": base_auc_ap[0], "cv_ap": base_auc_ap[1], "features": abl}

    # bootstrap CIs at the threshold
    n_boot = int(c["n_bootstrap"])
    stats = np.zeros((n_boot, 3))
    for b in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        stats[b] = _prf(y[idx], pred[idx])
    summary["bootstrap"] = {name: {"lo": float(np.percentile(stats[:, i], 2.5)), "point": [p, r, f][i],
                                   "hi": float(np.percentile(stats[:, i], 97.5))}
                            for i, name in enumerate(("precision", "recall", "f1"))}
    summary["bootstrap"]["n_bootstrap"] = n_boot

    # label-noise sensitivity: train on flipped labels, evaluate against the clean ones
    noise = {}
    for rate in c["noise_rates"]:
        yn = yo.copy()
        flip = rng.choice(len(yo), int(round(float(rate) * len(yo))), replace=False)
        yn[flip] = 1 - yn[flip]
        n_auc, n_ap = _auc_ap(yo, _cv_prob(X, yn, seed, k))
        noise[str(rate)] = {"flipped": int(len(flip)), "auc": n_auc, "ap": n_ap,
                            "delta_auc": base_auc_ap[0] - n_auc, "delta_ap": base_auc_ap[1] - n_ap}
    summary["label_noise"] = noise

    # perturbation robustness and conformal rejection of the deployed meta model (meta.joblib)
    deployed = art["meta"]
    if deployed is not None:
        predict, model_src = deployed.predict_proba, "meta.joblib (deployed)"
    else:
        predict, model_src = (lambda M: refit.predict_proba(M)[:, 1]), "meta LR refitted on oof_X (no meta.joblib)"
    eps = float(c["perturb_eps"])
    clean_pred = (predict(X) >= thr).astype(int)
    reps = []
    for _ in range(int(c["n_perturb"])):
        Xp = X + rng.normal(0.0, 1.0, X.shape) * eps * X.std(axis=0)
        pp = (predict(Xp) >= thr).astype(int)
        pr, rc, f1 = _prf(yo, pp)
        reps.append([float(np.mean(pp == yo)), pr, rc, f1, float(np.mean(pp != clean_pred))])
    reps = np.array(reps)
    summary["perturbation"] = {"model": model_src, "eps_times_std": eps, "repeats": int(c["n_perturb"]),
                               **{f"{n}_mean": float(reps[:, i].mean()) for i, n in
                                  enumerate(("accuracy", "precision", "recall", "f1", "decision_flip_rate"))},
                               **{f"{n}_std": float(reps[:, i].std()) for i, n in
                                  enumerate(("accuracy", "precision", "recall", "f1"))}}

    # split-conformal normal rejection: calibrated on normals the deployed model never saw
    alpha = float(c["conformal_alpha"])
    if deployed is not None and deployed.holdout is not None and len(deployed.holdout):
        cal, cal_src = np.sort(predict(X[deployed.holdout])), "normal training rows held out of the meta fit"
    else:
        cal, cal_src = np.sort(predict(X[yo == 0])), "OOF normals (seen by the meta fit)"
    q_level = min(1.0, np.ceil((len(cal) + 1) * (1 - alpha)) / len(cal))
    q = float(np.quantile(cal, q_level, method="higher"))
    summary["conformal"] = {"model": model_src, "calibration": cal_src, "alpha": alpha, "threshold": q,
                            "calibration_normals": int(len(cal)),
                            "test_normal_rejection_rate": float(np.mean(prob[y == 0] > q)),
                            "test_attack_flag_rate": float(np.mean(prob[y == 1] > q))}

    (out / "validation_summary.json").write_text(json.dumps(summary, indent=1))
    calibration_plot(summary["calibration"]["curve"], summary["calibration"]["brier"], summary["calibration"]["ece"],
                     out / "calibration_curve.png")
    probability_distributions_plot(y, prob, thr, out / "probability_distributions.png")
    log.info("validation: AUC %.4f AP %.4f; permutation AUC %.4f (end to end %s); ECE %.4f", auc, ap,
             summary["permutation_test"]["mean_perm_auc"],
             summary["permutation_test_end_to_end"].get("mean_perm_test_auc", "not run"), summary["calibration"]["ece"])
    return summary


def main(argv=None) -> None:
    from nidsflow.logs import setup_logging

    ap = argparse.ArgumentParser(prog="python -m nidsflow.hikari.validation",
                                 description="Validation suite of the HIKARI meta ensemble on an artifacts folder "
                                             "(meta_prob_test.npy, y_test.npy, oof_X.npy, oof_y.npy).")
    ap.add_argument("artifacts_dir", help="folder holding the artifacts (e.g. results/demo/hikari/demo)")
    ap.add_argument("--out", default=None, help="output folder (default: the artifacts folder)")
    ap.add_argument("--seed", type=int, default=42, help="seed of permutations, bootstrap, noise (default 42)")
    ap.add_argument("--config", default=None, help="YAML whose hikari.validation section overrides the defaults")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="read meta.joblib (a pickle: only for a folder you or your workflow produced); without it "
                         "a folder holding one is refused")
    for key, val in DEFAULTS.items():
        if not isinstance(val, list):
            ap.add_argument(f"--{key.replace('_', '-')}", type=type(val), default=None,
                            help=f"default {val}")
    args = ap.parse_args(argv)
    setup_logging(None)
    cfg = {}
    if args.config:
        from nidsflow.config_schema import ConfigError, load_config

        try:  # checked against the workflow's schema, its defaults filled in
            cfg = dict(load_config(args.config)["hikari"]["validation"])
        except ConfigError as e:
            raise SystemExit(str(e)) from e
    for key in DEFAULTS:
        v = getattr(args, key, None)
        if v is not None:
            cfg[key] = v
    try:
        s = run_validation(args.artifacts_dir, cfg, args.seed, args.out, trust_pickle=args.trust_pickle)
    except (UntrustedArtifactError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"nidsflow validate: {e}") from None
    print(json.dumps({k: s[k] for k in ("separation", "operating_point", "permutation_test")}, indent=1))


if __name__ == "__main__":
    main()
