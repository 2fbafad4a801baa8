"""Defaults of the ``hikari:`` config section (the same values as config/config.yaml).

``resolve`` deep-merges a user's section over these, so a config that sets only ``hikari.datasets``
(e.g. config/paper.yaml) still runs with the SPEC hyper-parameters. ``stage_config`` cuts out the keys
one stage reads (``STAGE_KEYS``): each Snakemake rule gets only those as params, so changing a key
reruns only the rules that read it, and each stage reads its config through it (a key missing from
its list fails loudly instead of being read silently).
"""

from __future__ import annotations

import copy

from nidsflow.hikari.data import DEFAULT_ID_NAMES, DEFAULT_ID_TOKENS

DEFAULTS: dict = {
    "datasets": {},
    "seed": 42,
    "test_size": 0.3,
    "max_rows": None,
    "threads": 2,
    "preprocess": {"clip": 6.0, "id_tokens": list(DEFAULT_ID_TOKENS), "id_names": [n for n in DEFAULT_ID_NAMES if n],
                   "drop_columns": []},
    "ae": {"width": 128, "latent_dim": 32, "dropout": 0.25, "lr": 1e-3, "clipnorm": 1.0, "epochs": 8,
           "batch_size": 256, "val_fraction": 0.1, "patience": 3, "lr_patience": 2, "lr_factor": 0.5,
           "min_lr": 1e-5, "max_train": None},
    "residual": {"eps": 1e-3, "pca_dim": 12, "gmm_components": 3, "gmm_covariance": "full", "gmm_reg_covar": 1e-4,
                 "hybrid_w_mse": 0.6, "hybrid_w_md": 0.4},
    "latent_lr": {"C": 1.0, "max_iter": 1000, "calibration_cv": 3},
    "xgb": {"n_estimators": 400, "max_depth": 8, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.8,
            "tree_method": "hist"},
    "iforest": {"n_estimators": 300, "max_samples": "auto", "fit_on": "all"},
    "meta": {"n_splits": 3, "zscore": True, "isotonic": False, "C": 1.0, "max_iter": 1000,
             "calibration_holdout": 0.2},
    "thresholds": {"policy": "max_f1", "target_precision": 0.95, "target_recall": 0.95, "alert_recall": 0.99,
                   "confirm_precision": 0.99},
    "gate": {"n_clusters": 6, "quantile": 99.5, "relaxed_quantile": 99.0, "score": "hybrid", "n_init": 4},
    "validation": {"n_permutations": 5, "n_bootstrap": 200, "noise_rates": [0.005, 0.01, 0.02, 0.05],
                   "perturb_eps": 0.01, "n_perturb": 5, "conformal_alpha": 0.01, "calibration_bins": 10,
                   "cv_splits": 3, "e2e_permutations": 2},
}

_MODEL = ("seed", "preprocess.clip", "ae", "residual", "latent_lr", "xgb", "iforest")
_VALIDATION = tuple(f"validation.{k}" for k in DEFAULTS["validation"] if k != "e2e_permutations")
#: The config keys each stage (= Snakemake rule) reads; "a.b" is key b of section a.
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "preprocess": ("seed", "test_size", "max_rows", "preprocess.id_tokens", "preprocess.id_names",
                   "preprocess.drop_columns"),
    "ae": ("seed", "preprocess.clip", "ae"),
    "residual": ("seed", "residual", "gate"),
    "base": ("seed", "latent_lr", "xgb", "iforest"),
    "meta": (*_MODEL, "meta"),                     # the OOF refits fit every base detector again
    "thresholds": ("thresholds",),
    "evaluate": (),
    "permutation": (*_MODEL, "meta", "validation.e2e_permutations"),
    "validate": ("seed", *_VALIDATION),
}


def resolve(cfg: dict | None) -> dict:
    """``cfg`` deep-merged over ``DEFAULTS`` (dict values merge; anything else replaces)."""

    def merge(base, over):
        out = copy.deepcopy(base)
        for k, v in (over or {}).items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "datasets" \
                else copy.deepcopy(v)
        return out

    out = merge(DEFAULTS, cfg)
    if out["gate"]["score"] not in ("mse", "hybrid"):
        raise ValueError(f"hikari.gate.score must be 'mse' or 'hybrid', not {out['gate']['score']!r}")
    if out["iforest"]["fit_on"] not in ("all", "normal"):
        raise ValueError(f"hikari.iforest.fit_on must be 'all' or 'normal', not {out['iforest']['fit_on']!r}")
    return out


def stage_config(cfg: dict | None, stage: str) -> dict:
    """The keys of ``STAGE_KEYS[stage]`` of the resolved ``cfg`` (idempotent: a stage's own cut resolves
    to itself)."""
    full = resolve(cfg)
    out: dict = {}
    for path in STAGE_KEYS[stage]:
        head, _, tail = path.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = copy.deepcopy(full[head][tail])
        else:
            out[head] = copy.deepcopy(full[head])
    return out
