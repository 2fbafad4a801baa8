"""A *model directory*: everything ``nidsflow watch`` / ``nidsflow score-capture`` need, without Snakemake.

The workflow writes one per trained model, ``results/{ds}/janus/{variant}/seed{seed}/``:

===================  ==========================================================================================
``model.pt``         rule train_janus: the JANUS weights, its architecture, its train settings and its
                     **normaliser** (benign-train statistics of the flow features and packet channels; the
                     normaliser is part of the checkpoint, there is no separate file)
``aggregator.json``  rule fit_aggregator: the deployable aggregator (A1 Mahalanobis-OAS: location, precision)
                     and the alert threshold chosen on benign val for ``evaluate.fpr_target``
``deploy.yaml``      rule deploy_settings: the ``extract:`` section (flow meter: T, timeouts, tcp_close) and
                     the ``janus:`` scoring keys (solver, disc_times, score_seed, ...) the model was scored with,
                     so a capture is assembled and scored exactly as the training data was
===================  ==========================================================================================

Other files of that directory (train_log.tsv, phase1_scores.npz, ...) are not needed. Copy the three
files anywhere (another machine, a pip-installed ``nidsflow``) and point ``--model-dir`` at them.

**Checks before scoring** (:func:`check_model_files`; a failure is a :class:`ModelDirError` naming the file):

* ``model.pt`` is loaded as data only (``torch.load(weights_only=True)``, :func:`janus.train.load_torch_file`):
  a file holding anything but tensors, numbers, strings and containers is refused, nothing of it runs;
* the *model fingerprint* (:func:`model_fingerprint`: variant, seed, dataset (store), a hash of the flow
  feature columns, of the normaliser's statistics and of the model + training configuration), computed from
  model.pt's own metadata, must equal the one recorded in ``aggregator.json`` (rule fit_aggregator) and in
  ``deploy.yaml`` (rule deploy_settings): an aggregator of another variant, seed or dataset is refused. A file
  without a recorded fingerprint (written before it existed) is used with a warning;
* every score column of the aggregator is one the model computes (a B1/B2 model has no DFM or FLOW scores);
* the threshold is a finite number; location and precision have the aggregator's dimension, are finite,
  and the precision is symmetric positive definite;
* ``deploy.yaml``: only ``extract:``, ``janus:`` and ``model:``; the keys under the first two are checked
  against the workflow's schema where it is found (a misspelt ``solvr:`` is refused).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

log = logging.getLogger(__name__)

#: file name -> what it holds (the model directory's contract).
MODEL_DIR_FILES: dict[str, str] = {
    "model.pt": "trained JANUS model with its normaliser (rule train_janus)",
    "aggregator.json": "deployable aggregator and alert threshold (rule fit_aggregator)",
    "deploy.yaml": "extract: and janus: scoring settings (rule deploy_settings)",
}
DEPLOY_SETTINGS = "deploy.yaml"
#: Top-level keys of deploy.yaml.
DEPLOY_KEYS = ("extract", "janus", "model")
#: The fields of :func:`model_fingerprint`, compared one by one (a refusal names the ones that differ).
FINGERPRINT_FIELDS = ("variant", "seed", "dataset", "columns", "normaliser", "config")


class ModelDirError(ValueError):
    """A model directory (or explicit model files) cannot be used: the message names what is missing."""


@dataclass(frozen=True)
class ModelDir:
    """The resolved model files and the settings to score with."""

    model: Path
    aggregator: Path
    extract: dict
    janus: dict
    settings_source: str
    #: the model fingerprint recorded in the settings file (None: not recorded)
    settings_model: dict | None = None


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_fingerprint(meta: dict) -> dict:
    """What identifies a trained JANUS model, from the metadata of its model.pt (``load_model``'s third value):
    variant, seed, dataset (the store it was trained on), hashes of its flow feature columns, of its
    normaliser's benign statistics and of its model + training configuration."""
    norm = dict(meta.get("normaliser") or {})
    return {"variant": meta.get("variant"), "seed": meta.get("seed"), "dataset": str(meta.get("store")),
            "columns": _digest(norm.get("feature_names")), "normaliser": _digest(norm),
            "config": _digest({"model": meta.get("model_config"), "train": meta.get("train_settings")})}


def model_fingerprint_of(model_path: str | Path) -> dict:
    """:func:`model_fingerprint` of a model.pt file (loaded as data only)."""
    from nidsflow.janus.train import load_torch_file

    return model_fingerprint(load_torch_file(model_path))


def check_fingerprint(model_fp: dict, recorded, model_path, other_path) -> None:
    """Refuse when ``other_path`` recorded a model fingerprint other than ``model_fp`` (warn when none)."""
    if recorded is None:
        log.warning("%s records no model fingerprint (written by an older nidsflow): cannot check that it belongs "
                    "to %s", other_path, model_path)
        return
    if not isinstance(recorded, dict):
        raise ModelDirError(f"{other_path}: 'model' must be a mapping (the model fingerprint), got {recorded!r}")
    diff = [k for k in FINGERPRINT_FIELDS if recorded.get(k) != model_fp.get(k)]
    if diff:
        detail = "; ".join(f"{k}: {recorded.get(k)!r} there, {model_fp.get(k)!r} in the model" for k in diff)
        raise ModelDirError(f"{other_path} belongs to another model than {model_path} ({detail}); use the files of "
                            "one model directory together")


def check_artifact(path, d: dict) -> None:
    """Refuse an aggregator.json whose threshold or parameters cannot give meaningful alerts."""
    thr = d.get("threshold")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not np.isfinite(thr):
        raise ModelDirError(f"{path}: threshold must be a finite number, got {thr!r}")
    cols = d.get("columns")
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
        raise ModelDirError(f"{path}: columns must be a non-empty list of score names, got {cols!r}")
    params = d.get("params")
    if not isinstance(params, dict):
        raise ModelDirError(f"{path}: params must be a mapping, got {type(params).__name__}")
    k = len(cols)
    if "reference" in params:  # a length-aware aggregator (A1L): its benign reference, then its inner one
        _check_reference(path, params["reference"], k)
        params = params.get("inner")
        if not isinstance(params, dict):
            raise ModelDirError(f"{path}: params.inner must be a mapping, got {type(params).__name__}")
    if "location" in params or "precision" in params:  # the Mahalanobis aggregators (A1, the deployable one)
        try:
            loc = np.asarray(params["location"], dtype=np.float64)
            prec = np.asarray(params["precision"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelDirError(f"{path}: params.location / params.precision unreadable ({e})") from None
        if loc.shape != (k,) or prec.shape != (k, k):
            raise ModelDirError(f"{path}: {k} columns but location has shape {loc.shape} and precision {prec.shape}")
        if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(prec))):
            raise ModelDirError(f"{path}: location or precision holds a non-finite value")
        if not np.allclose(prec, prec.T, rtol=1e-6, atol=1e-9) or np.linalg.eigvalsh(prec).min() <= 0:
            raise ModelDirError(f"{path}: precision is not symmetric positive definite (d^2 would not be a "
                                "distance: alerts would be meaningless)")


def _check_reference(path, ref, k: int) -> None:
    """A length reference's bands: increasing lower edges, a finite location and a positive finite scale per
    band and column (a zero or missing scale would send every flow of its band to +-inf)."""
    try:
        edges = np.asarray(ref["band_lower_edges"], dtype=np.float64)
        loc = np.asarray(ref["band_location"], dtype=np.float64)
        scale = np.asarray(ref["band_scale"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelDirError(f"{path}: params.reference unreadable ({e})") from None
    nb = len(edges)
    if nb == 0 or edges.ndim != 1 or np.any(np.diff(edges) <= 0):
        raise ModelDirError(f"{path}: params.reference.band_lower_edges must be increasing, got {edges.tolist()}")
    if loc.shape != (nb, k) or scale.shape != (nb, k):
        raise ModelDirError(f"{path}: {nb} bands x {k} columns expected, band_location has shape {loc.shape} and "
                            f"band_scale {scale.shape}")
    if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ModelDirError(f"{path}: the length reference holds a non-finite location or a scale <= 0")


def load_aggregator(path) -> tuple:
    """(aggregator, threshold, raw dict) of an aggregator.json, checked by :func:`check_artifact`; every
    problem is a :class:`ModelDirError` naming the file."""
    from nidsflow.evaluate.aggregators import AggregatorError, load_artifact

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ModelDirError(f"{path}: cannot read the aggregator ({e})") from None
    if not isinstance(d, dict):
        raise ModelDirError(f"{path}: expected a JSON object, got {type(d).__name__}")
    check_artifact(path, d)
    try:
        return load_artifact(path)
    except (AggregatorError, TypeError, ValueError) as e:
        raise ModelDirError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def write_deploy_settings(path: str | Path, extract_cfg: dict, janus_cfg: dict, model: dict | None = None) -> None:
    """Write ``deploy.yaml`` (atomically): the flow meter and scoring settings a model is deployed with, and
    the :func:`model_fingerprint` of that model (``model``) so they cannot be paired with another one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    d = {"extract": dict(extract_cfg), "janus": dict(janus_cfg)}
    if model is not None:
        d["model"] = dict(model)
    tmp.write_text(yaml.safe_dump(d, sort_keys=True))
    tmp.replace(path)


def _check_settings_keys(path: Path, d: dict, deploy_file: bool) -> None:
    """Unknown keys: at the top of a deploy.yaml, and under extract: / janus: (the workflow schema's keys)."""
    if deploy_file:
        extra = sorted(set(d) - set(DEPLOY_KEYS))
        if extra:
            raise ModelDirError(f"{path}: unknown key(s) {extra} (a deploy.yaml holds {list(DEPLOY_KEYS)})")
    from nidsflow.config_schema import load_schema, unknown_key_message

    try:
        schema = load_schema()
    except OSError:  # an installed package run outside the repository: the keys are not checked
        log.debug("config schema not found: the keys of %s are not checked", path)
        return
    message = unknown_key_message({"extract": d["extract"], "janus": d["janus"]}, schema)
    if message:
        raise ModelDirError(f"{path}: {message}")


def _read_settings(path: Path) -> tuple[dict, dict, dict | None]:
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ModelDirError(f"{path}: cannot read settings ({e})") from e
    if not isinstance(d, dict):
        raise ModelDirError(f"{path}: expected a mapping with extract: and janus:, got {type(d).__name__}")
    missing = [k for k in ("extract", "janus") if not isinstance(d.get(k), dict)]
    if missing:
        raise ModelDirError(f"{path}: section(s) {missing} missing (need extract: and janus:)")
    deploy_file = "model" in d or set(d) <= set(DEPLOY_KEYS)
    _check_settings_keys(path, d, deploy_file)
    return d["extract"], d["janus"], d.get("model") if deploy_file else None


def validate_model_dir(root: str | Path) -> ModelDir:
    """Check that ``root`` holds every file of ``MODEL_DIR_FILES``; raise naming all missing ones."""
    root = Path(root)
    if not root.is_dir():
        raise ModelDirError(f"{root}: model directory not found")
    missing = [f"{name} ({what})" for name, what in MODEL_DIR_FILES.items() if not (root / name).is_file()]
    if missing:
        raise ModelDirError(f"{root}: not a complete model directory; missing: " + "; ".join(missing))
    extract, janus, fp = _read_settings(root / DEPLOY_SETTINGS)
    return ModelDir(root / "model.pt", root / "aggregator.json", extract, janus, str(root / DEPLOY_SETTINGS), fp)


def resolve_model(model_dir: str | Path | None = None, model: str | Path | None = None,
                  aggregator: str | Path | None = None, config: str | Path | None = None) -> ModelDir:
    """Either a model directory, or explicit model.pt + aggregator.json with the settings from ``config``
    (a workflow config or a deploy.yaml); without ``config``, the deploy.yaml beside model.pt."""
    if model_dir is not None:
        if model is not None or aggregator is not None:
            raise ModelDirError("give either --model-dir or --model/--aggregator, not both")
        try:
            md = validate_model_dir(model_dir)
        except ModelDirError as e:
            raise ModelDirError(f"--model-dir {e}") from None
        if config is None:
            return md
        extract, janus, fp = _read_settings(Path(config))
        return ModelDir(md.model, md.aggregator, extract, janus, str(config), fp)
    if model is None or aggregator is None:
        raise ModelDirError("need --model-dir, or both --model and --aggregator")
    model, aggregator = Path(model), Path(aggregator)
    missing = [f"{p} ({what})" for p, what in ((model, "--model"), (aggregator, "--aggregator")) if not p.is_file()]
    settings = Path(config) if config is not None else model.parent / DEPLOY_SETTINGS
    if not settings.is_file():
        missing.append(f"{settings} ({'--config' if config is not None else 'deploy.yaml beside --model; or give --config'})")
    if missing:
        raise ModelDirError("missing: " + "; ".join(missing))
    extract, janus, fp = _read_settings(settings)
    return ModelDir(model, aggregator, extract, janus, str(settings), fp)


def add_model_arguments(ap: argparse.ArgumentParser) -> None:
    """--model-dir | --model + --aggregator [--config], --device (shared by score-capture and watch)."""
    ap.add_argument("--model-dir", default=None,
                    help="model directory with model.pt, aggregator.json, deploy.yaml (nidsflow.deploy.model_dir)")
    ap.add_argument("--model", default=None, help="trained JANUS model.pt (instead of --model-dir)")
    ap.add_argument("--aggregator", default=None, help="aggregator.json of rule fit_aggregator (with --model)")
    ap.add_argument("--config", default=None,
                    help="settings with extract: and janus: sections (a workflow config or a deploy.yaml); "
                         "default: the model directory's deploy.yaml, or the one beside --model")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def model_from_args(ap: argparse.ArgumentParser, a) -> ModelDir:
    """Resolve the model arguments; a problem is an argparse error naming the argument (exit code 2)."""
    try:
        return resolve_model(a.model_dir, a.model, a.aggregator, a.config)
    except ModelDirError as e:
        ap.error(str(e))
