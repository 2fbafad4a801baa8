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


def _pair_positions(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order of the negatives and, for each positive, how many negatives lie strictly below it and
    how many tie with it (as index bounds into the sorted negatives)."""
    order = np.argsort(neg, kind="stable")
    sneg = neg[order]
    return order, np.searchsorted(sneg, pos, side="left"), np.searchsorted(sneg, pos, side="right")


def _weighted_auroc(w_pos: np.ndarray, w_neg_sorted: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC with multiplicity weights, rows = bootstrap replicates.

    AUROC = sum_p w_p (W_neg(s_n < s_p) + W_neg(s_n = s_p) / 2) / (sum w_p * sum w_n), the U statistic of
    the resampled rows, each row counted as often as it was drawn.
    """
    cum = np.concatenate([np.zeros((w_neg_sorted.shape[0], 1)), np.cumsum(w_neg_sorted, axis=1)], axis=1)
    below, upto = cum[:, lo], cum[:, hi]
    u = (w_pos * (below + 0.5 * (upto - below))).sum(axis=1)
    return u / (w_pos.sum(axis=1) * w_neg_sorted.sum(axis=1))


def bootstrap_auroc(is_attack: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None,
                    n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC (Efron & Tibshirani 1993, ch. 13), stratified by class.

    Benign and attack rows are resampled separately, each with replacement and to its own size, so every
    replicate has both classes. With ``groups`` (e.g. the source capture of each flow) whole groups are
    resampled instead of rows: a group's flows enter together, as often as the group is drawn, which is the
    interval that fits a capture-disjoint split (flows of one capture are not independent). A group that
    holds both classes is drawn in both strata, with the rows of the matching class.

    Exact by construction for a separating detector (every replicate is 1.0); for a random one the interval
    is centred near 0.5 with a width of order 1 / sqrt(n).
    """
    y = np.asarray(is_attack, dtype=bool)
    s = finite_scores(scores)
    if y.all() or not y.any():
        raise MetricError(f"AUROC needs both benign and attack rows (have {int(y.sum())} attack of {len(y)})")
    if not 0.0 < level < 1.0:
        raise MetricError(f"level must be in (0, 1), got {level}")
    pos, neg = s[y], s[~y]
    order, lo, hi = _pair_positions(pos, neg)
    rng = np.random.default_rng(seed)
    if groups is None:
        gp, gn = np.arange(len(pos)), np.arange(len(neg))
    else:
        g = np.asarray(groups).astype(str)
        _, gp = np.unique(g[y], return_inverse=True)
        _, gn = np.unique(g[~y], return_inverse=True)
    gn = gn[order]
    n_gp, n_gn = int(gp.max()) + 1, int(gn.max()) + 1
    # replicates in chunks: a (chunk, n) weight matrix stays under ~64 MB
    chunk = max(1, min(n_boot, 8_000_000 // max(1, len(pos) + len(neg))))
    reps = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        cp = rng.multinomial(n_gp, np.full(n_gp, 1.0 / n_gp), size=b).astype(np.float64)
        cn = rng.multinomial(n_gn, np.full(n_gn, 1.0 / n_gn), size=b).astype(np.float64)
        reps.append(_weighted_auroc(cp[:, gp], cn[:, gn], lo, hi))
    r = np.concatenate(reps)
    a = (1.0 - level) / 2.0
    return float(np.quantile(r, a)), float(np.quantile(r, 1.0 - a))


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
