from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.hikari.pipeline import meta_stage

meta_stage(snakemake.input.prep, snakemake.input.residual_scores, snakemake.input.base_scores, snakemake.params.cfg,
           Path(snakemake.output.meta_prob_test).parent, snakemake.threads)
