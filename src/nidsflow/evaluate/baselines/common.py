"""What every baseline shares: the input views, preprocessing (flow statistics: ``nidsflow.scaling``) and
the Baseline interface (torch helpers are in ``nn_utils``, so the classical baselines load without torch).

A baseline sees benign train (to fit) and benign val (to choose hyper-parameters and stop early,
with a label-free criterion documented in its module); it never sees a label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nidsflow.scaling import SignedLogRobustScaler, signed_log1p  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


class BaselineError(ValueError):
    """A baseline cannot run on the given input (wrong view, too few rows, bad config)."""


@dataclass
class BaselineInput:
    """Row-aligned views of a set of flows. ``flow``: flow statistics [n, F] (float, may hold NaN/inf);
    ``packets``: channels [n, T, 9] (store.CHANNELS order) and ``lengths`` [n]; ``context``: the host-level
    context [n, 2, F] at each flow's first and last packet (``extract.context``); any may be None."""

    flow: np.ndarray | None = None
    packets: np.ndarray | None = None
    lengths: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    context: np.ndarray | None = None

    def __len__(self):
        for a in (self.flow, self.packets, self.context):
            if a is not None:
                return len(a)
        return 0

    def subset(self, idx) -> "BaselineInput":
        return BaselineInput(None if self.flow is None else self.flow[idx],
                             None if self.packets is None else self.packets[idx],
                             None if self.lengths is None else self.lengths[idx], self.feature_names,
                             None if self.context is None else self.context[idx])


class Baseline:
    """fit(train, val) on benign flows only; score(x) -> higher = more anomalous.

    ``view`` is "flow" (flow statistics), "packets" (packet sequences), "packets+flow" (both) or "context"
    (the Kitsune context of each flow's first and last packet);
    ``selected`` records the hyper-parameters chosen on benign val and the criterion values, for the run's auroc.json.
    """

    name = "base"
    view = "flow"
    description = ""
    #: The hyper-parameters' defaults (a module's ``DEFAULTS``); ``params`` override them, :meth:`_get` reads one.
    defaults: dict = {}

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.params = params
        self.selected: dict = {}

    def _get(self, key):
        return self.params.get(key, self.defaults[key])

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
        if "context" in self.view.split("+") and x.context is None:
            raise BaselineError(f"{self.name}: needs the host-level context ({what} input has none)")
        if what == "train" and len(x) < 10:
            raise BaselineError(f"{self.name}: needs at least 10 benign training flows, got {len(x)}")

    def parameter_count(self) -> tuple[int | None, str]:
        """(count, what is counted) of the fitted model; see :func:`parameter_record`. The default counts
        every parameter of the torch modules the fitted baseline holds as attributes (``count_parameters``);
        classical detectors override it with the values they store to score."""
        modules = [v for v in vars(self).values() if callable(getattr(v, "named_parameters", None))]
        if not modules:
            return None, "n/a"
        return count_parameters(*modules), "network parameters (every weight of the fitted networks)"

    def _fit(self, train: BaselineInput, val: BaselineInput) -> None:
        raise NotImplementedError

    def _score(self, x: BaselineInput) -> np.ndarray:
        raise NotImplementedError


#: Relative margins under which two benign-val criteria (lower = better) count as equal: a later grid
#: point must beat the kept one by GRID_RTOL, a later epoch the best so far by EPOCH_RTOL (``improves``).
GRID_RTOL = 1e-2
EPOCH_RTOL = 1e-4


def improves(new: float, best: float, rtol: float) -> bool:
    """True when ``new`` beats ``best`` (lower = better) by more than rtol * max(|best|, 1).

    Near-ties decided by the last digits are what turns a float difference between two CPUs (another
    SIMD path in a matrix product) into a different model: with a margin, ties keep the earlier
    choice (the first grid point, the earlier epoch), deterministically, and a real improvement
    still wins.
    """
    return bool(np.isfinite(new)) and (not np.isfinite(best) or new < best - rtol * max(abs(best), 1.0))


def select_on_grid(selected: dict, key: str, values, fit_one, better=None) -> tuple:
    """The label-free grid search on benign val: ``fit_one(value) -> (criterion, model, record)`` per value,
    in order; ``{key: value, **record}`` is appended to ``selected["grid"]``. The best value has the lowest
    criterion, a later one winning only by GRID_RTOL (:func:`improves`), unless ``better(new, best)``
    decides. Returns (best value, its model, its criterion)."""
    best = None
    for value in values:
        crit, model, record = fit_one(value)
        selected.setdefault("grid", []).append({key: value, **record})
        if best is None or (better(crit, best[0]) if better is not None else improves(crit, best[0], GRID_RTOL)):
            best = (crit, value, model)
    return best[1], best[2], best[0]


def count_parameters(*modules, trainable_only: bool = False) -> int:
    """Number of scalar parameters of torch modules, each tensor counted once even when shared
    (``trainable_only``: only those with requires_grad)."""
    seen: dict[int, int] = {}
    for m in modules:
        for p in m.parameters():
            if not trainable_only or p.requires_grad:
                seen[id(p)] = int(p.numel())
    return sum(seen.values())


def parameter_record(model: Baseline) -> dict:
    """What a run records of a fitted baseline's size (auroc.json; the within table's "params" column):
    {"n_parameters": int or None, "parameter_count": what is counted}. Deep baselines: every weight of
    their fitted networks (``Baseline.parameter_count``'s default); classical ones: the values they
    store to score (their ``parameter_count``), e.g. support vectors x dims."""
    n, what = model.parameter_count()
    return {"n_parameters": None if n is None else int(n), "parameter_count": str(what)}


# ---------------------------------------------------------------- preprocessing

#: The one flow-feature preprocessing (signed log1p -> median/IQR of benign train -> clip), shared by
#: every flow-feature baseline; the old name is kept for code that imports it from here.
FlowPreprocessor = SignedLogRobustScaler


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
