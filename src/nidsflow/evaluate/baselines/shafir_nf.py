"""The "Shafir" row: a normalising flow (RealNVP) on a few flow statistics selected by a Shapley-like
importance ranking computed without attack labels.

Feature ranking (label free). Shafir et al. select features with SHAP values of a classifier; we have
no attack labels, so the classifier separates benign train flows (class 1) from the same flows with
every column independently permuted (class 0: the product of the benign marginals). A random forest
learns where benign traffic's joint structure lives; each feature's importance is its permutation
importance (mean drop of ROC AUC when the column is shuffled, a model-agnostic estimate of its
marginal contribution) on benign val vs its own column-permuted copy; features without a clear
permutation importance are ranked by the forest's impurity importance (:func:`importance_order`). The ``top_k`` (default 5, as in Shafir) highest-ranked
features are kept. ``features`` in the config overrides the ranking.

Density model: RealNVP (Dinh et al. 2017) with affine coupling layers on alternating masks,
y_{1-b} = x_{1-b} * exp(s(x_b)) + t(x_b), log p(x) = log N(z; 0, I) + sum_layers sum s (Eq. 3-6
of the paper); s uses tanh for stability; inputs standardised on benign train; small Gaussian
dequantisation noise during training (flow statistics have many ties). Score = -log p(x).

Label-free choices on benign val: the epoch with the lowest val NLL (early stopping) and the
number of coupling layers from ``n_layers_grid`` with the lowest val NLL (likelihoods are comparable;
a later grid point must be better by a 1 % margin, common.improves, so near-ties keep the first).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, BaselineError, SignedLogRobustScaler, select_on_grid
from nidsflow.evaluate.baselines.nn_utils import count_parameters, seed_torch, train_early_stopping

log = logging.getLogger(__name__)


def column_permuted(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each column shuffled independently: a sample of the product of the marginals."""
    return np.stack([X[rng.permutation(len(X)), j] for j in range(X.shape[1])], axis=1)


def rank_features_label_free(Xt: np.ndarray, Xv: np.ndarray, seed: int, n_estimators: int = 50,
                             n_repeats: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permutation importance (mean, std over the repeats) and impurity importance [F] of a
    benign-vs-product-of-marginals forest."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([Xt, column_permuted(Xt, rng)])
    y = np.r_[np.ones(len(Xt)), np.zeros(len(Xt))]
    clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=8, min_samples_leaf=5, n_jobs=1,
                                 random_state=seed).fit(X, y)
    Xe = np.concatenate([Xv, column_permuted(Xv, rng)])
    ye = np.r_[np.ones(len(Xv)), np.zeros(len(Xv))]
    r = permutation_importance(clf, Xe, ye, scoring="roc_auc", n_repeats=n_repeats, random_state=seed, n_jobs=1)
    return r.importances_mean, r.importances_std, clf.feature_importances_


def importance_order(perm_mean: np.ndarray, perm_std: np.ndarray, mdi: np.ndarray,
                     min_importance: float = 1e-3) -> np.ndarray:
    """Features with a clear permutation importance (mean > max(2 std over the repeats, ``min_importance``))
    first, by that importance; the rest by impurity importance; remaining ties by column order.

    When the forest separates benign from the product of marginals through several redundant features,
    shuffling any single one costs no AUC: the permutation importances are ~0 and the ranking would fall
    back to column order. The impurity importance shares the credit among redundant features, as
    Shapley values would. ``min_importance`` (in ROC AUC) keeps a permutation importance of the size of a
    few flipped pairs (1e-6 on cic17_flows, where both repeats gave the same flip, std 0) from counting
    as clear: such values, and the ranking with them, change with the last digits of the inputs. Keys
    are rounded (AUC to 1e-4, impurity to 1e-6) before sorting, so float noise cannot reorder them.
    """
    clear = (perm_mean > 2 * perm_std) & (perm_mean > min_importance)
    cols = np.arange(len(mdi))
    return np.lexsort((cols, -np.round(mdi, 6), -np.round(np.where(clear, perm_mean, 0.0), 4)))


class _Coupling(nn.Module):
    def __init__(self, mask, hidden):
        super().__init__()
        d = len(mask)
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * d))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):  # x -> z direction, returns (y, log|det J|)
        s, t = self.net(x * self.mask).chunk(2, dim=-1)
        s = torch.tanh(s) * (1 - self.mask)
        t = t * (1 - self.mask)
        return x * torch.exp(s) + t, s.sum(-1)


