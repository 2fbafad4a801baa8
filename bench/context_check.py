"""Quick check of the host-level context on diverse_files (config/real.yaml's dataset): extract it with
``extract.context: true``, then run iforest and kNN with and without ``features: flow+context`` and the
two Kitsune rows on splits of the real study's sizes, one line of overall and per-class AUROC per run.
Not the workflow's run (no JANUS, no tables); about 3 minutes on 2 cores for three seeds.

    PYTHONPATH=src python bench/context_check.py --out /tmp/ctx_diverse 42 43 44
"""

import argparse
import logging
import time
from pathlib import Path

import yaml

from nidsflow.capture.extract import extract_dataset
from nidsflow.evaluate.baselines import run_baseline
from nidsflow.splits import make_split
from nidsflow.store import Store

RUNS = [("iforest", "iforest", {}), ("iforest+ctx", "iforest", {"features": "flow+context"}),
        ("knn", "knn", {}), ("knn+ctx", "knn", {"features": "flow+context"}),
        ("kitsune", "kitsune", {}), ("kitsune_mean", "kitsune_mean", {})]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seeds", nargs="*", type=int, default=[42])
    ap.add_argument("--out", default="/tmp/ctx_diverse")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = yaml.safe_load(open("config/real.yaml"))
    out = Path(a.out)
    if not (out / "packets" / "manifest.json").exists():
        t = time.time()
        extract_dataset("diverse_files", cfg["datasets"]["diverse_files"], {"T": 16, "context": True}, out)
        print(f"extract {time.time() - t:.1f} s", flush=True)
    store = Store(out)
    sp = cfg["split"]
    for seed in a.seeds:
        split = make_split(store.flows, seed=seed, n_train=sp["n_train"], n_val=sp["n_val"],
                           max_test_benign=sp["max_test_benign"], max_test_per_class=sp["max_test_per_class"])
        for name, method, params in RUNS:
            _, info = run_baseline(store, split, method, params, seed=seed)
            per = {k: round(100 * v["auroc"], 1) for k, v in info["per_class"].items() if isinstance(v, dict)}
            print(seed, name, "overall", round(100 * info["auroc"], 1), per, flush=True)


if __name__ == "__main__":
    main()
