"""``nidsflow``: the package's stages for users outside Snakemake, one sub-command each.

    nidsflow demo OUT_DIR                          generate the demo captures, label CSVs and HIKARI CSV
    nidsflow extract DATASET OUT_DIR               build a flow store from a dataset of the config
    nidsflow regenerate-features DATASET STORE     rewrite flow_features.parquet of an existing store
    nidsflow score-capture ...                     score a capture with a trained JANUS model (see --help)
    nidsflow watch DIR ...                         score captures as they are written into DIR, alerts as JSON lines
    nidsflow hikari ...                            run the HIKARI branch on a table of the config
    nidsflow validate ARTIFACTS_DIR                run the validation suite on HIKARI artifacts
"""

from __future__ import annotations

import argparse
import json
import sys

from nidsflow.logs import setup_logging


def _config(path: str) -> dict:
    """The config as the workflow reads it: checked against workflow/schemas/config.schema.yaml (an unknown key
    or a bad value stops here, naming it), the schema's defaults filled in."""
    from nidsflow.config_schema import ConfigError, load_config

    try:
        return load_config(path)
    except OSError as e:
        raise SystemExit(f"cannot read config {path}: {e.strerror}") from e
    except ConfigError as e:
        raise SystemExit(str(e)) from e


def _dataset(cfg: dict, name: str, path: str) -> dict:
    if name not in cfg.get("datasets", {}):
        raise SystemExit(f"{path}: no dataset named {name!r} (configured: {sorted(cfg.get('datasets', {}))})")
    return cfg["datasets"][name]


def _demo(args) -> None:
    from nidsflow.demo.generate import generate_demo

    cfg = _config(args.config)
    demo = dict(cfg["demo"], idle_timeout_s=cfg["extract"]["idle_timeout_s"],
                active_timeout_s=cfg["extract"]["active_timeout_s"])
    print(json.dumps(generate_demo(args.out_dir, demo), indent=1))


def _extract(args) -> int:
    """Build the store; exit 1 when a configured capture matched nothing or failed (the store then lacks its
    flows: the report still lists every capture), or when the dataset cannot be extracted at all."""
    from nidsflow.capture.extract import ExtractError, extract_dataset

    cfg = _config(args.config)
    try:
        report = extract_dataset(args.dataset, _dataset(cfg, args.dataset, args.config), cfg["extract"],
                                 args.out_dir)
    except ExtractError as e:
        raise SystemExit(f"nidsflow extract: {e}") from None
    print(json.dumps(report, indent=1, default=str))
    failed = report.get("failed_captures") or []
    if failed:
        print(f"nidsflow extract: {len(failed)} of {report.get('captures')} captures failed (their flows are missing "
              "from the store): " + "; ".join(f"{f['file']}: {f['error']}" for f in failed), file=sys.stderr)
        return 1
    return 0


def _regenerate(args) -> None:
    from nidsflow.capture.extract import regenerate_features

    cfg = _config(args.config)
    print(regenerate_features(args.store, _dataset(cfg, args.dataset, args.config), cfg["extract"]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Sub-commands that own a full argument parser of their own are passed through untouched.
    passthrough = {
        "score-capture": "nidsflow.deploy.scoring",
        "watch": "nidsflow.deploy.watch",
        "hikari": "nidsflow.hikari.pipeline",
        "validate": "nidsflow.hikari.validation",
    }
    if argv and argv[0] in passthrough:
        import importlib

        setup_logging()
        return importlib.import_module(passthrough[argv[0]]).main(argv[1:]) or 0

    ap = argparse.ArgumentParser(prog="nidsflow", description=__doc__.split("\n\n")[0],
                                 epilog="also: " + ", ".join(passthrough) + " (each has its own --help)")
    ap.add_argument("--config", default="config/config.yaml", help="workflow config to read (default: %(default)s)")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="generate the demo traffic")
    p.add_argument("out_dir")
    p.set_defaults(func=_demo)
    p = sub.add_parser("extract", help="build a flow store for one dataset of the config")
    p.add_argument("dataset")
    p.add_argument("out_dir")
    p.set_defaults(func=_extract)
    p = sub.add_parser("regenerate-features", help="rewrite flow_features.parquet of an existing store")
    p.add_argument("dataset")
    p.add_argument("store")
    p.set_defaults(func=_regenerate)
    args = ap.parse_args(argv)
    setup_logging()
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
