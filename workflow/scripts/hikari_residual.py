from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.hikari.pipeline import residual_stage

residual_stage(snakemake.input.prep, snakemake.input.model, snakemake.input.scalers, snakemake.input.history,
               snakemake.params.cfg, snakemake.output.residual, snakemake.output.scores, snakemake.threads)
