"""Aggregators: turn a per-flow score vector into one anomaly score (higher = more anomalous).

Every aggregator is fitted on the benign validation rows of a ScoreTable only
(``split == "val"``); nothing here reads ``label``, ``attack_class`` or ``is_attack``.

Group A of the specification:

====  ==========================================================================
A1    Mahalanobis, covariance from sklearn OAS, on all finite columns (the deployable score)
A1z   A1 on the columns standardised by their benign-val mean and std (shows what A1's scale costs)
A2    Mahalanobis, Ledoit-Wolf covariance, on all finite columns
A3    Mahalanobis, empirical covariance (Moore-Penrose pseudo-inverse when singular)
A4    Mahalanobis-OAS on the three continuous scores (terminal_norm/flow/packet)
A5    terminal_norm alone
A6    disc_nll_total alone
A7    mean of per-score z-values, z from benign val
A8    cnf_nll alone (score option ``janus.cnf_nll``: the CNF's exact NLL per dim)
A9    A1z on the 10-d vector plus cnf_nll
A1L   A1's columns through the length-aware benign reference, then Mahalanobis-OAS (issue 23)
A1R   A1L with one band for all lengths (the same robust reference without length: what length adds)
flow_nllL  flow_nll through the length-aware benign reference (needs the flow_nll column)
A10   flow_nll alone (score option ``janus.flow_nll``: the flow's NLL in nats, summed over the flow)
A11   flow_nll_z alone (the same without the feature transform's Jacobian: NLL in the model's coordinates)
====  ==========================================================================

The length-aware rows (A1L, A1R, flow_nllL, and the baselines' ``+L`` twins, :func:`length_referenced_score`)
need each flow's packet count (``ScoreTable.n_packets``); see :class:`LengthReference`.

The score options (``OPTION_SCORES``, extra columns after the seed's 10-d vector) are read only by
the rows made for them (A8, A9): A1-A7 and A1z keep the seed's definition whatever a score file holds.

The Mahalanobis score is ``d^2(s) = (s - mu)^T Sigma^-1 (s - mu)`` (SPEC "Aggregation and
evaluation"), with ``(mu, Sigma)`` estimated on benign val.

"Finite columns" are chosen without labels: a column is used when every benign val value of it
is finite (JANUS variants without a head emit NaN columns for that head). A finite column that is
constant on val is kept by the shrinkage estimators (the shrinkage target gives it variance) and
dropped by A3/A7, which would otherwise divide by zero; the drop is logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf

from nidsflow.mahalanobis import mahalanobis_squared
from nidsflow.scores import CNF_SCORE, FLOW_NLL_SCORE, FLOW_NLL_Z_SCORE, JANUS_SCORE_NAMES, OPTION_SCORES, ScoreTable

log = logging.getLogger(__name__)

CONTINUOUS_SCORES: tuple[str, ...] = ("terminal_norm", "terminal_flow", "terminal_packet")
#: Floor on a standard deviation, relative to the column's scale, so a near-constant column cannot explode.
_STD_FLOOR = 1e-12


class AggregatorError(ValueError):
    """An aggregator cannot be fitted or applied (no usable column, too few rows, wrong columns)."""


class _BenignZ:
    """Per-column z-values z_j = (s_j - mean_val_j) / std_val_j, mean and std (floored) of the benign val rows."""

    def __init__(self):
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> np.ndarray:
        """Fit on ``X`` and return its z-values."""
        self.mean_ = X.mean(axis=0)
        self.std_ = np.maximum(X.std(axis=0), _STD_FLOOR)
        return self(X)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.std_

    def params(self) -> dict:
        return {"mean": self.mean_.tolist(), "std": self.std_.tolist()}

    def load(self, p: dict) -> None:
        self.mean_ = np.asarray(p["mean"], dtype=np.float64)
        self.std_ = np.asarray(p["std"], dtype=np.float64)


class Aggregator:
    """Base class: choose usable columns on val, fit on them, score any rows.

    Subclasses set ``name``/``description`` and implement ``_fit(X)`` / ``_score(X)`` on the
    selected columns, and ``params()`` / ``_load(dict)`` for serialisation.
    """

    name = "base"
    description = ""
    #: None: every finite column; else the only candidate columns (the others are ignored).
    candidate_columns: tuple[str, ...] | None = None
    #: With ``candidate_columns`` None: columns never used (the score options, for the seed's rows).
    excluded_columns: tuple[str, ...] = OPTION_SCORES
    drop_constant = False
    #: True: the aggregator also needs each flow's packet count (``_fit(X, n)`` / ``_score(X, n)``).
    needs_lengths = False

    def __init__(self):
        self.columns: tuple[str, ...] = ()

    # ------------------------------------------------------------ column choice (label free)
    def select_columns(self, score_names, S_val: np.ndarray) -> tuple[str, ...]:
        names = list(score_names)
        wanted = ([c for c in names if c not in self.excluded_columns] if self.candidate_columns is None
                  else [c for c in self.candidate_columns if c in names])
        chosen = []
        for c in wanted:
            col = S_val[:, names.index(c)]
            if not np.all(np.isfinite(col)):
                n_bad = int((~np.isfinite(col)).sum())
                log.info("%s: column %s skipped (%d of %d benign val values not finite)", self.name, c, n_bad, len(col))
                continue
            if self.drop_constant and np.std(col) <= _STD_FLOOR * max(1.0, float(np.abs(col).max())):
                log.info("%s: column %s skipped (constant on benign val)", self.name, c)
                continue
            chosen.append(c)
        if not chosen:
            raise AggregatorError(
                f"{self.name}: no usable score column among {wanted or list(self.candidate_columns or ())} "
                "(absent, all non-finite or constant on benign val)")
        return tuple(chosen)

    # ------------------------------------------------------------ public API
    def fit(self, S_val: np.ndarray, score_names, n_packets=None) -> "Aggregator":
        """Fit on benign val scores ``S_val`` [n, k] whose columns are ``score_names`` (``n_packets``: each
        row's packet count, read only by the length-aware aggregators)."""
        S_val = np.asarray(S_val, dtype=np.float64)
        if S_val.ndim != 2 or S_val.shape[1] != len(score_names):
            raise AggregatorError(f"{self.name}: val scores of shape {S_val.shape} do not match {len(score_names)} names")
        if len(S_val) < 2:
            raise AggregatorError(f"{self.name}: needs at least 2 benign val rows, got {len(S_val)}")
        lengths = self._lengths(n_packets, len(S_val))
        self.columns = self.select_columns(score_names, S_val)
        idx = [list(score_names).index(c) for c in self.columns]
        if self.needs_lengths:
            self._fit(S_val[:, idx], lengths)
        else:
            self._fit(S_val[:, idx])
        return self

    def _lengths(self, n_packets, n_rows: int) -> np.ndarray | None:
        """The packet counts as int64 (None for an aggregator that does not read them); checked."""
        if not self.needs_lengths:
            return None
        if n_packets is None:
            raise AggregatorError(f"{self.name}: needs each flow's packet count (the score file has no n_packets "
                                  "column: written before the length reference existed; rerun its scoring)")
        n = np.asarray(n_packets)
        if n.shape != (n_rows,):
            raise AggregatorError(f"{self.name}: {n.shape} packet counts for {n_rows} score rows")
        if not np.issubdtype(n.dtype, np.number) or not np.all(np.isfinite(n)) or (n < 0).any():
            raise AggregatorError(f"{self.name}: packet counts must be finite and >= 0")
        return n.astype(np.int64)

    def score(self, S: np.ndarray, score_names, n_packets=None) -> np.ndarray:
        """Aggregate score of each row; a row with a non-finite value in a used column scores +inf (logged)."""
        names = list(score_names)
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise AggregatorError(f"{self.name}: score columns {missing} are missing (have {names})")
        X = np.asarray(S, dtype=np.float64)[:, [names.index(c) for c in self.columns]]
        lengths = self._lengths(n_packets, len(X))
        bad = ~np.all(np.isfinite(X), axis=1)
        out = np.full(len(X), np.inf)
        if (~bad).any():
            out[~bad] = (self._score(X[~bad], lengths[~bad]) if self.needs_lengths else self._score(X[~bad]))
        if bad.any():
            log.warning("%s: %d of %d rows have non-finite scores in %s; they score +inf (most anomalous)",
                        self.name, int(bad.sum()), len(X), list(self.columns))
        return out

    def fit_table(self, table: ScoreTable) -> "Aggregator":
        """Fit on the ``split == "val"`` rows of a ScoreTable (benign by construction); labels are never read."""
        val = table.split == "val"
        if not val.any():
            raise AggregatorError(f"{self.name}: the score table has no split=='val' rows to fit on")
        n_val = None if table.n_packets is None else table.n_packets[val]
        return self.fit(table.scores[val], table.score_names, n_val)

    def score_table(self, table: ScoreTable) -> np.ndarray:
        return self.score(table.scores, table.score_names, table.n_packets)

    def to_dict(self) -> dict:
        return {"aggregator": self.name, "columns": list(self.columns), "params": self.params()}

    # ------------------------------------------------------------ subclass hooks
    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict:
        raise NotImplementedError

    def _load(self, params: dict) -> None:
        raise NotImplementedError


class _Mahalanobis(Aggregator):
    """d^2(s) = (s - mu)^T P (s - mu), P = Sigma^-1 from a covariance estimator fitted on benign val."""

    def __init__(self):
        super().__init__()
        self.location_: np.ndarray | None = None
        self.precision_: np.ndarray | None = None
        self.covariance_: np.ndarray | None = None
        self.shrinkage_: float | None = None

    def _estimator(self):
        raise NotImplementedError

    def _fit(self, X):
        est = self._estimator().fit(X)
        self.location_ = np.asarray(est.location_, dtype=np.float64)
        self.covariance_ = np.asarray(est.covariance_, dtype=np.float64)
        self.precision_ = np.asarray(est.get_precision(), dtype=np.float64)
        self.shrinkage_ = float(getattr(est, "shrinkage_", 0.0))

    def _score(self, X):
        return mahalanobis_squared(X, self.location_, self.precision_)

    def params(self):
        return {"location": self.location_.tolist(), "precision": self.precision_.tolist(),
                "covariance": self.covariance_.tolist(), "shrinkage": self.shrinkage_}

    def _load(self, p):
        self.location_ = np.asarray(p["location"], dtype=np.float64)
        self.precision_ = np.asarray(p["precision"], dtype=np.float64)
        self.covariance_ = np.asarray(p["covariance"], dtype=np.float64)
        self.shrinkage_ = float(p.get("shrinkage", 0.0))


class MahalanobisOAS(_Mahalanobis):
    """A1 (deployable): Mahalanobis with the Oracle-Approximating-Shrinkage covariance (Chen et al. 2010),
    Sigma = (1 - rho) S + rho tr(S)/p I, on all finite columns."""

    name = "A1"
    description = "Mahalanobis, OAS covariance, all finite scores (deployable)"

    def _estimator(self):
        return OAS()


class _OnZValues:
    """Mixin of the aggregators that work on the columns' benign-val z-values (``self.z``); a constant
    column has none, so it is dropped."""

    drop_constant = True

    def __init__(self):
        super().__init__()
        self.z = _BenignZ()


class MahalanobisOASStandardised(_OnZValues, MahalanobisOAS):
    """A1z: A1 on score columns standardised on benign val, z_j = (s_j - mean_val_j) / std_val_j.

    OAS shrinks towards tr(S)/p I, a target that is not scale invariant: on raw scores a column with a
    small variance (a disc_nll_* channel) gets the average variance added and is down-weighted, one
    with a large variance dominates. On z-scores the target is the identity (the correlation
    matrix's trace / p = 1), so shrinkage only pulls correlations towards 0. The row beside A1 shows
    what the scale costs; A1 stays the deployable default (SPEC). Constant columns are dropped (their
    z is undefined).
    """

    name = "A1z"
    description = "Mahalanobis, OAS covariance, all finite scores standardised on benign val"

    def _fit(self, X):
        super()._fit(self.z.fit(X))

    def _score(self, X):
        return super()._score(self.z(X))

    def params(self):
        return {**super().params(), **self.z.params()}

    def _load(self, p):
        super()._load(p)
        self.z.load(p)


class MahalanobisLedoitWolf(_Mahalanobis):
    """A2: Mahalanobis with the Ledoit-Wolf shrunk covariance, on all finite columns."""

    name = "A2"
    description = "Mahalanobis, Ledoit-Wolf covariance, all finite scores"

    def _estimator(self):
        return LedoitWolf()


class MahalanobisEmpirical(_Mahalanobis):
    """A3: Mahalanobis with the plain empirical covariance.

    sklearn's EmpiricalCovariance.get_precision uses the Moore-Penrose pseudo-inverse
    (scipy.linalg.pinvh), so a singular covariance (collinear scores) still yields a score; we
    log when that happens. Constant columns are dropped first.
    """

    name = "A3"
    description = "Mahalanobis, empirical covariance (pseudo-inverse if singular)"
    drop_constant = True

    def _estimator(self):
        return EmpiricalCovariance()

    def _fit(self, X):
        super()._fit(X)
        rank = np.linalg.matrix_rank(self.covariance_)
        cond = np.linalg.cond(self.covariance_)
        if rank < X.shape[1] or not np.isfinite(cond) or cond > 1e12:
            log.warning("A3: empirical covariance is singular or ill-conditioned (rank %d of %d, cond %.3g); "
                        "using its pseudo-inverse", rank, X.shape[1], cond)


class MahalanobisOASContinuous(MahalanobisOAS):
    """A4: Mahalanobis-OAS on the three continuous (CFM-head) scores only."""

    name = "A4"
    description = "Mahalanobis, OAS covariance, 3 continuous scores"
    candidate_columns = CONTINUOUS_SCORES


class _SingleScore(Aggregator):
    """One raw score, standardised by its benign val mean and std (monotone: AUROC is the raw score's)."""

    drop_constant = True

    def __init__(self):
        super().__init__()
        self.mean_ = 0.0
        self.std_ = 1.0

    def _fit(self, X):
        self.mean_ = float(X[:, 0].mean())
        self.std_ = float(max(X[:, 0].std(), _STD_FLOOR))

    def _score(self, X):
        return (X[:, 0] - self.mean_) / self.std_

    def params(self):
        return {"mean": self.mean_, "std": self.std_}

    def _load(self, p):
        self.mean_, self.std_ = float(p["mean"]), float(p["std"])


class TerminalNorm(_SingleScore):
    """A5: terminal_norm alone."""

    name = "A5"
    description = "terminal_norm alone"
    candidate_columns = ("terminal_norm",)


class DiscNLLTotal(_SingleScore):
    """A6: disc_nll_total alone."""

    name = "A6"
    description = "disc_nll_total alone"
    candidate_columns = ("disc_nll_total",)


class MeanZ(_OnZValues, Aggregator):
    """A7: mean over finite columns of z_j = (s_j - mean_val_j) / std_val_j."""

    name = "A7"
    description = "mean of per-score z-values (z from benign val)"

    def _fit(self, X):
        self.z.fit(X)

    def _score(self, X):
        return self.z(X).mean(axis=1)

    def params(self):
        return self.z.params()

    def _load(self, p):
        self.z.load(p)


class CNFNLL(_SingleScore):
    """A8: cnf_nll alone, -log p_1(x) / D of the learned CNF (score option ``janus.cnf_nll``)."""

    name = "A8"
    description = "cnf_nll alone (CNF exact NLL per dim; score option)"
    candidate_columns = (CNF_SCORE,)


class FlowNLL(_SingleScore):
    """A10: flow_nll alone, the flow's negative log-likelihood in nats (score option ``janus.flow_nll``)."""

    name = "A10"
    description = "flow_nll alone (flow NLL in nats: CNF + masked-diffusion NELBO + length; score option)"
    candidate_columns = (FLOW_NLL_SCORE,)


class FlowNLLZ(_SingleScore):
    """A11: flow_nll_z alone, flow_nll without the transform's log-Jacobian (score option ``janus.flow_nll``)."""

    name = "A11"
    description = "flow_nll_z alone (flow NLL in the model's standardised coordinates; score option)"
    candidate_columns = (FLOW_NLL_Z_SCORE,)


class MahalanobisOASStandardisedCNF(MahalanobisOASStandardised):
    """A9: A1z on every finite column including cnf_nll (needs the score option; otherwise not run)."""

    name = "A9"
    description = "Mahalanobis, OAS covariance, standardised 10-d scores + cnf_nll (score option)"
    excluded_columns = tuple(c for c in OPTION_SCORES if c != CNF_SCORE)  # the other options stay out

    def select_columns(self, score_names, S_val):
        if CNF_SCORE not in score_names:
            raise AggregatorError(f"{self.name}: no {CNF_SCORE} column (score option janus.cnf_nll is off)")
        return super().select_columns(score_names, S_val)


# ---------------------------------------------------------------- the length-aware benign reference (issue 23)

#: Score columns where only a high value is surprising: likelihood-type scores (a negative log-likelihood in
#: nats or bits: the disc_nll_* channels, cnf_nll, flow_nll) and a baseline's one anomaly score. A value below
#: the band's benign median means the model explains the flow better than typical benign traffic of its
#: length; that is no evidence of an attack, so in a quadratic form (A1L) it is clipped to the median.
#: The terminal_* columns stay two-sided: they are squared latent norms, a distance from the prior's centre,
#: and a benign flow's norm concentrates around its band's typical value (the Gaussian annulus), so a flow
#: too close to the centre is as atypical as one too far (the typicality test of Nalisnick et al. 2019,
#: "Detecting out-of-distribution inputs to deep generative models using typicality"); issue 23 documents
#: attack flows made of common atoms (one-packet floods) at the low end of these columns.
#: A column not named here is two-sided (nothing thrown away).
ONE_SIDED_SCORES: tuple[str, ...] = tuple(n for n in JANUS_SCORE_NAMES if n.startswith("disc_nll")) + (
    CNF_SCORE, FLOW_NLL_SCORE, "score")
#: Fewest benign val flows per packet-count band (issue 23).
MIN_BAND = 50
#: A band's scale is at least this fraction of the column's typical within-band scale (the median over bands;
#: the scale over all benign val flows when every band is constant): a band where benign val is (near)
#: constant must not turn float noise into huge referenced values. Relative to the within-band spread, not
#: the overall one, which the length dependence itself inflates.
SCALE_FLOOR = 0.01
#: Consistency constants of the robust scales for normal data: sigma = 1.4826 MAD = 1.2533 mean |x - median|.
_MAD_TO_SIGMA = 1.482602218505602
_MEANAD_TO_SIGMA = 1.2533141373155003


def packet_count_bands(counts: np.ndarray, min_band: int | None = MIN_BAND) -> np.ndarray:
    """Lower edges of packet-count bands built from benign val counts: the distinct counts in increasing
    order, each joined with the next ones until the band holds at least ``min_band`` flows; a remainder
    under ``min_band`` at the top joins the band below it (one band if there are fewer than ``min_band``
    flows in all; ``min_band`` None: one band). Band b holds the counts in [edge_b, edge_b+1); counts below
    the first edge fall in the first band and counts beyond the largest val count in the last
    (:func:`band_of`), so every count, seen on val or not, has a band. Deterministic (no draw)."""
    values, freq = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    if not len(values):
        raise AggregatorError("packet-count bands: no benign val flow")
    if min_band is None:
        return values[:1].copy()
    edges, acc, start = [], 0, None
    for v, f in zip(values, freq):
        start = v if start is None else start
        acc += int(f)
        if acc >= min_band:
            edges.append(start)
            start, acc = None, 0
    if start is not None and not edges:
        edges.append(start)  # fewer than min_band flows in all: one band
    return np.asarray(edges, dtype=np.int64)


def band_of(n_packets: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band index of each packet count (see :func:`packet_count_bands`)."""
    return np.clip(np.searchsorted(edges, np.asarray(n_packets), side="right") - 1, 0, len(edges) - 1)


def robust_scale(x: np.ndarray, median: float) -> float:
    """sigma estimate 1.4826 MAD; when the MAD is 0 (more than half the values tie), 1.2533 x the mean absolute
    deviation from the median (the fallback of the modified z-score, Iglewicz & Hoaglin 1993); 0 if constant."""
    dev = np.abs(x - median)
    mad = float(np.median(dev)) * _MAD_TO_SIGMA
    return mad if mad > 0 else float(dev.mean()) * _MEANAD_TO_SIGMA


class LengthReference:
    """A benign reference per packet-count band: z_j = (s_j - median_b,j) / scale_b,j for a flow in band b.

    Fitted on benign val only: bands from :func:`packet_count_bands` (at least ``min_band`` val flows each),
    per band and column the median and the robust scale (:func:`robust_scale`, floored at SCALE_FLOOR x the
    column's typical band scale). A score whose benign location and spread depend on the flow's length
    (issue 23: Spearman +0.5 to +0.9 on six of JANUS's ten axes) is so compared with benign flows of similar
    length, as STFPM-style's per-length reference does.

    Why median/scale and not rank standardisation (the band's benign-val empirical CDF mapped to a normal
    quantile): ranks saturate at the band's largest benign val value, so every flow beyond it (a flood far
    outside the benign range) would tie with the most extreme benign val flow of its band, and a model
    directory would have to carry every benign val score; the robust location/scale keeps how far beyond the
    benign range a flow lies, needs two numbers per band and column, and ignores the tails it is fitted on.
    ``one_sided`` columns (:data:`ONE_SIDED_SCORES`) are clipped at 0 (their band's median) when ``clip``.
    """

    def __init__(self, min_band: int | None = MIN_BAND):
        self.min_band = min_band
        self.edges_: np.ndarray | None = None
        self.location_: np.ndarray | None = None   # [bands, k]
        self.scale_: np.ndarray | None = None      # [bands, k]
        self.n_val_: np.ndarray | None = None      # val flows per band
        self.one_sided_: np.ndarray | None = None  # [k] bool

    def fit(self, X: np.ndarray, n_packets: np.ndarray, one_sided=None) -> "LengthReference":
        X = np.asarray(X, dtype=np.float64)
        n_packets = np.asarray(n_packets, dtype=np.int64)
        self.edges_ = packet_count_bands(n_packets, self.min_band)
        band = band_of(n_packets, self.edges_)
        k = X.shape[1]
        self.one_sided_ = np.zeros(k, bool) if one_sided is None else np.asarray(one_sided, bool)
        nb = len(self.edges_)
        self.location_, self.scale_ = np.zeros((nb, k)), np.ones((nb, k))
        self.n_val_ = np.bincount(band, minlength=nb)
        for b in range(nb):
            Xb = X[band == b]
            self.location_[b] = np.median(Xb, axis=0)
            self.scale_[b] = [robust_scale(Xb[:, j], self.location_[b, j]) for j in range(k)]
        for j in range(k):
            positive = self.scale_[:, j][self.scale_[:, j] > 0]
            typical = np.median(positive) if len(positive) else robust_scale(X[:, j], np.median(X[:, j]))
            self.scale_[:, j] = np.maximum(self.scale_[:, j], max(SCALE_FLOOR * typical, _STD_FLOOR))
        log.info("length reference: %d bands from %d benign val flows (lower edges %s; val flows %s)", nb, len(X),
                 self.edges_.tolist(), self.n_val_.tolist())
        return self

    def __call__(self, X: np.ndarray, n_packets: np.ndarray, clip: bool = True) -> np.ndarray:
        band = band_of(n_packets, self.edges_)
        Z = (np.asarray(X, dtype=np.float64) - self.location_[band]) / self.scale_[band]
        if clip and self.one_sided_.any():
            Z[:, self.one_sided_] = np.maximum(Z[:, self.one_sided_], 0.0)
        return Z

    def params(self) -> dict:
        return {"min_band": self.min_band, "band_lower_edges": self.edges_.tolist(),
                "band_n_val": self.n_val_.tolist(), "band_location": self.location_.tolist(),
                "band_scale": self.scale_.tolist(), "one_sided": self.one_sided_.tolist()}

    def load(self, p: dict) -> "LengthReference":
        self.min_band = p["min_band"]
        self.edges_ = np.asarray(p["band_lower_edges"], dtype=np.int64)
        self.n_val_ = np.asarray(p["band_n_val"], dtype=np.int64)
        self.location_ = np.asarray(p["band_location"], dtype=np.float64).reshape(len(self.edges_), -1)
        self.scale_ = np.asarray(p["band_scale"], dtype=np.float64).reshape(len(self.edges_), -1)
        self.one_sided_ = np.asarray(p["one_sided"], dtype=bool)
        return self


class _LengthReferenced(Aggregator):
    """Base of the length-aware rows: the chosen columns through a :class:`LengthReference` fitted on benign
    val, then ``inner`` (an aggregator of the referenced values) fitted on the referenced benign val rows.

    Not a subclass of the Mahalanobis classes on purpose: deploy.explain decomposes those on raw scores,
    which would be wrong here (an axis contribution of A1L is ``inner``'s on ``reference(X, n)``)."""

    needs_lengths = True
    drop_constant = True
    min_band: int | None = MIN_BAND
    #: Clip the one-sided columns at their band's median (for a quadratic form; a single score keeps its sign).
    clip = True

    def __init__(self):
        super().__init__()
        self.reference = LengthReference(self.min_band)
        self.inner = self._inner()

    def _inner(self) -> Aggregator:
        raise NotImplementedError

    def referenced(self, X: np.ndarray, n_packets: np.ndarray) -> np.ndarray:
        """The used columns of ``X`` (in ``self.columns`` order) referenced to their length band."""
        return self.reference(X, n_packets, clip=self.clip)

    def _fit(self, X, n_packets):
        self.reference.fit(X, n_packets, [c in ONE_SIDED_SCORES for c in self.columns])
        self.inner.columns = self.columns
        self.inner._fit(self.referenced(X, n_packets))

    def _score(self, X, n_packets):
        return self.inner._score(self.referenced(X, n_packets))

    def params(self):
        return {"reference": self.reference.params(), "inner": self.inner.params()}

    def _load(self, p):
        self.reference.load(p["reference"])
        self.inner.columns = self.columns
        self.inner._load(p["inner"])


class _CentredOAS(MahalanobisOAS):
    """Mahalanobis-OAS about 0, d^2 = z^T Sigma^-1 z: on referenced values 0 is the band's benign median, so
    the location is the reference's and only the covariance (OAS, ``assume_centered``) is estimated; a
    one-sided axis clipped at 0 then adds nothing below its median."""

    def _estimator(self):
        return OAS(assume_centered=True)


class MahalanobisOASLength(_LengthReferenced):
    """A1L: A1's columns (the seed's 10-d vector) through the length-aware benign reference, then
    Mahalanobis-OAS about the bands' medians (:class:`_CentredOAS`). The referenced axes have a robust unit
    scale, so OAS's shrinkage target is not dominated by one column's scale (the A1 vs A1z question)."""

    name = "A1L"
    description = "Mahalanobis-OAS on the scores referenced to benign val flows of similar length (issue 23)"

    def _inner(self):
        return _CentredOAS()


class MahalanobisOASRobust(MahalanobisOASLength):
    """A1R: A1L with one band for all lengths: the same robust reference and one-sided clipping without the
    length; A1L - A1R is what comparing like lengths adds."""

    name = "A1R"
    description = "A1L with one band for all lengths (robust reference without length)"
    min_band = None


class _ReferencedSingle(_LengthReferenced):
    """One column through the length-aware reference; the score is its referenced value, sign kept (monotone
    in the raw score within a band, so only comparisons across bands change)."""

    clip = False

    def _inner(self):
        return _Identity()


class _Identity(Aggregator):
    """The first (only) column as it is."""

    name = "identity"

    def _fit(self, X):
        pass

    def _score(self, X):
        return X[:, 0]

    def params(self):
        return {}

    def _load(self, p):
        pass


class FlowNLLLength(_ReferencedSingle):
    """flow_nllL: helper "nll"'s flow_nll (nats per flow) referenced to benign val flows of similar length."""

    name = "flow_nllL"
    description = "flow_nll referenced to benign val flows of similar length (needs the flow_nll column)"
    candidate_columns = (FLOW_NLL_SCORE,)


class BaselineScoreLength(_ReferencedSingle):
    """A baseline's one score column ("score") referenced to its own benign val scores of similar length: the
    baselines' ``+L`` twins, so every method is offered the same reference as JANUS."""

    name = "L"
    description = "a baseline's score referenced to its benign val flows of similar length"
    candidate_columns = ("score",)


def length_referenced_score(table: ScoreTable) -> np.ndarray:
    """A baseline's ``+L`` score of every row: its "score" column through a LengthReference fitted on the
    table's benign val rows (no retraining). AggregatorError when the table has no packet counts."""
    return BaselineScoreLength().fit_table(table).score_table(table)


def length_referenced_table(table: ScoreTable) -> ScoreTable:
    """The baseline's table with its "score" column replaced by :func:`length_referenced_score`."""
    return ScoreTable(table.flow_id, table.split, table.label, table.attack_class, table.is_attack, ("score",),
                      length_referenced_score(table)[:, None], table.n_packets)


#: Packet-count bands of the per-band table (issue 23): (label, lowest, highest or None).
REPORT_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 1, 1), ("2", 2, 2), ("3-8", 3, 8), ("9-15", 9, 15), ("16+", 16, None))
#: Fewest test flows of each class (attack, benign) in a band for its AUROC to be computed.
MIN_BAND_CLASS = 10


def per_band_auroc(split: np.ndarray, is_attack: np.ndarray, n_packets: np.ndarray, scores: np.ndarray,
                   bands=REPORT_BANDS, min_class: int = MIN_BAND_CLASS) -> dict[str, dict]:
    """Per packet-count band: the AUROC of the band's test attack flows against the band's test benign flows
    (all attack classes pooled), with the flow counts; ``auroc`` None when a class has fewer than
    ``min_class`` flows in the band."""
    from nidsflow.evaluate.metrics import auroc

    test = np.asarray(split) == "test"
    y, n, s = np.asarray(is_attack, bool)[test], np.asarray(n_packets)[test], np.asarray(scores)[test]
    out = {}
    for label, lo, hi in bands:
        m = (n >= lo) & (n <= (np.inf if hi is None else hi))
        n_att, n_ben = int(y[m].sum()), int((~y[m]).sum())
        ok = n_att >= min_class and n_ben >= min_class
        out[label] = {"auroc": auroc(y[m], s[m]) if ok else None, "n_attack": n_att, "n_benign": n_ben}
    return out


AGGREGATORS: dict[str, type[Aggregator]] = {
    cls.name: cls for cls in (MahalanobisOAS, MahalanobisOASStandardised, MahalanobisLedoitWolf, MahalanobisEmpirical,
                              MahalanobisOASContinuous, TerminalNorm, DiscNLLTotal, MeanZ, CNFNLL,
                              MahalanobisOASStandardisedCNF, MahalanobisOASLength, MahalanobisOASRobust, FlowNLLLength,
                              FlowNLL, FlowNLLZ)
}
#: Aggregators that are not rows of the group-A table (a baseline's score column), still (de)serialisable.
_OTHER_AGGREGATORS: dict[str, type[Aggregator]] = {BaselineScoreLength.name: BaselineScoreLength}
#: The deployable aggregator's name.
DEPLOYABLE = "A1"


def make_aggregator(name: str) -> Aggregator:
    try:
        return {**AGGREGATORS, **_OTHER_AGGREGATORS}[name]()
    except KeyError:
        raise AggregatorError(f"unknown aggregator {name!r}; known: {sorted(AGGREGATORS)}") from None


def aggregator_from_dict(d: dict) -> Aggregator:
    agg = make_aggregator(d["aggregator"])
    agg.columns = tuple(d["columns"])
    agg._load(d["params"])
    return agg


# ---------------------------------------------------------------- the deployable artifact

def fit_deployable(table: ScoreTable, fpr_target: float, name: str = DEPLOYABLE) -> dict:
    """Fit an aggregator and an alert threshold on benign val; return the JSON-able artifact.

    The threshold is metrics.threshold_at_fpr of the aggregated benign val scores: at most a
    fraction fpr_target of benign val flows score strictly above it (alert = score > threshold).
    """
    from nidsflow.evaluate.metrics import threshold_at_fpr

    agg = make_aggregator(name).fit_table(table)
    val_scores = agg.score_table(table.val)
    thr = threshold_at_fpr(val_scores, fpr_target)
    d = agg.to_dict()
    d.update({"threshold": thr, "fpr_target": float(fpr_target), "n_val": int((table.split == "val").sum()),
              "score_names": list(table.score_names),
              "val_fpr_at_threshold": float(np.mean(val_scores > thr))})
    return d


def save_artifact(artifact: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(artifact, indent=1))


def load_artifact(path: str | Path) -> tuple[Aggregator, float, dict]:
    """Read an aggregator.json: (fitted aggregator, threshold, the raw dict)."""
    try:
        d = json.loads(Path(path).read_text())
        agg = aggregator_from_dict(d)
        return agg, float(d["threshold"]), d
    except (OSError, KeyError, ValueError) as e:
        raise AggregatorError(f"{path}: not a valid aggregator artifact ({e})") from e
