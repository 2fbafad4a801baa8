"""Classical one-class detectors from PyOD (Zhao, Nasrullah & Li, JMLR 2019) on flow statistics:
Isolation Forest, One-Class SVM, kNN (mean distance), LOF, ECOD and COPOD.

Every detector sees the one flow preprocessing (``nidsflow.scaling.SignedLogRobustScaler``: signed
log1p, median/IQR of benign train, clip) and is fitted on benign train only; score: higher = more
anomalous (PyOD's ``decision_function``).

Hyper-parameter choice, label free ("held-out benign calibration", :func:`select_by_calibration`):
for each grid point the detector is fitted on benign train and the alert threshold t is put at the
(1 - q) quantile of its benign-train scores; its calibration gap is |P_val(score > t) - q| on
benign val. A model that over-fits benign train (too few neighbours, too narrow a kernel, too
small a subsample) flags many more held-out benign flows than q, one that generalises does not.
The grid's first point is the library default; another point replaces the current choice only when
its gap is smaller by more than the binomial standard error sqrt(q (1 - q) / n_val) of a rate
measured on n_val flows (so noise, or a last-digit difference between CPUs, never decides).
For kNN and LOF the benign-train scores are leave-one-out (PyOD excludes each point from its own
neighbours), so train and val scores are comparable. ECOD and COPOD have no hyper-parameter.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.stats import skew

from nidsflow.evaluate.baselines.common import Baseline, BaselineError, SignedLogRobustScaler

log = logging.getLogger(__name__)


def calibration_gap(train_scores: np.ndarray, val_scores: np.ndarray, q: float) -> float:
    """|P_val(score > t) - q| with t the (1 - q) quantile of the benign-train scores."""
    t = np.quantile(train_scores, 1.0 - q)
    return float(abs(np.mean(val_scores > t) - q))


def select_by_calibration(grid: list, fit, q: float, n_val: int) -> tuple[int, list[float], object]:
    """Fit each grid point (``fit(point) -> (model, train_scores, val_scores)``) and keep the first
    point (the default) unless a later one's calibration gap is smaller by more than
    sqrt(q (1 - q) / n_val). Returns (index kept, gaps, model kept)."""
    if not grid:
        raise BaselineError("empty hyper-parameter grid")
    tol = math.sqrt(q * (1.0 - q) / max(int(n_val), 1))
    gaps, best = [], None
    for i, point in enumerate(grid):
        model, s_train, s_val = fit(point)
        gaps.append(calibration_gap(s_train, s_val, q))
        if best is None or gaps[-1] < gaps[best[0]] - tol:
            best = (i, model)
    return best[0], gaps, best[1]


class _PyODBaseline(Baseline):
    """Shared wiring: scale, choose the grid point on benign val, score with ``decision_function``.

    Subclasses set ``grid_key`` (the config key of the grid, None for none), ``default_grid`` (the
    library default first) and ``_make(point, n_train)`` -> an unfitted PyOD detector.
    """

    view = "flow"
    grid_key: str | None = None
    grid_name = ""
    default_grid: list = [None]

    def _make(self, point, n_train):
        raise NotImplementedError

    def _prepare(self, Xt):
        """Settings computed from the (scaled) benign train matrix before the grid is fitted."""

    def _train_scores(self, model, Xt):
        return model.decision_scores_

    def _fit(self, train, val):
        p = self.params
        self.pre = SignedLogRobustScaler(p.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Xt, Xv = self.pre.transform(train.flow).astype(np.float64), self.pre.transform(val.flow).astype(np.float64)
        max_train = p.get("max_train")
        if max_train is not None and len(Xt) > int(max_train):
            rng = np.random.default_rng(self.seed)
            Xt = Xt[np.sort(rng.choice(len(Xt), int(max_train), replace=False))]
            log.info("%s: fitted on a seeded subsample of %d benign train flows", self.name, int(max_train))
        grid = list(p.get(self.grid_key, self.default_grid)) if self.grid_key else [None]
        self._prepare(Xt)

        def fit(point):
            m = self._make(point, len(Xt)).fit(Xt)
            return m, self._train_scores(m, Xt), m.decision_function(Xv)

        q = float(p.get("calibration_q", 0.05))
        i = 0
        if len(grid) == 1:
            self.model = fit(grid[0])[0]
            self.selected.update({"criterion": "library default (no label-free criterion applies)"
                                  if self.grid_key is None else "single configured value"})
        else:
            i, gaps, self.model = select_by_calibration(grid, fit, q, len(Xv))
            self.selected.update({"grid": [{self.grid_name: g, "calibration_gap": v} for g, v in zip(grid, gaps)],
                                  "criterion": "held-out benign calibration gap (first point unless better by "
                                               "more than one binomial standard error)"})
        if self.grid_key:
            self.selected[self.grid_name] = grid[i]
        self.n_fit_ = len(Xt)

    def _score(self, x):
        return self.model.decision_function(self.pre.transform(x.flow).astype(np.float64))


class IsolationForestBaseline(_PyODBaseline):
    """Isolation Forest (Liu, Ting & Zhou, ICDM 2008): score 2^{-E[h(x)]/c(psi)} (PyOD ``IForest``).

    Grid ``max_samples_grid`` (subsample size psi; 256 is the paper's and the library's default),
    ``n_estimators`` trees (library default 100), seeded.
    """

    name = "iforest"
    description = "Isolation Forest (PyOD) on flow statistics (signed log1p + robust scaling)"
    grid_key, grid_name, default_grid = "max_samples_grid", "max_samples", [256, 128, 512]

    def _make(self, ms, n_train):
        from pyod.models.iforest import IForest
        return IForest(n_estimators=int(self.params.get("n_estimators", 100)), max_samples=min(int(ms), n_train),
                       max_features=float(self.params.get("max_features", 1.0)), random_state=self.seed, n_jobs=1)

    def parameter_count(self):
        n = sum(int(t.tree_.node_count) for t in self.model.detector_.estimators_)
        return 2 * n, "stored values: 2 per tree node (split feature + threshold, or leaf size)"


class OCSVMBaseline(_PyODBaseline):
    """One-Class SVM (Schoelkopf et al., Neural Computation 2001), RBF kernel (PyOD ``OCSVM``).

    nu = ``nu`` (default 0.05); gamma = g / (F var(X)) for g in ``gamma_scale_grid`` (1.0 is sklearn's
    "scale", first); fitted on at most ``max_train`` benign train flows (a seeded subsample: the
    solver is quadratic in n). The calibration level q is nu.
    """

    name = "ocsvm"
    description = "One-Class SVM (RBF, PyOD) on flow statistics (signed log1p + robust scaling)"
    grid_key, grid_name, default_grid = "gamma_scale_grid", "gamma_scale", [1.0, 0.3, 3.0]

    def _fit(self, train, val):
        self.params = {"max_train": 5000, **self.params, "calibration_q": float(self.params.get("nu", 0.05))}
        super()._fit(train, val)
        self.selected["nu"] = float(self.params.get("nu", 0.05))

    def _prepare(self, Xt):
        self.base_gamma_ = 1.0 / (Xt.shape[1] * max(float(Xt.var()), 1e-12))  # sklearn's gamma="scale"

    def _make(self, g, n_train):
        from pyod.models.ocsvm import OCSVM
        return OCSVM(kernel="rbf", nu=float(self.params.get("nu", 0.05)), gamma=self.base_gamma_ * float(g))

    def parameter_count(self):
        sv = self.model.detector_.support_vectors_
        return int(sv.size + sv.shape[0]), "stored values: support vectors x dims + one dual coefficient each"


class KNNBaseline(_PyODBaseline):
    """k-nearest-neighbour distance (Ramaswamy, Rastogi & Shim, SIGMOD 2000; Angiulli & Pizzuti 2002):
    score = mean Euclidean distance to the k nearest benign train flows (PyOD ``KNN``, method "mean").

    Grid ``n_neighbors_grid`` (5, the library default, first).
    """

    name = "knn"
    description = "kNN mean distance (PyOD) on flow statistics (signed log1p + robust scaling)"
    grid_key, grid_name, default_grid = "n_neighbors_grid", "n_neighbors", [5, 10, 20]

    def _make(self, k, n_train):
        from pyod.models.knn import KNN
        return KNN(n_neighbors=min(int(k), n_train - 1), method="mean", n_jobs=1)

    def parameter_count(self):
        return int(self.n_fit_ * len(self.pre.median_)), "stored values: benign train flows x dims"


class LOFBaseline(_PyODBaseline):
    """Local Outlier Factor (Breunig et al., SIGMOD 2000), novelty mode (PyOD ``LOF``).

    Grid ``n_neighbors_grid`` (20, the library default, first).
    """

    name = "lof"
    description = "Local Outlier Factor (PyOD) on flow statistics (signed log1p + robust scaling)"
    grid_key, grid_name, default_grid = "n_neighbors_grid", "n_neighbors", [20, 10, 50]

    def _make(self, k, n_train):
        from pyod.models.lof import LOF
        return LOF(n_neighbors=min(int(k), n_train - 1), novelty=True, n_jobs=1)

    def parameter_count(self):
        return int(self.n_fit_ * (len(self.pre.median_) + 1)), "stored values: benign train flows x (dims + local density)"


class _EmpiricalTailBaseline(Baseline):
    """ECOD / COPOD scored inductively: the empirical CDFs come from benign train only.

    PyOD's ``decision_function`` re-estimates the CDFs on benign train *plus the whole scored batch*,
    so a flow's score would depend on the other test flows (attacks included). Here a flow x is
    scored as PyOD scores it when it is the only new row: per dimension j, with n train values,

        F_l,j(x) = (#{train_j <= x_j} + 1) / (n + 1),   F_r,j(x) = (#{train_j >= x_j} + 1) / (n + 1),

    U_l = -log F_l, U_r = -log F_r, and the skewness-corrected U_s = U_l where benign train's
    skewness of dim j is < 0, U_r where > 0, U_l + U_r where 0 (PyOD's sign expression).
    Subclasses combine them (:meth:`_combine`); score = sum over dimensions. No hyper-parameter.
    """

    view = "flow"

    def _fit(self, train, val):
        self.pre = SignedLogRobustScaler(self.params.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Xt = self.pre.transform(train.flow).astype(np.float64)
        self.sorted_ = np.sort(Xt, axis=0)
        self.skew_sign_ = np.sign(np.nan_to_num(skew(Xt, axis=0)))
        self.selected["criterion"] = "none: the method has no hyper-parameter (library definition)"

    def _tails(self, X):
        n = len(self.sorted_)
        le = np.stack([np.searchsorted(self.sorted_[:, j], X[:, j], side="right") for j in range(X.shape[1])], 1)
        ge = n - np.stack([np.searchsorted(self.sorted_[:, j], X[:, j], side="left") for j in range(X.shape[1])], 1)
        u_l, u_r = -np.log((le + 1) / (n + 1)), -np.log((ge + 1) / (n + 1))
        s = self.skew_sign_
        return u_l, u_r, u_l * -np.sign(s - 1) + u_r * np.sign(s + 1)

    def _score(self, x):
        return self._combine(*self._tails(self.pre.transform(x.flow).astype(np.float64))).sum(axis=1)

    def parameter_count(self):
        return int(self.sorted_.size + len(self.skew_sign_)), "stored values: benign train flows x dims (ECDFs) + skew signs"


class ECODBaseline(_EmpiricalTailBaseline):
    """ECOD (Li et al., IEEE TKDE 2022): O = max(U_l, U_r, U_s) per dimension (PyOD ``ECOD``'s combination)."""

    name = "ecod"
    description = "ECOD (empirical-CDF outlier detection) on flow statistics (signed log1p + robust scaling)"

    @staticmethod
    def _combine(u_l, u_r, u_s):
        return np.maximum(np.maximum(u_l, u_r), u_s)


class COPODBaseline(_EmpiricalTailBaseline):
    """COPOD (Li et al., ICDM 2020): O = max(U_s, (U_l + U_r) / 2) per dimension (PyOD ``COPOD``'s combination)."""

    name = "copod"
    description = "COPOD (empirical copula outlier detection) on flow statistics (signed log1p + robust scaling)"

    @staticmethod
    def _combine(u_l, u_r, u_s):
        return np.maximum(u_s, (u_l + u_r) / 2)
