"""Issue 11's before/after study on the real data, sized to fit a 2-core machine in about an hour.

    python bench/fixes_study.py [--seeds 42 43 44] [--cores 2] [--dry-run]

The full ``config/real.yaml`` DAG (every baseline, four datasets, nofix_all, HIKARI) takes several hours on
2 cores at three seeds. This script builds a subset of the same DAG with the same config and code:

* JANUS's main model and the fix ablations nofix_iat, nofix_ot, nofix_disc (real_pcaps, diverse_files) and
  B2 / B2_nofix_ot (cic17_flows) at every seed;
* the baselines that led some dataset in the 2-seed run of docs/results.md or are cheap to run (the six
  classical detectors, STFPM-style on the packet datasets, GANomaly and MMR-style on cic17_flows);

one seed at a time (so a stopped run leaves whole seeds), then writes the result tables of those score files
with the pipeline's own ``nidsflow.evaluate.tables.write_tables`` into ``results/real/tables_fixes/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nidsflow import layout  # noqa: E402

CLASSICAL = ["iforest", "ocsvm", "knn", "lof", "ecod", "copod"]
PLAN = {  # dataset -> (JANUS variants, baselines)
    "cic17_flows": (["B2", "B2_nofix_ot"], CLASSICAL + ["ganomaly", "mmr"]),
    "real_pcaps": (["full", "nofix_iat", "nofix_ot", "nofix_disc"], CLASSICAL + ["stfpm"]),
    "diverse_files": (["full", "nofix_iat", "nofix_ot", "nofix_disc"], CLASSICAL + ["stfpm"]),
}


def targets(seed: int) -> tuple[list[str], list[str]]:
    janus, baselines = [], []
    for ds, (variants, methods) in PLAN.items():
        janus += [layout.path(layout.PHASE1_SCORES, study="real", ds=ds, variant=v, seed=seed) for v in variants]
        baselines += [layout.path(layout.BASELINE_SCORES, study="real", ds=ds, method=m, seed=seed) for m in methods]
    return janus, baselines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", default="config/real.yaml")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--tables-only", action="store_true", help="write the tables from the score files present")
    args = ap.parse_args()
    config = yaml.safe_load((ROOT / args.config).read_text())
    for seed in ([] if args.tables_only else args.seeds):
        j, b = targets(seed)
        cmd = ["snakemake", "--configfile", args.config, "--cores", str(args.cores), "--keep-going",
               "--rerun-incomplete", *(["-n"] if args.dry_run else []), *j, *b]
        print(f"seed {seed}: {len(j)} JANUS and {len(b)} baseline score files", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=False)
    if args.dry_run:
        return
    from nidsflow.config_schema import load_config
    from nidsflow.evaluate.tables import write_tables

    full = load_config(ROOT / args.config)  # the schema-filled config, as the rules see it (its hash in the tables)
    p1, bl = [], []
    for seed in args.seeds:
        j, b = targets(seed)
        p1 += [f for f in j if (ROOT / f).exists()]
        bl += [f for f in b if (ROOT / f).exists()]
    write_tables([str(ROOT / f) for f in p1], [], [str(ROOT / f) for f in bl], ROOT / "results/real/tables_fixes",
                 full, fpr_target=full["evaluate"]["fpr_target"])
    print(f"tables from {len(p1)} JANUS and {len(bl)} baseline score files: results/real/tables_fixes/", flush=True)


if __name__ == "__main__":
    main()
