"""Baselines run on exactly JANUS's splits: each a class with fit(benign train, benign val) / score(x).

``BASELINES`` maps a built method's name to the view it needs (``baseline_class`` loads its class); ``NOT_RUN`` names the seed's baselines we do not
build, with the reason (their table rows say "not run"). ``run_baseline`` wires a store and a
split to a baseline and returns a ScoreTable (val + test rows, one column "score").
"""

from __future__ import annotations

import contextlib

import importlib
import logging
import time

import numpy as np

from nidsflow.evaluate.baselines.common import (Baseline, BaselineError, BaselineInput, flow_matrix,
                                               parameter_record)
from nidsflow.scores import ScoreTable

log = logging.getLogger(__name__)

#: method -> (module, class, view). Modules load on first use, so the classical baselines (and the
#: tables, which only need the names) never import torch.
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "iforest": ("classical", "IsolationForestBaseline", "flow"),
    "ocsvm": ("classical", "OCSVMBaseline", "flow"),
    "knn": ("classical", "KNNBaseline", "flow"),
    "lof": ("classical", "LOFBaseline", "flow"),
    "ecod": ("classical", "ECODBaseline", "flow"),
    "copod": ("classical", "COPODBaseline", "flow"),
    "ganomaly": ("ganomaly", "GANomalyBaseline", "flow"),
    "anoformer": ("masked", "AnoFormerBaseline", "packets"),
    "mmr": ("masked", "MMRBaseline", "flow"),
    "stfpm": ("student_teacher", "STFPMBaseline", "packets"),
    "shafir_nf": ("shafir_nf", "ShafirNFBaseline", "flow"),
    "tslanet": ("tslanet", "TSLANetBaseline", "packets"),
    "arcade": ("arcade", "ARCADEBaseline", "packets"),
    "mfad": ("mfad", "MFADBaseline", "packets+flow"),
    "conmd": ("conmd", "ConMDBaseline", "packets+flow"),
    "rd4ad": ("rd4ad", "RD4ADBaseline", "packets"),
    "kitsune": ("kitsune", "KitsuneBaseline", "context"),
    "kitsune_mean": ("kitsune", "KitsuneMeanBaseline", "context"),
}
#: Each classical detector's twin on the flow statistics plus the host-level context (``features: flow+context``
#: under its own name, so one study reports both rows): ``knn_context`` is kNN with context, and so on.
CONTEXT_TWINS: dict[str, str] = {f"{m}_context": m for m, v in _REGISTRY.items() if v[0] == "classical"}
_REGISTRY.update({twin: _REGISTRY[m] for twin, m in CONTEXT_TWINS.items()})
#: The built baselines: method -> the view it needs ("flow" statistics, "packets" sequences, or both: "packets+flow";
#: "context": the host-level context of extract.context).
BASELINES: dict[str, str] = {m: v[2] for m, v in _REGISTRY.items()}


def baseline_class(method: str) -> type[Baseline]:
    if method not in _REGISTRY:
        raise BaselineError(f"unknown baseline {method!r}; known: {sorted(_REGISTRY)}")
    module, cls, _ = _REGISTRY[method]
    return getattr(importlib.import_module(f"nidsflow.evaluate.baselines.{module}"), cls)


def is_deep(method: str) -> bool:
    """A built baseline trained by gradient descent (its per-epoch losses go to auroc.json's loss_history)."""
    return method in _REGISTRY and _REGISTRY[method][0] != "classical"


#: Baselines of the seed's table that are not built, and why (rows say "not run").
NOT_RUN: dict[str, str] = {}

#: Display names for tables.
DISPLAY = {"iforest": "Isolation Forest", "ocsvm": "OCSVM", "ganomaly": "GANomaly", "anoformer": "AnoFormer-style",
           "mmr": "MMR-style", "stfpm": "STFPM-style", "shafir_nf": "Shafir-style NF (label-free SHAP-like)",
           "knn": "kNN (mean distance)", "lof": "LOF", "ecod": "ECOD", "copod": "COPOD",
           "tslanet": "TSLANet-style", "arcade": "ARCADE-style", "mfad": "MFAD-style", "conmd": "ConMD-style",
           "rd4ad": "RD4AD", "kitsune": "Kitsune (max over packets)", "kitsune_mean": "Kitsune (mean over packets)"}
DISPLAY.update({twin: f"{DISPLAY[m]} + context" for twin, m in CONTEXT_TWINS.items()})

ALL_METHODS: tuple[str, ...] = tuple(BASELINES) + tuple(NOT_RUN)


def make_baseline(method: str, seed: int, params: dict | None = None) -> Baseline:
    if method in NOT_RUN:
        raise BaselineError(f"baseline {method!r} is not run: {NOT_RUN[method]}")
    if method not in BASELINES:
        raise BaselineError(f"unknown baseline {method!r}; known: {sorted(ALL_METHODS)}")
    return baseline_class(method)(seed=seed, **(params or {}))


#: ``baselines.<method>.features`` of a flow-feature baseline: its flow statistics alone, or with the
#: host-level context of the flow's first and last packet appended (``extract.context``).
FEATURE_SETS = ("flow", "flow+context")


