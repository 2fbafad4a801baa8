"""Benchmark: wall time and peak RSS of the whole HIKARI branch on a generated HIKARI-2021-shaped table.

    python bench/hikari.py --rows 555000 --threads 2 --out /tmp/hikari_bench

Generates the table (nidsflow.fixtures.generate_hikari_like, HIKARI-2021's exact header and category mix), writes it
as CSV, then runs every stage (preprocess -> ae -> residual -> base -> meta (OOF + refit) -> thresholds ->
evaluate -> permutation (end-to-end leakage test) -> validate) with the ``hikari:`` section of the config (default config/config.yaml), timing each stage and
reading the process' peak RSS after it. Prints and writes ``bench.json`` in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=555_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--epochs", type=int, default=None, help="override hikari.ae.epochs")
    ap.add_argument("--out", default="/tmp/hikari_bench")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated table")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import yaml

    from nidsflow.hikari import pipeline as P
    from nidsflow.hikari.config import resolve
    from nidsflow.fixtures import generate_hikari_like
    from nidsflow.hikari.validation import run_validation
    from nidsflow.logs import setup_logging

    setup_logging(None)
    cfg = resolve(yaml.safe_load(Path(args.config).read_text())["hikari"])
    cfg["threads"] = args.threads
    if args.epochs is not None:
        cfg["ae"]["epochs"] = args.epochs
    o = Path(args.out)
    o.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    rss: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name, fn, *a):
        t = time.perf_counter()
        fn(*a)
        times[name] = time.perf_counter() - t
        rss[name] = peak_rss_mib()
        print(f"[bench] {name}: {times[name]:.1f} s, peak RSS so far {rss[name]:.0f} MiB", flush=True)

    csv = o / "ALLFLOWMETER_HIKARI2021_generated.csv"
    stage("generate_csv", lambda: generate_hikari_like(args.rows, seed=args.seed).to_csv(csv, index=False))
    t_branch = time.perf_counter()
    th = args.threads
    stage("preprocess", P.preprocess_stage, {"csv": str(csv)}, cfg, o / "prep.npz", o / "imputer.joblib")
    stage("ae", P.ae_stage, o / "prep.npz", cfg, o / "ae.keras", o / "scalers.joblib", o / "ae_history.json", th)
    stage("residual", P.residual_stage, o / "prep.npz", o / "ae.keras", o / "scalers.joblib", o / "ae_history.json",
          cfg, o / "residual.joblib", o / "residual_scores.npz", th)
    stage("base", P.base_stage, o / "prep.npz", o / "scalers.joblib", o / "residual_scores.npz", cfg, o / "xgb.json",
          o / "iforest.joblib", o / "latent_lr.joblib", o / "base_scores.npz", th)
    stage("meta", P.meta_stage, o / "prep.npz", o / "residual_scores.npz", o / "base_scores.npz", cfg, o, th)
    stage("thresholds", P.thresholds_stage, o, cfg, o / "thresholds.json")
    stage("evaluate", P.evaluate_stage, o, o / "residual_scores.npz", o / "base_scores.npz", o / "comparison.md",
          o / "comparison.csv", o / "confusion_matrix.png")
    stage("permutation", P.permutation_stage, o / "prep.npz", cfg, o / "permutation_e2e.json", th)
    stage("validate", run_validation, o, cfg["validation"], int(cfg["seed"]), o)
    result = {
        "rows": args.rows, "threads": args.threads, "ae_epochs": cfg["ae"]["epochs"], "cpu_count": os.cpu_count(),
        "branch_wall_s": time.perf_counter() - t_branch, "total_wall_s": time.perf_counter() - t_all,
        "peak_rss_mib": peak_rss_mib(), "stage_wall_s": times, "peak_rss_after_stage_mib": rss,
        "python": sys.version.split()[0],
    }
    (o / "bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
