from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

import pandas as pd

from nidsflow.splits import make_split

flows = pd.read_parquet(snakemake.input.flows, columns=["flow_id", "label", "attack_class", "is_attack"])
cfg = snakemake.params.split
split = make_split(
    flows,
    seed=int(snakemake.wildcards.seed),
    n_train=cfg["n_train"],
    n_val=cfg["n_val"],
    max_test_benign=cfg.get("max_test_benign"),
    max_test_per_class=cfg.get("max_test_per_class"),
    source=snakemake.input.flows,
)
split.save(snakemake.output[0])
