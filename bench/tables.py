"""Wall time of the tables step (``write_tables``: every table, the within table's bootstrap intervals and
intervals.csv) on synthetic score files of the demo's sizes. Not a test.

    python bench/tables.py [--n-boot 1000] [--datasets 3] [--classes 5] [--benign-test 500] [--per-class 120]

Writes, per dataset, JANUS full scores (the 10 JANUS columns) and one score file for every built baseline
(16 methods), at seeds 42 and 43, with config/config.yaml's split sizes (300 benign val, 500 benign test,
120 test flows per attack class, 5 classes); the last dataset is split by capture (its store's flows.parquet
is written too, 20 benign captures), so both resampling paths run. Then times one ``write_tables`` call and,
for comparison, the same call with ``n_boot`` 1 (what the tables cost without the intervals).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.evaluate.baselines import ALL_METHODS
from nidsflow.evaluate.tables import write_tables
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable


def table(rng, n_val, n_test, classes, per_class, k):
    cls = np.r_[np.full(n_val + n_test, "benign"), np.repeat(classes, per_class)]
    split = np.r_[np.full(n_val, "val"), np.full(len(cls) - n_val, "test")]
    s = rng.normal(size=(len(cls), k)) + (cls != "benign")[:, None] * rng.random((len(cls), 1))
    return ScoreTable(np.arange(len(cls)), split, np.where(cls == "benign", "BENIGN", cls), cls, cls != "benign",
                      JANUS_SCORE_NAMES if k > 1 else ("score",), s.astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--datasets", type=int, default=3)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--val", type=int, default=300)
    ap.add_argument("--benign-test", type=int, default=500)
    ap.add_argument("--per-class", type=int, default=120)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    classes = [f"class{i}" for i in range(a.classes)]
    with tempfile.TemporaryDirectory() as tmp:
        r = Path(tmp) / "results" / "bench"
        p1, bl, group_by, stores = [], [], {}, []
        for d in range(a.datasets):
            ds = f"d{d}"
            for seed in (42, 43):
                f = r / ds / "janus/full" / f"seed{seed}/phase1_scores.npz"
                f.parent.mkdir(parents=True)
                table(rng, a.val, a.benign_test, classes, a.per_class, len(JANUS_SCORE_NAMES)).save(f)
                p1.append(str(f))
                for m in ALL_METHODS:
                    f = r / ds / "baselines" / m / f"seed{seed}/scores.npz"
                    f.parent.mkdir(parents=True)
                    table(rng, a.val, a.benign_test, classes, a.per_class, 1).save(f)
                    bl.append(str(f))
            group_by[ds] = "source_file" if d == a.datasets - 1 else "none"
            if group_by[ds] == "source_file":
                n = a.val + a.benign_test + a.classes * a.per_class
                src = np.r_[rng.choice([f"b{i}.pcap" for i in range(20)], a.val + a.benign_test),
                            np.repeat([f"{c}.pcap" for c in classes], a.per_class)]
                stores.append(str(r / ds / "store/flows.parquet"))
                Path(stores[-1]).parent.mkdir(parents=True)
                pd.DataFrame({"flow_id": np.arange(n), "source_file": src}).to_parquet(stores[-1])
        runs = len(p1) + len(bl)
        for n_boot in (a.n_boot, 1):
            t0 = time.perf_counter()
            write_tables(p1, [], bl, Path(tmp) / f"tables{n_boot}", {"bench": True}, 0.01,
                         {"n_boot": n_boot, "level": 0.95, "seed": 0}, 30, group_by, stores)
            print(f"n_boot {n_boot}: {time.perf_counter() - t0:.1f} s for {runs} score files "
                  f"({a.datasets} datasets x {len(ALL_METHODS) + 1} methods x 2 seeds, "
                  f"{a.benign_test} benign + {a.classes} x {a.per_class} attack test flows each)")


if __name__ == "__main__":
    main()
