"""Kitsune (Mirsky et al., NDSS 2018): KitNET, an ensemble of small autoencoders, over the per-packet
host-level context of :mod:`nidsflow.capture.context` (the same kernel as ``extract.context``; its 115
Kitsune features, ``KITSUNE_FEATURE_NAMES``, not the destination-host group we add).

KitNET, as the paper (section IV-C/D) and the authors' reference code (ymirsky/Kitsune-py, ``KitNET/``;
read, not copied) define it:

1. **Feature mapper** over the feature-map grace period: the incremental correlation of the features
   (residuals r_k = x_k - running mean, C = sum r r^T, D = 1 - C / sqrt(diag C diag C^T), D >= 0; a
   constant feature is at distance 1 from every other), single-linkage agglomerative clustering of D,
   and the dendrogram cut top-down until every cluster has at most ``m`` features. The clusters are a
   partition of the features.
2. **Ensemble layer**: one autoencoder per cluster, tied weights, hidden size ceil(0.75 n_visible),
   sigmoid encoder and decoder, weights U(-1/n_visible, 1/n_visible), zero biases; inputs min-max
   normalised with the minimum and maximum seen in training so far; trained online, one packet at a time,
   by SGD (learning rate 0.1) on the squared reconstruction error; its output is the RMSE.
3. **Output layer**: an autoencoder of the same kind over the vector of ensemble RMSEs; its RMSE is the
   packet's anomaly score.

Which packets: the store keeps a flow's context at its first and its last packet (``extract.context``),
so a flow contributes those packets (one when the flow has one packet): KitNET is trained on the benign
train flows' first and last packets, in flow order, and a flow's score is the largest RMSE of its packets
(``kitsune``) or their mean (``kitsune_mean``). The original scores every packet of the link; here the
per-packet context is that of the whole capture's stream at each of those packets, but the packets in
between are neither trained on nor scored.

Grace periods scaled to the train size: the paper's example runs FMgrace = 5 000 then ADgrace = 50 000
packets, so the first 1/11 of the training packets (at least m + 1) learn the feature map and the rest
train the autoencoders; when those are fewer than the paper's 50 000, they are passed
again (same order) until about 50 000 updates are done, at most ``max_epochs`` passes.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from nidsflow.capture.context import KITSUNE_FEATURE_NAMES
from nidsflow.evaluate.baselines.common import Baseline, BaselineError, BaselineInput

DEFAULTS = {"m": 10, "hidden_ratio": 0.75, "lr": 0.1, "fm_fraction": 5000 / 55000, "ad_updates": 50000,
            "max_epochs": 10}


# ------------------------------------------------------------------------------------- feature mapper


def correlation_distance(x: np.ndarray) -> np.ndarray:
    """KitNET's incremental correlation distance of the columns of x [N, n] (residuals against the running
    mean, as corClust accumulates them), vectorised."""
    x = np.asarray(x, np.float64)
    k = np.arange(1, len(x) + 1, dtype=np.float64)[:, None]
    r = x - np.cumsum(x, axis=0) / k
    c = r.T @ r
    s = np.sqrt(np.einsum("ij,ij->j", r, r))
    denom = np.outer(s, s)
    denom[denom == 0] = 1e-100  # a constant feature: correlation 0, distance 1
    d = 1.0 - c / denom
    d[d < 0] = 0.0
    return d


def feature_map(x: np.ndarray, m: int) -> list[np.ndarray]:
    """Clusters (feature index arrays) of at most m features: single linkage on the correlation distance,
    the dendrogram broken top-down until every cluster is small enough (leaves in pre-order)."""
    from scipy.cluster.hierarchy import linkage, to_tree

    n = x.shape[1]
    m = max(1, min(int(m), n))
    if n == 1:
        return [np.array([0])]
    d = correlation_distance(x)
    d = (d + d.T) / 2  # exact symmetry: the condensed form reads the upper triangle
    tree = to_tree(linkage(d[np.triu_indices(n, 1)], method="single"))
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if node.count <= m:
            out.append(np.array(sorted(node.pre_order()), dtype=np.int64))
        else:
            todo += [node.get_right(), node.get_left()]  # left first, as the recursion
    return out


# ------------------------------------------------------------------------------------- autoencoders


@nb.njit(cache=True, inline="always")
def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@nb.njit(cache=True)
def _ae_step(W, hb, vb, nmin, nmax, x, nv, nh, lr, y, z, e, g):
    """One online SGD step of a tied-weight sigmoid autoencoder on x[:nv] (normalised with the running
    min/max, updated first); returns the RMSE before the step. y, z, e, g: scratch vectors."""
    for i in range(nv):
        if x[i] > nmax[i]:
            nmax[i] = x[i]
        if x[i] < nmin[i]:
            nmin[i] = x[i]
        x[i] = (x[i] - nmin[i]) / (nmax[i] - nmin[i] + 1e-16)
    for j in range(nh):
        a = hb[j]
        for i in range(nv):
            a += x[i] * W[i, j]
        y[j] = _sigmoid(a)
    se = 0.0
    for i in range(nv):
        a = vb[i]
        for j in range(nh):
            a += y[j] * W[i, j]
        z[i] = _sigmoid(a)
        e[i] = x[i] - z[i]
        se += e[i] * e[i]
    for j in range(nh):  # gradient at the hidden layer, with the weights before the step
        a = 0.0
        for i in range(nv):
            a += e[i] * W[i, j]
        g[j] = a * y[j] * (1.0 - y[j])
    for i in range(nv):
        for j in range(nh):
            W[i, j] += lr * (x[i] * g[j] + e[i] * y[j])
        vb[i] += lr * e[i]
    for j in range(nh):
        hb[j] += lr * g[j]
    return np.sqrt(se / nv)


@nb.njit(cache=True)
def _train(X, order, idx, nv, nh, W, hb, vb, nmin, nmax, oW, ohb, ovb, onmin, onmax, onh, lr, rmse_out):
    """Online KitNET training on the rows X[order] (ensemble then output layer, packet by packet);
    rmse_out[k] = the output layer's training RMSE of the k-th update."""
    A = idx.shape[0]
    mx = idx.shape[1]
    hx = W.shape[2]
    x = np.empty(mx)
    y, z, e, g = np.empty(max(hx, onh)), np.empty(max(mx, A)), np.empty(max(mx, A)), np.empty(max(hx, onh))
    s = np.empty(A)
    for k in range(order.shape[0]):
        r = order[k]
        for a in range(A):
            for i in range(nv[a]):
                x[i] = X[r, idx[a, i]]
            s[a] = _ae_step(W[a], hb[a], vb[a], nmin[a], nmax[a], x, nv[a], nh[a], lr, y, z, e, g)
        rmse_out[k] = _ae_step(oW, ohb, ovb, onmin, onmax, s, A, onh, lr, y, z, e, g)


