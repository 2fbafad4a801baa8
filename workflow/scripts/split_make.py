from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

import pandas as pd

from nidsflow.splits import make_split

flows = pd.read_parquet(snakemake.input.flows, columns=["flow_id", "label", "attack_class", "is_attack",
                                                      "source_file", "first_ts"])
cfg = snakemake.params.split
split = make_split(
    flows,
    seed=int(snakemake.wildcards.seed),
    n_train=cfg["n_train"],
    n_val=cfg["n_val"],
    max_test_benign=cfg.get("max_test_benign"),
    max_test_per_class=cfg.get("max_test_per_class"),
    source=f"dataset {snakemake.wildcards.ds} ({snakemake.input.flows})",
    group_by=cfg.get("group_by", "none"),
    min_test_benign=cfg.get("min_test_benign"),
)
split.save(snakemake.output[0])
