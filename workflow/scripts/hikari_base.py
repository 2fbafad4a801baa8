from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.hikari.pipeline import base_stage

base_stage(snakemake.input.prep, snakemake.input.scalers, snakemake.input.residual_scores, snakemake.params.cfg,
           snakemake.output.xgb, snakemake.output.iforest, snakemake.output.latent_lr, snakemake.output.scores,
           snakemake.threads)
