"""Classical one-class baselines on flow statistics: Isolation Forest and One-Class SVM.

Both see flow features after signed log1p + robust scaling (common.FlowPreprocessor).

Hyper-parameter choice, label free ("held-out benign calibration"): for each grid point the model
is fitted on benign train, the alert threshold is put at the (1 - q) quantile of its benign-train
scores, and the point whose benign-val exceedance rate is closest to q is kept (ties: the first
in grid order). A model that over-fits benign train (too small an Isolation-Forest subsample, too
narrow an RBF kernel) flags many more held-out benign flows than q; one that generalises does not.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.svm import OneClassSVM

from nidsflow.evaluate.baselines.common import Baseline, BaselineInput, SignedLogRobustScaler

log = logging.getLogger(__name__)


def calibration_gap(train_scores: np.ndarray, val_scores: np.ndarray, q: float) -> float:
    """|P_val(score > t) - q| with t the (1 - q) quantile of the benign-train scores."""
    t = np.quantile(train_scores, 1.0 - q)
    return float(abs(np.mean(val_scores > t) - q))


class IsolationForestBaseline(Baseline):
    """Isolation Forest (Liu et al. 2008): score = -score_samples = 2^{-E[h(x)]/c(psi)} (higher = anomalous).

    Grid: ``max_samples_grid`` (subsample size psi); ``n_estimators`` trees; seeded.
    """

    name = "iforest"
    view = "flow"
    description = "Isolation Forest on flow statistics (signed log1p + robust scaling)"

    def _fit(self, train, val):
        p = self.params
        self.pre = SignedLogRobustScaler(p.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Xt, Xv = self.pre.transform(train.flow), self.pre.transform(val.flow)
        q = float(p.get("calibration_q", 0.05))
        best = None
        for ms in p.get("max_samples_grid", [128, 256, 512]):
            ms_eff = min(int(ms), len(Xt))
            m = IsolationForest(n_estimators=int(p.get("n_estimators", 200)), max_samples=ms_eff,
                                max_features=float(p.get("max_features", 1.0)), random_state=self.seed).fit(Xt)
            gap = calibration_gap(-m.score_samples(Xt), -m.score_samples(Xv), q)
            self.selected.setdefault("grid", []).append({"max_samples": ms_eff, "calibration_gap": gap})
            if best is None or gap < best[0] - 1e-12:
                best = (gap, ms_eff, m)
        self.model = best[2]
        self.selected.update({"max_samples": best[1], "criterion": "held-out benign calibration gap"})

    def _score(self, x):
        return -self.model.score_samples(self.pre.transform(x.flow))


class OCSVMBaseline(Baseline):
    """One-Class SVM (Schoelkopf et al. 2001), RBF kernel: score = -decision_function (higher = anomalous).

    nu = ``nu`` (the target outlier fraction of benign train); gamma = g / (F var(X)) for g in
    ``gamma_scale_grid`` (1.0 is sklearn's "scale"); fitted on at most ``max_train`` benign train
    flows (a seeded subsample: the kernel solver is quadratic in n). The calibration level q is nu.
    """

    name = "ocsvm"
    view = "flow"
    description = "One-Class SVM (RBF) on flow statistics (signed log1p + robust scaling)"

    def _fit(self, train, val):
        p = self.params
        self.pre = SignedLogRobustScaler(p.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Xt, Xv = self.pre.transform(train.flow), self.pre.transform(val.flow)
        max_train = int(p.get("max_train", 5000))
        if len(Xt) > max_train:
            rng = np.random.default_rng(self.seed)
            Xt = Xt[np.sort(rng.choice(len(Xt), max_train, replace=False))]
            log.info("ocsvm: fitted on a seeded subsample of %d benign train flows", max_train)
        nu = float(p.get("nu", 0.05))
        base_gamma = 1.0 / (Xt.shape[1] * max(float(Xt.var()), 1e-12))
        best = None
        for g in p.get("gamma_scale_grid", [0.3, 1.0, 3.0]):
            m = OneClassSVM(kernel="rbf", nu=nu, gamma=base_gamma * float(g)).fit(Xt)
            gap = calibration_gap(-m.decision_function(Xt), -m.decision_function(Xv), nu)
            self.selected.setdefault("grid", []).append({"gamma_scale": float(g), "calibration_gap": gap})
            if best is None or gap < best[0] - 1e-12:
                best = (gap, float(g), m)
        self.model = best[2]
        self.selected.update({"gamma_scale": best[1], "nu": nu, "criterion": "held-out benign calibration gap"})

    def _score(self, x):
        return -self.model.decision_function(self.pre.transform(x.flow))
