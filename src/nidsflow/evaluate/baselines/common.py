"""What every baseline shares: the input views, preprocessing for heavy-tailed traffic statistics and
the Baseline interface (torch helpers are in ``nn_utils``, so the classical baselines load without torch).

A baseline sees benign train (to fit) and benign val (to choose hyper-parameters and stop early,
with a label-free criterion documented in its module); it never sees a label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class BaselineError(ValueError):
    """A baseline cannot run on the given input (wrong view, too few rows, bad config)."""


@dataclass
class BaselineInput:
    """Row-aligned views of a set of flows. ``flow``: flow statistics [n, F] (float, may hold NaN/inf);
    ``packets``: channels [n, T, 9] (store.CHANNELS order) and ``lengths`` [n]; either may be None."""

    flow: np.ndarray | None = None
    packets: np.ndarray | None = None
    lengths: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()

    def __len__(self):
        if self.flow is not None:
            return len(self.flow)
        if self.packets is not None:
            return len(self.packets)
        return 0

    def subset(self, idx) -> "BaselineInput":
        return BaselineInput(None if self.flow is None else self.flow[idx],
                             None if self.packets is None else self.packets[idx],
                             None if self.lengths is None else self.lengths[idx], self.feature_names)


class Baseline:
    """fit(train, val) on benign flows only; score(x) -> higher = more anomalous.

    ``view`` is "flow" (flow statistics), "packets" (packet sequences) or "packets+flow" (both);
    ``selected`` records the hyper-parameters chosen on benign val and the criterion values, for the run's auroc.json.
    """

    name = "base"
    view = "flow"
    description = ""

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.params = params
        self.selected: dict = {}

    def fit(self, train: BaselineInput, val: BaselineInput | None = None) -> "Baseline":
        self._check(train, "train")
        if val is None:
            # no separate benign val given: hold out 20 % of train (seeded) for the label-free choices
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(len(train))
            k = max(1, len(train) // 5)
            train, val = train.subset(np.sort(perm[k:])), train.subset(np.sort(perm[:k]))
        self._check(val, "val")
        self._fit(train, val)
        return self

    def score(self, x: BaselineInput) -> np.ndarray:
        self._check(x, "score")
        return np.asarray(self._score(x), dtype=np.float64)

    def _check(self, x: BaselineInput, what: str):
        if "flow" in self.view.split("+") and x.flow is None:
            raise BaselineError(f"{self.name}: needs flow features ({what} input has none)")
        if "packets" in self.view.split("+") and x.packets is None:
            raise BaselineError(f"{self.name}: needs packet sequences ({what} input has none)")
        if what == "train" and len(x) < 10:
            raise BaselineError(f"{self.name}: needs at least 10 benign training flows, got {len(x)}")

    def _fit(self, train: BaselineInput, val: BaselineInput) -> None:
        raise NotImplementedError

    def _score(self, x: BaselineInput) -> np.ndarray:
        raise NotImplementedError


# ---------------------------------------------------------------- preprocessing

def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): compresses the heavy tails of byte/packet counts, rates and durations."""
    return np.sign(x) * np.log1p(np.abs(x))


class FlowPreprocessor:
    """Flow statistics -> signed log1p -> robust scaling (median / IQR of benign train) -> clip.

    Non-finite values become the benign-train median of their column (counted in the log);
    columns constant on benign train are dropped (they carry no information for a one-class model).
    """

    def __init__(self, clip: float = 20.0):
        self.clip = float(clip)

    def fit(self, X: np.ndarray, feature_names=()) -> "FlowPreprocessor":
        X = signed_log1p(np.where(np.isfinite(X), X, np.nan).astype(np.float64))
        n_bad = int(np.isnan(X).sum())
        if n_bad:
            log.info("flow preprocessing: %d non-finite values in benign train replaced by the column median", n_bad)
        med = np.nanmedian(X, axis=0)
        med = np.where(np.isfinite(med), med, 0.0)
        Xf = np.where(np.isnan(X), med, X)
        q1, q3 = np.percentile(Xf, [25, 75], axis=0)
        scale = q3 - q1
        std = Xf.std(axis=0)
        scale = np.where(scale > 1e-9, scale, std)  # IQR 0 (mostly one value): fall back to the std
        self.keep_ = scale > 1e-9
        if (~self.keep_).any():
            names = [feature_names[i] for i in np.nonzero(~self.keep_)[0]] if len(feature_names) else []
            log.info("flow preprocessing: %d constant columns dropped %s", int((~self.keep_).sum()), names[:20])
        if not self.keep_.any():
            raise BaselineError("flow preprocessing: every flow feature is constant on benign train")
        self.median_, self.scale_ = med, np.where(self.keep_, scale, 1.0)
        self.names_ = tuple(np.asarray(feature_names)[self.keep_]) if len(feature_names) else ()
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = signed_log1p(np.where(np.isfinite(X), X, np.nan).astype(np.float64))
        X = np.where(np.isnan(X), self.median_, X)
        Z = (X - self.median_) / self.scale_
        return np.clip(Z[:, self.keep_], -self.clip, self.clip).astype(np.float32)


class PacketPreprocessor:
    """Packet channels -> log1p of size, inter-arrival time (in ms) and TCP window, standardised over
    the valid packets of benign train; binary channels kept as 0/1; padding (beyond the true
    length, or beyond T) set to 0 and returned as a mask."""

    def fit(self, packets: np.ndarray, lengths: np.ndarray) -> "PacketPreprocessor":
        c, valid = self._continuous(packets, lengths)
        v = c[valid]
        self.mean_ = v.mean(axis=0) if len(v) else np.zeros(3)
        self.std_ = np.maximum(v.std(axis=0) if len(v) else np.ones(3), 1e-6)
        return self

    @staticmethod
    def _continuous(packets, lengths):
        T = packets.shape[1]
        valid = np.arange(T)[None, :] < np.minimum(np.asarray(lengths), T)[:, None]
        c = np.stack([np.log1p(np.maximum(packets[..., 0], 0)),
                      np.log1p(np.maximum(packets[..., 1], 0) * 1e3),
                      np.log1p(np.maximum(packets[..., 2], 0))], axis=-1).astype(np.float64)
        return c, valid

    def transform(self, packets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens float32 [n, T, 9], valid mask bool [n, T])."""
        c, valid = self._continuous(packets, lengths)
        c = (c - self.mean_) / self.std_
        x = np.concatenate([c, np.asarray(packets[..., 3:], dtype=np.float64)], axis=-1)
        x[~valid] = 0.0
        return np.clip(x, -20, 20).astype(np.float32), valid


def flow_matrix(features: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """The numeric flow-statistic columns of a store's flow_features as float64 (non-numeric ones logged and left out)."""
    numeric = features.select_dtypes(include=[np.number, "bool"])
    dropped = [c for c in features.columns if c not in numeric.columns]
    if dropped:
        log.info("flow features: %d non-numeric columns left out: %s", len(dropped), dropped[:20])
    if numeric.shape[1] == 0:
        raise BaselineError("flow features: no numeric column")
    return numeric.to_numpy(dtype=np.float64), tuple(numeric.columns)