class RealNVP(nn.Module):
    def __init__(self, d, n_layers, hidden):
        super().__init__()
        base = torch.arange(d) % 2
        self.layers = nn.ModuleList(
            _Coupling((base if i % 2 == 0 else 1 - base).float(), hidden) for i in range(n_layers))
        if d == 1:
            raise BaselineError("RealNVP needs at least 2 features")

    def log_prob(self, x):
        logdet = torch.zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return -0.5 * (x.pow(2).sum(-1) + x.shape[1] * math.log(2 * math.pi)) + logdet


class ShafirNFBaseline(Baseline):
    name = "shafir_nf"
    view = "flow"
    description = "RealNVP on label-free SHAP-like-selected flow statistics (Shafir-style)"

    def n_parameters(self, T: int = 0, n_flow: int = 0) -> int:
        """Parameters of the RealNVP on ``top_k`` selected features, at the grid's most coupling layers."""
        p = self.params
        d = min(int(p.get("top_k", 5)), n_flow) if not p.get("features") else len(p["features"])
        layers = max(int(v) for v in p.get("n_layers_grid", [4, 8]))
        return count_parameters(RealNVP(d, layers, int(p.get("hidden", 64))))

    def _fit(self, train, val):
        p = self.params
        self.pre = SignedLogRobustScaler(p.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Xt, Xv = self.pre.transform(train.flow), self.pre.transform(val.flow)
        names = [str(n) for n in self.pre.names_] or [f"f{i}" for i in range(Xt.shape[1])]
        fixed = p.get("features")
        if fixed:
            unknown = [f for f in fixed if f not in names]
            if unknown:
                raise BaselineError(f"shafir_nf: configured features {unknown} are not (non-constant) flow features")
            self.cols_ = np.array([names.index(f) for f in fixed])
            self.selected["ranking"] = "configured"
        else:
            imp, imp_std, mdi = rank_features_label_free(Xt, Xv, self.seed, int(p.get("rf_trees", 50)),
                                                         int(p.get("perm_repeats", 3)))
            order = importance_order(imp, imp_std, mdi, float(p.get("min_permutation_importance", 1e-3)))
            self.cols_ = order[:min(int(p.get("top_k", 5)), len(order))]
            self.selected["ranking"] = ("permutation importance where clear (mean > 2 std and > "
                                        "min_permutation_importance), else impurity importance, benign vs "
                                        "product-of-marginals forest")
            self.selected["importance"] = {names[i]: {"permutation": float(imp[i]), "impurity": float(mdi[i])}
                                           for i in order[:10]}
        if len(self.cols_) < 2:
            raise BaselineError("shafir_nf: needs at least 2 non-constant flow features")
        self.selected["features"] = [names[i] for i in self.cols_]
        Zt, Zv = Xt[:, self.cols_], Xv[:, self.cols_]
        self.mu_, self.sd_ = Zt.mean(0), np.maximum(Zt.std(0), 1e-3)
        Tt = torch.from_numpy(((Zt - self.mu_) / self.sd_).astype(np.float32))
        Tv = torch.from_numpy(((Zv - self.mu_) / self.sd_).astype(np.float32))
        noise = float(p.get("dequant_noise", 0.05))

        def fit_one(n_layers):
            gen = seed_torch(self.seed)
            flow = RealNVP(Tt.shape[1], n_layers, int(p.get("hidden", 64)))

            def step(idx):
                x = Tt[idx] + noise * torch.randn(Tt[idx].shape, generator=gen)
                return -flow.log_prob(x).mean()

            crit, epoch = train_early_stopping(flow, step, lambda: -flow.log_prob(Tv).mean(), len(Tt),
                                               int(p.get("epochs", 60)), int(p.get("batch_size", 128)),
                                               float(p.get("lr", 2e-3)), self.seed, int(p.get("patience", 8)))
            return crit, flow, {"val_nll": crit, "best_epoch": epoch}

        n_layers, self.flow, _ = select_on_grid(self.selected, "n_layers",
                                                [int(v) for v in p.get("n_layers_grid", [4, 8])], fit_one)
        self.selected.update({"n_layers": n_layers, "criterion": "benign val negative log-likelihood"})

    @torch.no_grad()
    def _score(self, x):
        Z = (self.pre.transform(x.flow)[:, self.cols_] - self.mu_) / self.sd_
        return -self.flow.log_prob(torch.from_numpy(Z.astype(np.float32))).numpy()
