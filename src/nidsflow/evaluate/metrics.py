"""Evaluation metrics on the test rows of a ScoreTable: AUROC (overall and per attack class) with its bootstrap
replicates, AP, an alert threshold at a target benign-val false-positive rate, and mean +- std over seeds.

Per-class AUROC compares one attack class against the test benign flows only (the other attack
classes are left out), so each class is judged on its own separability from benign traffic.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

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
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count one half): the mean rank of the
    attack rows, U = R_attack - n1 (n1 + 1) / 2, over n1 n0 (what sklearn's roc_auc_score gives, without its
    milliseconds of input validation per call: the tables evaluate thousands of columns)."""
    y = np.asarray(is_attack, dtype=bool)
    if y.all() or not y.any():
        raise MetricError(f"AUROC needs both benign and attack rows (have {int(y.sum())} attack of {len(y)})")
    n1 = int(y.sum())
    r = rankdata(finite_scores(scores), method="average")
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * (len(y) - n1)))


def average_precision(is_attack: np.ndarray, scores: np.ndarray) -> float:
    """Average precision, AP = sum_k (R_k - R_(k-1)) P_k over the distinct score thresholds in decreasing order
    (sklearn's average_precision_score: no interpolation, tied scores one threshold)."""
    y = np.asarray(is_attack, dtype=bool)
    if y.all() or not y.any():
        raise MetricError(f"AP needs both benign and attack rows (have {int(y.sum())} attack of {len(y)})")
    s = finite_scores(scores)
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), len(ss) - 1]  # last row of each threshold's tie group
    tps = np.cumsum(yy)[last].astype(np.float64)
    precision, recall = tps / (last + 1), tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


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


def _neg_cumsum(w_neg_sorted: np.ndarray, dtype=None) -> np.ndarray:
    """Cumulative negative weight below each sorted position, rows = replicates, a leading 0 column."""
    w = np.asarray(w_neg_sorted)
    dtype = dtype or (np.float64 if w.dtype.kind == "f" else np.int64)
    cum = np.zeros((w.shape[0], w.shape[1] + 1), dtype=dtype)
    np.cumsum(w, axis=1, out=cum[:, 1:])
    return cum


