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
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import yaml

#: file name -> what it holds (the model directory's contract).
MODEL_DIR_FILES: dict[str, str] = {
    "model.pt": "trained JANUS model with its normaliser (rule train_janus)",
    "aggregator.json": "deployable aggregator and alert threshold (rule fit_aggregator)",
    "deploy.yaml": "extract: and janus: scoring settings (rule deploy_settings)",
}
DEPLOY_SETTINGS = "deploy.yaml"


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


def write_deploy_settings(path: str | Path, extract_cfg: dict, janus_cfg: dict) -> None:
    """Write ``deploy.yaml`` (atomically): the flow meter and scoring settings a model is deployed with."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump({"extract": dict(extract_cfg), "janus": dict(janus_cfg)}, sort_keys=True))
    tmp.replace(path)


def _read_settings(path: Path) -> tuple[dict, dict]:
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ModelDirError(f"{path}: cannot read settings ({e})") from e
    if not isinstance(d, dict):
        raise ModelDirError(f"{path}: expected a mapping with extract: and janus:, got {type(d).__name__}")
    missing = [k for k in ("extract", "janus") if not isinstance(d.get(k), dict)]
    if missing:
        raise ModelDirError(f"{path}: section(s) {missing} missing (need extract: and janus:)")
    return d["extract"], d["janus"]


def validate_model_dir(root: str | Path) -> ModelDir:
    """Check that ``root`` holds every file of ``MODEL_DIR_FILES``; raise naming all missing ones."""
    root = Path(root)
    if not root.is_dir():
        raise ModelDirError(f"{root}: model directory not found")
    missing = [f"{name} ({what})" for name, what in MODEL_DIR_FILES.items() if not (root / name).is_file()]
    if missing:
        raise ModelDirError(f"{root}: not a complete model directory; missing: " + "; ".join(missing))
    extract, janus = _read_settings(root / DEPLOY_SETTINGS)
    return ModelDir(root / "model.pt", root / "aggregator.json", extract, janus, str(root / DEPLOY_SETTINGS))


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
        extract, janus = _read_settings(Path(config))
        return ModelDir(md.model, md.aggregator, extract, janus, str(config))
    if model is None or aggregator is None:
        raise ModelDirError("need --model-dir, or both --model and --aggregator")
    model, aggregator = Path(model), Path(aggregator)
    missing = [f"{p} ({what})" for p, what in ((model, "--model"), (aggregator, "--aggregator")) if not p.is_file()]
    settings = Path(config) if config is not None else model.parent / DEPLOY_SETTINGS
    if not settings.is_file():
        missing.append(f"{settings} ({'--config' if config is not None else 'deploy.yaml beside --model; or give --config'})")
    if missing:
        raise ModelDirError("missing: " + "; ".join(missing))
    extract, janus = _read_settings(settings)
    return ModelDir(model, aggregator, extract, janus, str(settings))


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
