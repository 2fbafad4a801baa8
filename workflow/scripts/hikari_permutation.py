from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.hikari.pipeline import permutation_stage

permutation_stage(snakemake.input.prep, snakemake.params.cfg, snakemake.output.result, snakemake.threads)