def _weighted_auroc(w_pos: np.ndarray, cum_neg: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC with multiplicity weights, rows = bootstrap replicates.

    AUROC = sum_p w_p (W_neg(s_n < s_p) + W_neg(s_n = s_p) / 2) / (sum w_p * sum w_n), the U statistic of
    the resampled rows, each row counted as often as it was drawn; ``cum_neg`` is :func:`_neg_cumsum` of the
    negatives' weights in score order (one O(n) pass per replicate, shared by every set of positives).
    With integer weights the sums are exact.
    """
    g = cum_neg[:, lo]
    g += cum_neg[:, hi]
    g *= w_pos  # in place: the (replicates, positives) products are the costly part
    u2 = g.sum(axis=1, dtype=np.float64 if g.dtype.kind == "f" else np.int64)  # 2 U
    return 0.5 * u2 / (w_pos.sum(axis=1, dtype=u2.dtype) * cum_neg[:, -1])


class ResamplingDraws:
    """Bootstrap draws of a set of units (flows or captures): per replicate, how often each unit is drawn.

    A stratum of n units is resampled with replacement to its own size, n draws (multinomial counts). The
    random stream is seeded by ``seed`` and by the units themselves (sha256 of their sorted labels): the same
    units get the same draws wherever they occur. Two runs that test on the very same flows (the attack flows,
    which every seed's split puts in test) therefore see each flow drawn equally often, and the mean over
    seeds is not credited with an independence that it does not have; runs on different test sets are
    resampled independently. Draws are cached (most recently used first, up to ``max_bytes``).
    """

    _CHUNK = 256  # replicates drawn per call, fixed so the stream does not depend on memory settings

    def __init__(self, n_boot: int = 1000, seed: int = 0, max_bytes: int = 512 * 2**20):
        if n_boot < 1:
            raise MetricError(f"n_boot must be at least 1, got {n_boot}")
        self.n_boot, self.seed, self.max_bytes = int(n_boot), int(seed), int(max_bytes)
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def counts(self, units: np.ndarray) -> np.ndarray:
        """(n_boot, len(units)) draw counts of the sorted, distinct unit labels ``units`` (str)."""
        units = np.asarray(units).astype(str)
        key = hashlib.sha256("\0".join(units.tolist()).encode()).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        n = len(units)
        rng = np.random.default_rng([self.seed, *np.frombuffer(key[:16], dtype=np.uint32).tolist()])
        # a unit is drawn at most n times: uint8 holds every count when n < 256; beyond, uint16 fails only
        # for a count above 65 535 of n draws at 1/n each, a probability far below 1e-100000
        out = np.empty((self.n_boot, n), dtype=np.uint8 if n < 256 else np.uint16)
        p = np.full(n, 1.0 / n)
        for start in range(0, self.n_boot, self._CHUNK):
            b = min(self._CHUNK, self.n_boot - start)
            out[start:start + b] = rng.multinomial(n, p, size=b)
        self._cache[key] = out
        while sum(v.nbytes for v in self._cache.values()) > self.max_bytes and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return out


def auroc_replicates(is_attack: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None,
                     attack_class: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                     draws: ResamplingDraws | None = None) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the AUROC, stratified by class: ``{"overall": r}`` and, with ``attack_class``,
    one array per attack class (that class against the benign rows), each of ``n_boot`` values.

    Benign and attack rows are resampled separately, each with replacement and to its own size, so every
    replicate has both classes. ``groups`` names each row's resampling unit (e.g. its source capture): whole
    units are resampled, a unit's rows entering together as often as it is drawn, which is the interval that
    fits a capture-disjoint split (flows of one capture are not independent); without it each row is its own
    unit. A unit that holds both classes is drawn in both strata, with the rows of the matching class. The
    draws come from ``draws`` (:class:`ResamplingDraws`; one is made from ``n_boot`` and ``seed`` when none is
    given). The benign weights are summed once per replicate and shared by every class: O(n) per replicate.
    """
    y = np.asarray(is_attack, dtype=bool)
    s = finite_scores(scores)
    if y.all() or not y.any():
        raise MetricError(f"AUROC needs both benign and attack rows (have {int(y.sum())} attack of {len(y)})")
    draws = ResamplingDraws(n_boot, seed) if draws is None else draws
    g = np.arange(len(y)).astype(str) if groups is None else np.asarray(groups).astype(str)
    if len(g) != len(y):
        raise MetricError(f"groups has {len(g)} rows, the scores {len(y)}")
    sets = {"overall": y}
    if attack_class is not None:
        cls = np.asarray(attack_class).astype(str)
        sets.update({c: y & (cls == c) for c in sorted(set(cls[y]))})
    order, _, _ = _pair_positions(s[y], s[~y])
    sneg = s[~y][order]
    neg_units, neg_inv = np.unique(g[~y], return_inverse=True)
    cn, neg_inv = draws.counts(neg_units), neg_inv[order]
    pos = {}
    for name, m in sets.items():
        units, inv = np.unique(g[m], return_inverse=True)
        pos[name] = (draws.counts(units), inv, np.searchsorted(sneg, s[m], side="left"),
                     np.searchsorted(sneg, s[m], side="right"))
    out = {name: np.empty(draws.n_boot) for name in sets}
    max_pos = max(int(cp.max()) for cp, _, _, _ in pos.values())  # the largest weight of one positive row
    # replicates in chunks: the (chunk, n) weight matrices stay under ~64 MB
    chunk = max(1, min(draws.n_boot, 8_000_000 // max(1, len(y))))
    for start in range(0, draws.n_boot, chunk):
        rows = slice(start, min(start + chunk, draws.n_boot))
        wn = cn[rows][:, neg_inv]
        # exact integer sums; int32 (half the memory traffic) wherever 2 U of one positive row cannot overflow it
        wide = 2 * int(wn.sum(axis=1, dtype=np.int64).max()) * max_pos >= 2**31
        cum = _neg_cumsum(wn, np.int64 if wide else np.int32)
        for name, (cp, inv, lo, hi) in pos.items():
            out[name][rows] = _weighted_auroc(cp[rows][:, inv], cum, lo, hi)
    return out


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles of the replicates (Efron & Tibshirani 1993, ch. 13)."""
    if not 0.0 < level < 1.0:
        raise MetricError(f"level must be in (0, 1), got {level}")
    a = (1.0 - level) / 2.0
    return float(np.quantile(replicates, a)), float(np.quantile(replicates, 1.0 - a))


def bootstrap_auroc(is_attack: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None,
                    n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC (Efron & Tibshirani 1993, ch. 13), stratified by class,
    resampling rows or, with ``groups``, whole groups (:func:`auroc_replicates`).

    Exact by construction for a separating detector (every replicate is 1.0); for a random one the interval
    is centred near 0.5 with a width of order 1 / sqrt(n).
    """
    if not 0.0 < level < 1.0:
        raise MetricError(f"level must be in (0, 1), got {level}")
    return percentile_interval(auroc_replicates(is_attack, scores, groups, n_boot=n_boot, seed=seed)["overall"],
                               level)


def roc_points(is_attack: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(np.asarray(is_attack, dtype=bool), finite_scores(scores))
    return fpr, tpr


def evaluate_scores(split: np.ndarray, attack_class: np.ndarray, is_attack: np.ndarray, scores: np.ndarray,
                    fpr_target: float | None = None, draws: ResamplingDraws | None = None,
                    groups: np.ndarray | None = None) -> dict:
    """Metrics of one scored run: test AUROC/AP overall, per-class AUROC/AP, and the val-threshold operating point.

    Per class: that class against the test benign flows (AUROC, AP) and, with ``fpr_target``, the share of its
    flows above the threshold (its detection rate). With ``draws`` the bootstrap replicates of the overall and
    per-class AUROC (:func:`auroc_replicates`, resampling the units ``groups`` names; rows when None) are
    under ``"replicates"``. Attack labels are read here only, after every model and aggregator is fitted.
    """
    split = np.asarray(split).astype(str)
    test = split == "test"
    y, cls, s = np.asarray(is_attack, bool)[test], np.asarray(attack_class).astype(str)[test], np.asarray(scores)[test]
    out: dict = {"n_test": int(test.sum()), "n_test_attack": int(y.sum()), "n_test_benign": int((~y).sum()),
                 "auroc": None, "ap": None, "per_class": {}}
    if y.any() and (~y).any():
        out["auroc"] = auroc(y, s)
        out["ap"] = average_precision(y, s)
        if draws is not None:
            out["replicates"] = auroc_replicates(y, s, None if groups is None else np.asarray(groups)[test],
                                                 attack_class=cls, draws=draws)
    else:
        log.warning("test rows have %d attack of %d: AUROC undefined", int(y.sum()), len(y))
    benign = ~y
    for c in sorted(set(cls[y])):
        m = benign | (cls == c)
        out["per_class"][str(c)] = {"auroc": auroc(y[m], s[m]) if benign.any() else None,
                                    "ap": average_precision(y[m], s[m]) if benign.any() else None,
                                    "n": int((cls == c).sum())}
    if fpr_target is not None and (split == "val").any():
        thr = threshold_at_fpr(np.asarray(scores)[split == "val"], fpr_target)
        fs = finite_scores(s)
        out["threshold"] = {"fpr_target": fpr_target, "value": thr,
                            "test_fpr": float(np.mean(fs[benign] > thr)) if benign.any() else None,
                            "test_tpr": float(np.mean(fs[y] > thr)) if y.any() else None}
        for c, d in out["per_class"].items():
            d["tpr"] = float(np.mean(fs[cls == c] > thr))
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