def method_params(baselines_cfg: dict, method: str) -> dict:
    """A method's config block (``baselines.<method>``); a context twin without its own block takes its
    detector's, so both rows are tuned alike."""
    own = baselines_cfg.get(method)
    if own is None and method in CONTEXT_TWINS:
        own = baselines_cfg.get(CONTEXT_TWINS[method])
    return dict(own or {})


def feature_set(method: str, params: dict | None) -> str:
    """The flow-feature set a run of ``method`` uses: ``features`` of the classical detectors (the
    methods of ``classical.py``; shafir_nf's ``features`` is its own list of feature names), else "flow";
    always "flow+context" for a context twin (:data:`CONTEXT_TWINS`)."""
    if method in CONTEXT_TWINS:
        return "flow+context"
    if _REGISTRY.get(method, ("",))[0] != "classical":
        return "flow"
    fs = str((params or {}).get("features", "flow"))
    if fs not in FEATURE_SETS:
        raise BaselineError(f"baselines.{method}.features must be one of {FEATURE_SETS}, got {fs!r}")
    return fs


def why_not_runnable(method: str, has_packets: bool, has_context: bool = False,
                     features: str = "flow") -> str | None:
    """None when ``method`` runs on a store (with or without packet sequences, context), else the reason."""
    if method in NOT_RUN:
        return NOT_RUN[method]
    if method not in BASELINES:
        return f"unknown baseline {method!r}"
    if "packets" in BASELINES[method].split("+") and not has_packets:
        return "needs packet sequences; this store was built from a flow table"
    if ("context" in BASELINES[method].split("+") or features == "flow+context") and not has_context:
        return "needs the host-level context; extract the store with extract.context: true"
    return None


def load_inputs(store, flow_ids: np.ndarray, view: str, features: str = "flow") -> BaselineInput:
    """The view a baseline needs of the given flows (flow statistics, or packet channels + lengths);
    ``features="flow+context"`` appends the context at the first and last packet to the flow statistics."""
    parts = view.split("+")
    out = BaselineInput()
    if "flow" in parts:
        out.flow, out.feature_names = flow_matrix(store.flow_features.loc[np.asarray(flow_ids)])
        if features == "flow+context":
            ctx = store.read_context(rows=np.asarray(flow_ids))
            out.flow = np.concatenate([out.flow, ctx.to_numpy(np.float64)], axis=1)
            out.feature_names = tuple(out.feature_names) + tuple(ctx.columns)
    if "packets" in parts:
        out.packets, out.lengths = store.packets(flow_ids)
    if "context" in parts:
        ctx = store.read_context(rows=np.asarray(flow_ids)).to_numpy(np.float32)
        out.context = ctx.reshape(len(ctx), 2, -1)
    return out


def run_baseline(store, split, method: str, params: dict | None, seed: int,
                 fpr_target: float | None = None, threads: int | None = None) -> tuple[ScoreTable | None, dict]:
    """Fit ``method`` on split.train (benign), choose its settings on split.val (benign), score val + test.

    Returns (scores, info); scores is None (and info["status"] == "not run") when the method cannot
    run on this store. Labels are read only to build the ScoreTable and its evaluation, after fitting.
    """
    from nidsflow.evaluate.metrics import evaluate_scores

    features = feature_set(method, params)
    reason = why_not_runnable(method, store.has_packets, getattr(store, "has_context", False), features)
    if reason is not None:
        log.warning("%s: not run (%s)", method, reason)
        return None, {"method": method, "seed": seed, "status": "not run", "reason": reason}
    model = make_baseline(method, seed, params)
    if "torch" in __import__("sys").modules:  # only the deep baselines load torch
        from nidsflow.reproducible import pin_torch
        pin_torch(threads)
    t0 = time.perf_counter()
    # the deep baselines' per-epoch losses (the summary's learning curves); the classical ones load no torch
    if is_deep(method):
        from nidsflow.evaluate.baselines.nn_utils import recording_losses
        recorder = recording_losses()
    else:
        recorder = contextlib.nullcontext({})
    with recorder as history:
        model.fit(load_inputs(store, split.train, model.view, features),
                  load_inputs(store, split.val, model.view, features))
    fit_s = time.perf_counter() - t0
    ids = np.concatenate([split.val, split.test]).astype(np.int64)
    names = np.r_[np.full(len(split.val), "val"), np.full(len(split.test), "test")]
    scores = model.score(load_inputs(store, ids, model.view, features))
    table = ScoreTable.from_flows(store.flows, ids, names, ("score",), scores[:, None])
    metrics = evaluate_scores(table.split, table.attack_class, table.is_attack, scores, fpr_target)
    log.info("%s seed %d: fit %.1fs, selected %s, test AUROC %s", method, seed, fit_s, model.selected,
             metrics["auroc"])
    return table, {"method": method, "seed": seed, "status": "ok", "description": model.description,
                   "view": model.view, "features": features, "selected": model.selected, "fit_seconds": fit_s, **parameter_record(model),
                   "n_train": int(len(split.train)), "n_val": int(len(split.val)), **metrics,
                   **({"loss_history": history} if history else {})}