def _ae_rmse(x, W, hb, vb, nmin, nmax):
    """Execute-mode RMSE of each row of x [N, nv] (training min/max, no update)."""
    xn = (x - nmin) / (nmax - nmin + 1e-16)
    y = 1.0 / (1.0 + np.exp(-(xn @ W + hb)))
    z = 1.0 / (1.0 + np.exp(-(y @ W.T + vb)))
    return np.sqrt(((xn - z) ** 2).mean(axis=1))


class KitNET:
    """KitNET fitted in one call on the training packets (rows of X, in stream order)."""

    def __init__(self, m: int = 10, hidden_ratio: float = 0.75, lr: float = 0.1, seed: int = 0):
        self.m, self.hidden_ratio, self.lr, self.seed = int(m), float(hidden_ratio), float(lr), int(seed)

    def fit(self, X: np.ndarray, n_fm: int, epochs: int = 1) -> "KitNET":
        X = np.ascontiguousarray(X, np.float64)
        if not np.isfinite(X).all():
            raise BaselineError("kitsune: non-finite context features")
        if not 1 < n_fm < len(X):
            raise BaselineError(f"kitsune: {len(X)} training packets cannot give a feature-map grace period "
                                f"of {n_fm} and autoencoder training after it")
        self.clusters = feature_map(X[:n_fm], self.m)
        A = len(self.clusters)
        rng = np.random.default_rng(self.seed)
        nv = np.array([len(c) for c in self.clusters], np.int64)
        nh = np.array([math.ceil(v * self.hidden_ratio) for v in nv], np.int64)
        mx, hx = int(nv.max()), int(nh.max())
        idx = np.zeros((A, mx), np.int64)
        W = np.zeros((A, mx, hx))
        for a, c in enumerate(self.clusters):
            idx[a, :len(c)] = c
            W[a, :nv[a], :nh[a]] = rng.uniform(-1.0 / nv[a], 1.0 / nv[a], (nv[a], nh[a]))
        hb, vb = np.zeros((A, hx)), np.zeros((A, mx))
        nmin, nmax = np.full((A, mx), np.inf), np.full((A, mx), -np.inf)
        onh = math.ceil(A * self.hidden_ratio)
        oW = rng.uniform(-1.0 / A, 1.0 / A, (A, onh))
        ohb, ovb = np.zeros(onh), np.zeros(A)
        onmin, onmax = np.full(A, np.inf), np.full(A, -np.inf)
        order = np.tile(np.arange(n_fm, len(X), dtype=np.int64), int(epochs))
        self.train_rmse = np.zeros(len(order))
        _train(X, order, idx, nv, nh, W, hb, vb, nmin, nmax, oW, ohb, ovb, onmin, onmax, onh, self.lr,
               self.train_rmse)
        self.ensemble = [(W[a, :nv[a], :nh[a]].copy(), hb[a, :nh[a]].copy(), vb[a, :nv[a]].copy(),
                          nmin[a, :nv[a]].copy(), nmax[a, :nv[a]].copy()) for a in range(A)]
        self.output = (oW, ohb, ovb, onmin, onmax)
        return self

    def ensemble_rmse(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        return np.stack([_ae_rmse(X[:, c], *p) for c, p in zip(self.clusters, self.ensemble)], axis=1)

    def score(self, X: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Anomaly score (the output autoencoder's RMSE) of each row of X."""
        out = np.empty(len(X))
        for lo in range(0, len(X), batch):
            out[lo:lo + batch] = _ae_rmse(self.ensemble_rmse(X[lo:lo + batch]), *self.output)
        return out

    @property
    def n_parameters(self) -> int:
        return int(sum(W.size + hb.size + vb.size for W, hb, vb, _, _ in self.ensemble)
                   + sum(p.size for p in self.output[:3]))


# ------------------------------------------------------------------------------------- baseline


def flow_packets(context: np.ndarray, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Packets of each flow from its [n, 2, F] context (first, last): rows [P, F] in flow order (first,
    then last unless it is the same packet), and the flow of each row; ``n_features``: keep the first ones."""
    context = np.asarray(context, np.float64)
    if n_features is not None:
        context = context[:, :, :n_features]
    n = len(context)
    distinct = ~(context[:, 0] == context[:, 1]).all(axis=1)
    rows = np.concatenate([context[:, 0][:, None], context[:, 1][:, None]], axis=1).reshape(2 * n, -1)
    keep = np.ones(2 * n, bool)
    keep[1::2] = distinct
    return rows[keep], np.repeat(np.arange(n), 2)[keep]


class KitsuneBaseline(Baseline):
    name = "kitsune"
    view = "context"
    description = ("Kitsune (Mirsky et al., NDSS 2018): KitNET (correlation feature map, autoencoders of at "
                   "most m inputs, output autoencoder, online SGD) on the Kitsune context of each flow's first "
                   "and last packet; flow score = max packet RMSE")
    defaults = DEFAULTS
    aggregate = "max"

    def _fit(self, train: BaselineInput, val: BaselineInput) -> None:
        X, _ = flow_packets(train.context, len(KITSUNE_FEATURE_NAMES))
        n = len(X)
        m = int(self._get("m"))
        n_fm = max(m + 1, int(round(float(self._get("fm_fraction")) * n)))
        n_ad = n - n_fm
        if n_ad < 1:
            raise BaselineError(f"kitsune: {n} benign training packets are too few (feature map needs {n_fm})")
        epochs = int(min(int(self._get("max_epochs")), max(1, math.ceil(int(self._get("ad_updates")) / n_ad))))
        self.model = KitNET(m, float(self._get("hidden_ratio")), float(self._get("lr")), self.seed).fit(X, n_fm, epochs)
        self.selected = {"train_packets": int(n), "fm_grace": int(n_fm), "ad_grace": int(n_ad), "epochs": epochs,
                         "autoencoders": len(self.model.clusters),
                         "largest_cluster": int(max(len(c) for c in self.model.clusters)),
                         "aggregate": self.aggregate}

    def _score(self, x: BaselineInput) -> np.ndarray:
        X, flow = flow_packets(x.context, len(KITSUNE_FEATURE_NAMES))
        s = self.model.score(X)
        out = np.full(len(x), -np.inf) if self.aggregate == "max" else np.zeros(len(x))
        if self.aggregate == "max":
            np.maximum.at(out, flow, s)
        else:
            np.add.at(out, flow, s)
            out /= np.bincount(flow, minlength=len(x))
        return out

    def parameter_count(self) -> tuple[int | None, str]:
        return self.model.n_parameters, "autoencoder weights and biases (ensemble + output layer)"


class KitsuneMeanBaseline(KitsuneBaseline):
    name = "kitsune_mean"
    description = KitsuneBaseline.description.replace("max packet RMSE", "mean packet RMSE")
    aggregate = "mean"
