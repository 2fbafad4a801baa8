"""Out-of-fold stacking, the meta classifier and PR-curve thresholds (SPEC "HIKARI meta-ensemble").

OOF (Wolpert 1992 stacking): StratifiedKFold(K, shuffle, seed) over the training split; for each fold
every base detector is fitted on the other folds (``BasePipeline.fit``) and scores the held-out fold,
so each training row gets meta features from models that never saw it.

Meta: optional z-scoring z_j = (f_j - mean_j) / std_j with statistics fitted on *training* rows only:
each OOF block by the scores its fold's models give their own training folds, the test split by the
scores the full-training-split models give the training split (``BlockScaler``). The seed took the
statistics over the block being scored (the test split itself), so one test row's input depended on
the other test rows and their class mix; here a row scores the same alone or in a batch. ->
LogisticRegression(class_weight="balanced") -> optional isotonic calibration (CalibratedClassifierCV,
method="isotonic", the meta LR without class weights, as the seed recommends). A seeded
``calibration_holdout`` fraction of the normal training rows is kept out of the meta fit, so the
conformal check of the deployed model calibrates on normals it never saw (Vovk et al. 2005).

Thresholds from the OOF PR curve (Davis & Goadrich 2006): max-F1 (F1 = 2PR/(P+R)); target precision
(the lowest threshold with P >= p*, i.e. the highest recall subject to it); target recall (the
highest threshold with R >= r*); two-stage: an alert threshold at recall >= alert_recall and a
confirm threshold at precision >= confirm_precision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from nidsflow.hikari.models import BasePipeline

log = logging.getLogger(__name__)


@dataclass
class BlockScaler:
    """Column-wise z = (f - mean) / std with mean/std of training scores (a column constant there: std 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, F_train: np.ndarray) -> BlockScaler:
        sd = F_train.std(axis=0)
        return cls(F_train.mean(axis=0), np.where(sd > 1e-12, sd, 1.0))

    def transform(self, F: np.ndarray) -> np.ndarray:
        return (F - self.mean) / self.std


@dataclass
class OOF:
    """Raw OOF meta features [n, 5], each row's fold, each fold's BlockScaler (fitted on the scores its
    models give their own training folds) and both IsolationForest OOF scores."""

    raw: np.ndarray
    fold: np.ndarray
    scalers: list
    iso: dict


def oof_meta_features(X: np.ndarray, y: np.ndarray, cfg: dict, seed: int, threads: int = 1) -> OOF:
    """Out-of-fold meta features of the training rows (StratifiedKFold(n_splits, shuffle, seed))."""
    from sklearn.model_selection import StratifiedKFold

    k = int(cfg["meta"]["n_splits"])
    if min(int(y.sum()), int(len(y) - y.sum())) < k:
        raise ValueError(f"OOF needs at least {k} rows of each class in the training split")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    F = np.zeros((len(y), 5), np.float64)
    fold = np.full(len(y), -1, np.int64)
    iso = {"iso_all": np.zeros(len(y)), "iso_normal": np.zeros(len(y))}
    scalers = []
    for i, (tr, va) in enumerate(skf.split(X, y)):
        log.info("OOF fold %d/%d: fit on %d rows, score %d", i + 1, k, len(tr), len(va))
        pipe = BasePipeline.fit(X[tr], y[tr], cfg, seed + 1 + i, threads)
        F[va], iso_va = pipe.scores(X[va])
        for name, v in iso_va.items():
            iso[name][va] = v
        scalers.append(BlockScaler.fit(pipe.meta_features(X[tr])))
        fold[va] = i
    return OOF(F, fold, scalers, iso)


def meta_inputs(F_raw: np.ndarray, fold: np.ndarray | None, scalers, zscore: bool) -> np.ndarray:
    """What the meta LR sees: the raw features, or z-scored with training statistics: row i by
    ``scalers[fold[i]]`` (OOF blocks), or every row by ``scalers`` itself when ``fold`` is None."""
    if not zscore:
        return F_raw.copy()
    if fold is None:
        return scalers.transform(F_raw)
    out = np.empty_like(F_raw)
    for f in np.unique(fold):
        out[fold == f] = scalers[int(f)].transform(F_raw[fold == f])
    return out


