"""Evaluation metrics on the test rows of a ScoreTable: AUROC (overall and per attack class), AP,
an alert threshold at a target benign-val false-positive rate, and mean +- std over seeds.

Per-class AUROC compares one attack class against the test benign flows only (the other attack
classes are left out), so each class is judged on its own separability from benign traffic.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

log = logging.getLogger(__name__)

BENIGN_CLASS = "benign"


class MetricError(ValueError):
    """A metric is undefined for the given rows (e.g. only one class present)."""


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """Map +inf (an unscorable flow, treated as most anomalous) above every finite score, -inf below.

    Rank-preserving, so AUROC/AP are those of the ranking; NaN is an error (a score must exist).
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    if np.isnan(s).any():
        raise MetricError(f"{int(np.isnan(s).sum())} scores are NaN; every evaluated flow needs a score")
    fin = np.isfinite(s)
    if not fin.all():
        hi = s[fin].max() if fin.any() else 0.0
        lo = s[fin].min() if fin.any() else 0.0
        span = max(1.0, hi - lo)
        s[s == np.inf] = hi + span
        s[s == -np.inf] = lo - span
    return s


def auroc(is_attack: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(is_attack, dtype=bool)
    if y.all() or not y.any():
        raise MetricError(f"AUROC needs both benign and attack rows (have {int(y.sum())} attack of {len(y)})")
    return float(roc_auc_score(y, finite_scores(scores)))


def average_precision(is_attack: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(is_attack, dtype=bool)
    if y.all() or not y.any():
        raise MetricError(f"AP needs both benign and attack rows (have {int(y.sum())} attack of {len(y)})")
    return float(average_precision_score(y, finite_scores(scores)))


def threshold_at_fpr(benign_val_scores: np.ndarray, fpr_target: float) -> float:
    """Alert threshold t (alert when score > t) with at most ``fpr_target`` of benign val above it.

    With the n val scores sorted in decreasing order s_(0) >= s_(1) >= ..., t = s_(k) for
    k = floor(fpr_target * n): at most k val flows score strictly above t (fewer with ties), and no
    lower order statistic would keep that guarantee.
    """
    if not 0.0 <= fpr_target < 1.0:
        raise MetricError(f"fpr_target must be in [0, 1), got {fpr_target}")
    s = finite_scores(benign_val_scores)
    if len(s) == 0:
        raise MetricError("no benign val scores to set a threshold on")
    k = int(np.floor(fpr_target * len(s) + 1e-9))
    return float(np.sort(s)[::-1][min(k, len(s) - 1)])


def roc_points(is_attack: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(np.asarray(is_attack, dtype=bool), finite_scores(scores))
    return fpr, tpr


def evaluate_scores(split: np.ndarray, attack_class: np.ndarray, is_attack: np.ndarray, scores: np.ndarray,
                    fpr_target: float | None = None) -> dict:
    """Metrics of one scored run: test AUROC/AP overall, per-class AUROC, and the val-threshold operating point.

    Attack labels are read here only, after every model and aggregator is fitted.
    """
    split = np.asarray(split).astype(str)
    test = split == "test"
    y, cls, s = np.asarray(is_attack, bool)[test], np.asarray(attack_class).astype(str)[test], np.asarray(scores)[test]
    out: dict = {"n_test": int(test.sum()), "n_test_attack": int(y.sum()), "auroc": None, "ap": None, "per_class": {}}
    if y.any() and (~y).any():
        out["auroc"] = auroc(y, s)
        out["ap"] = average_precision(y, s)
    else:
        log.warning("test rows have %d attack of %d: AUROC undefined", int(y.sum()), len(y))
    benign = ~y
    for c in sorted(set(cls[y])):
        m = benign | (cls == c)
        out["per_class"][str(c)] = {"auroc": auroc(y[m], s[m]) if benign.any() else None, "n": int((cls == c).sum())}
    if fpr_target is not None and (split == "val").any():
        thr = threshold_at_fpr(np.asarray(scores)[split == "val"], fpr_target)
        fs = finite_scores(s)
        out["threshold"] = {"fpr_target": fpr_target, "value": thr,
                            "test_fpr": float(np.mean(fs[benign] > thr)) if benign.any() else None,
                            "test_tpr": float(np.mean(fs[y] > thr)) if y.any() else None}
    return out


def mean_std(values) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the non-None values."""
    v = np.array([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def format_mean_std(values, scale: float = 100.0, digits: int = 2, signed: bool = False) -> str:
    """'98.26 +- 0.35' (AUROC in percent), '98.26 (1 seed)' for one value, 'not run' for none; ``signed``
    prints the mean's sign (a difference: '+1.20 ± 0.35')."""
    m, s, n = mean_std(values)
    sign = "+" if signed else ""
    if n == 0:
        return "not run"
    if n == 1:
        return f"{m * scale:{sign}.{digits}f} (1 seed)"
    return f"{m * scale:{sign}.{digits}f} ± {s * scale:.{digits}f}"
