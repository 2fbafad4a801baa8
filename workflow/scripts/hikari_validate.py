from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.hikari.validation import run_validation

cfg = snakemake.params.cfg
run_validation(Path(snakemake.input.meta_prob_test).parent, cfg["validation"], cfg["seed"],
               Path(snakemake.output.summary).parent, trust_pickle=True)  # meta.joblib of rule hikari_meta
