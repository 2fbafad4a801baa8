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
A10   flow_nll alone (score option ``janus.flow_nll``: the flow's NLL in nats, summed over the flow)
A11   flow_nll_z alone (the same without the feature transform's Jacobian: NLL in the model's coordinates)
====  ==========================================================================

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
from nidsflow.scores import CNF_SCORE, FLOW_NLL_SCORE, FLOW_NLL_Z_SCORE, OPTION_SCORES, ScoreTable

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
    def fit(self, S_val: np.ndarray, score_names) -> "Aggregator":
        """Fit on benign val scores ``S_val`` [n, k] whose columns are ``score_names``."""
        S_val = np.asarray(S_val, dtype=np.float64)
        if S_val.ndim != 2 or S_val.shape[1] != len(score_names):
            raise AggregatorError(f"{self.name}: val scores of shape {S_val.shape} do not match {len(score_names)} names")
        if len(S_val) < 2:
            raise AggregatorError(f"{self.name}: needs at least 2 benign val rows, got {len(S_val)}")
        self.columns = self.select_columns(score_names, S_val)
        idx = [list(score_names).index(c) for c in self.columns]
        self._fit(S_val[:, idx])
        return self

    def score(self, S: np.ndarray, score_names) -> np.ndarray:
        """Aggregate score of each row; a row with a non-finite value in a used column scores +inf (logged)."""
        names = list(score_names)
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise AggregatorError(f"{self.name}: score columns {missing} are missing (have {names})")
        X = np.asarray(S, dtype=np.float64)[:, [names.index(c) for c in self.columns]]
        bad = ~np.all(np.isfinite(X), axis=1)
        out = np.full(len(X), np.inf)
        if (~bad).any():
            out[~bad] = self._score(X[~bad])
        if bad.any():
            log.warning("%s: %d of %d rows have non-finite scores in %s; they score +inf (most anomalous)",
                        self.name, int(bad.sum()), len(X), list(self.columns))
        return out

    def fit_table(self, table: ScoreTable) -> "Aggregator":
        """Fit on the ``split == "val"`` rows of a ScoreTable (benign by construction); labels are never read."""
        val = table.split == "val"
        if not val.any():
            raise AggregatorError(f"{self.name}: the score table has no split=='val' rows to fit on")
        return self.fit(table.scores[val], table.score_names)

    def score_table(self, table: ScoreTable) -> np.ndarray:
        return self.score(table.scores, table.score_names)

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


AGGREGATORS: dict[str, type[Aggregator]] = {
    cls.name: cls for cls in (MahalanobisOAS, MahalanobisOASStandardised, MahalanobisLedoitWolf, MahalanobisEmpirical,
                              MahalanobisOASContinuous, TerminalNorm, DiscNLLTotal, MeanZ, CNFNLL,
                              MahalanobisOASStandardisedCNF, FlowNLL, FlowNLLZ)
}
#: The deployable aggregator's name.
DEPLOYABLE = "A1"


def make_aggregator(name: str) -> Aggregator:
    try:
        return AGGREGATORS[name]()
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
    val_scores = agg.score(table.scores[table.split == "val"], table.score_names)
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
