from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.hikari.validation import run_validation

run_validation(Path(snakemake.input.meta_prob_test).parent, snakemake.params.cfg, snakemake.params.seed,
               Path(snakemake.output.summary).parent)
