from nidsflow.reproducible import pin_cpu_arithmetic

pinned = pin_cpu_arithmetic()  # first: fixes MKL / ATen kernel paths before numpy or torch load

from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

import json
from pathlib import Path

import numpy as np

from nidsflow.evaluate.baselines import run_baseline
from nidsflow.scores import ScoreTable
from nidsflow.splits import Split
from nidsflow.store import Store

store = Store(Path(snakemake.input.flows).parent)
split = Split.load(snakemake.input.split)
table, info = run_baseline(store, split, snakemake.wildcards.method, snakemake.params.method_params,
                           int(snakemake.wildcards.seed), snakemake.params.fpr_target,
                           threads=snakemake.threads)
if table is None:  # not run: an empty table, the reason in auroc.json
    table = ScoreTable(np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, str), np.zeros(0, str),
                       np.zeros(0, bool), ("score",), np.zeros((0, 1), np.float32))
info["cpu_arithmetic"] = pinned
table.save(snakemake.output.scores)
Path(snakemake.output.auroc).write_text(json.dumps(info, indent=1, default=str))
