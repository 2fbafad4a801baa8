"""Out-of-fold stacking, the meta classifier and PR-curve thresholds (SPEC "HIKARI meta-ensemble").

OOF (Wolpert 1992 stacking): StratifiedKFold(K, shuffle, seed) over the training split; for each fold
every base detector is fitted on the other folds (``BasePipeline.fit``) and scores the held-out fold,
so each training row gets meta features from models that never saw it.

Meta: optional per-block z-scoring z_j = (f_j - mean_j) / (std_j + 1e-9), the statistics taken over
the block being scored (each OOF fold, then the test split; no labels involved) ->
LogisticRegression(class_weight="balanced") -> optional isotonic calibration (CalibratedClassifierCV,
method="isotonic", the meta LR without class weights, as the seed recommends).

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


def zscore_block(F: np.ndarray) -> np.ndarray:
    """Column-wise z-score of one block of meta features (the seed's per-fold normalisation)."""
    return (F - F.mean(axis=0)) / (F.std(axis=0) + 1e-9)


def oof_meta_features(X: np.ndarray, y: np.ndarray, cfg: dict, seed: int, threads: int = 1
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Raw OOF meta features [n, 5] of the training rows and each row's fold index."""
    from sklearn.model_selection import StratifiedKFold

    k = int(cfg["meta"]["n_splits"])
    if min(int(y.sum()), int(len(y) - y.sum())) < k:
        raise ValueError(f"OOF needs at least {k} rows of each class in the training split")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    F = np.zeros((len(y), 5), np.float64)
    fold = np.full(len(y), -1, np.int64)
    for i, (tr, va) in enumerate(skf.split(X, y)):
        log.info("OOF fold %d/%d: fit on %d rows, score %d", i + 1, k, len(tr), len(va))
        pipe = BasePipeline.fit(X[tr], y[tr], cfg, seed + 1 + i, threads)
        F[va] = pipe.meta_features(X[va])
        fold[va] = i
    return F, fold


def meta_inputs(F_raw: np.ndarray, fold: np.ndarray | None, zscore: bool) -> np.ndarray:
    """What the meta LR sees: the raw features, or each block (fold, or the whole batch) z-scored."""
    if not zscore:
        return F_raw.copy()
    if fold is None:
        return zscore_block(F_raw)
    out = np.empty_like(F_raw)
    for f in np.unique(fold):
        out[fold == f] = zscore_block(F_raw[fold == f])
    return out


@dataclass
class MetaModel:
    lr: object
    calibrated: object | None
    zscore: bool

    @classmethod
    def fit(cls, M: np.ndarray, y: np.ndarray, cfg: dict, seed: int) -> MetaModel:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(class_weight="balanced", C=float(cfg["C"]), max_iter=int(cfg["max_iter"]),
                                random_state=seed).fit(M, y)
        cal = None
        if cfg["isotonic"]:
            base = LogisticRegression(C=float(cfg["C"]), max_iter=int(cfg["max_iter"]), random_state=seed)
            cal = CalibratedClassifierCV(base, method="isotonic", cv=int(cfg["n_splits"])).fit(M, y)
        return cls(lr, cal, bool(cfg["zscore"]))

    def predict_proba(self, M: np.ndarray) -> np.ndarray:
        model = self.calibrated if self.calibrated is not None else self.lr
        return model.predict_proba(M)[:, 1]


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
