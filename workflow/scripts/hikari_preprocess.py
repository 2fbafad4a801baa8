from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.hikari.pipeline import preprocess_stage

preprocess_stage(snakemake.params.source, snakemake.params.cfg, snakemake.output.prep, snakemake.output.imputer)
