from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.hikari.pipeline import ae_stage

ae_stage(snakemake.input.prep, snakemake.params.cfg, snakemake.output.model, snakemake.output.scalers,
         snakemake.output.history, snakemake.threads)