def calibration_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded ``fraction`` of the normal rows (kept out of the meta fit)."""
    normal = np.flatnonzero(y == 0)
    n = int(round(float(fraction) * len(normal)))
    return np.sort(np.random.default_rng(seed).choice(normal, n, replace=False)) if n else np.zeros(0, np.int64)


@dataclass
class MetaModel:
    """The deployed meta classifier: LR (+ isotonic), the test-time BlockScaler and the held-out normals."""

    lr: object
    calibrated: object | None
    zscore: bool
    scaler: BlockScaler | None = None          # statistics of the training split's scores (test-time input)
    holdout: np.ndarray | None = None          # OOF rows (normals) kept out of the fit, for conformal

    @classmethod
    def fit(cls, M: np.ndarray, y: np.ndarray, cfg: dict, seed: int, holdout: np.ndarray | None = None) -> MetaModel:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model import LogisticRegression

        keep = np.ones(len(y), bool)
        if holdout is not None:
            keep[holdout] = False
        M, y = M[keep], y[keep]
        lr = LogisticRegression(class_weight="balanced", C=float(cfg["C"]), max_iter=int(cfg["max_iter"]),
                                random_state=seed).fit(M, y)
        cal = None
        if cfg["isotonic"]:
            base = LogisticRegression(C=float(cfg["C"]), max_iter=int(cfg["max_iter"]), random_state=seed)
            cal = CalibratedClassifierCV(base, method="isotonic", cv=int(cfg["n_splits"])).fit(M, y)
        return cls(lr, cal, bool(cfg["zscore"]), None,
                   None if holdout is None else np.asarray(holdout, np.int64))

    def predict_proba(self, M: np.ndarray) -> np.ndarray:
        """Probabilities of meta inputs M (already scaled)."""
        model = self.calibrated if self.calibrated is not None else self.lr
        return model.predict_proba(M)[:, 1]

    def predict_raw(self, F_raw: np.ndarray) -> np.ndarray:
        """Probabilities of raw meta features of new rows (each row on its own: training statistics)."""
        return self.predict_proba(meta_inputs(F_raw, None, self.scaler, self.zscore))


def fit_meta(oof: OOF, y: np.ndarray, F_train_full: np.ndarray, cfg: dict, seed: int) -> tuple[MetaModel, np.ndarray]:
    """MetaModel on the OOF matrix (holdout normals out) with the test-time scaler of ``F_train_full``
    (the full-training-split models' scores of the training split). Returns it and its OOF inputs."""
    zs = bool(cfg["meta"]["zscore"])
    oof_X = meta_inputs(oof.raw, oof.fold, oof.scalers, zs)
    holdout = calibration_holdout(y, float(cfg["meta"]["calibration_holdout"]), seed)
    meta = MetaModel.fit(oof_X, y, cfg["meta"], seed, holdout)
    meta.scaler = BlockScaler.fit(F_train_full)
    return meta, oof_X


def fit_score_ensemble(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, cfg: dict, seed: int,
                       threads: int = 1) -> np.ndarray:
    """Every supervised step of the branch in memory (OOF refits, meta, the full-training-split base
    detectors) fitted on (X, y); returns the meta probabilities of X_test. The staged rules compute the
    same composition file by file; the end-to-end permutation test calls this with permuted y."""
    oof = oof_meta_features(X, y, cfg, seed, threads)
    full = BasePipeline.fit(X, y, cfg, seed, threads)
    meta, _ = fit_meta(oof, y, full.meta_features(X), cfg, seed)
    return meta.predict_raw(full.meta_features(X_test))


def _pr_curve(y, p):
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y, p)
    return prec[:-1], rec[:-1], thr  # drop the (P=1, R=0) end point, which has no threshold


def _point(kind, thr, prec, rec, i, **extra):
    p, r = float(prec[i]), float(rec[i])
    return {"kind": kind, "threshold": float(thr[i]), "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0, **extra}


def pr_threshold(y: np.ndarray, p: np.ndarray, target_precision: float | None = None,
                 target_recall: float | None = None) -> dict:
    """One operating point of the PR curve of (y, p): max-F1, or a target precision, or a target recall.

    Target precision: among thresholds with precision >= target, the one with the highest recall (the
    lowest such threshold); when none reaches it, the max-precision point, flagged ``reached: False``.
    """
    prec, rec, thr = _pr_curve(y, p)
    if target_precision is not None:
        ok = np.nonzero(prec >= target_precision)[0]
        if len(ok):
            i = ok[np.argmax(rec[ok])]
            return _point("target_precision", thr, prec, rec, i, target=float(target_precision), reached=True)
        return _point("target_precision", thr, prec, rec, int(np.argmax(prec)), target=float(target_precision),
                      reached=False)
    if target_recall is not None:
        ok = np.nonzero(rec >= target_recall)[0]
        i = ok[np.argmax(thr[ok])] if len(ok) else 0
        return _point("target_recall", thr, prec, rec, i, target=float(target_recall), reached=bool(len(ok)))
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
    return _point("max_f1", thr, prec, rec, int(np.argmax(f1)))


def pr_thresholds(y: np.ndarray, p: np.ndarray, cfg: dict) -> dict:
    """Every threshold policy on the OOF PR curve, and the ``selected`` one (cfg["policy"])."""
    out = {
        "max_f1": pr_threshold(y, p),
        "target_precision": pr_threshold(y, p, target_precision=float(cfg["target_precision"])),
        "target_recall": pr_threshold(y, p, target_recall=float(cfg["target_recall"])),
        "two_stage": {
            "alert": pr_threshold(y, p, target_recall=float(cfg["alert_recall"])),
            "confirm": pr_threshold(y, p, target_precision=float(cfg["confirm_precision"])),
        },
    }
    policy = cfg["policy"]
    if policy not in ("max_f1", "target_precision", "target_recall"):
        raise ValueError(f"hikari.thresholds.policy must be max_f1, target_precision or target_recall, not {policy!r}")
    out["policy"] = policy
    out["selected"] = out[policy]["threshold"]
    return out


def two_stage_decision(p: np.ndarray, thresholds: dict) -> np.ndarray:
    """0 = pass, 1 = alert (>= alert threshold), 2 = confirmed (>= confirm threshold)."""
    a = thresholds["two_stage"]["alert"]["threshold"]
    c = thresholds["two_stage"]["confirm"]["threshold"]
    return (p >= a).astype(np.int8) + (p >= max(a, c)).astype(np.int8)
