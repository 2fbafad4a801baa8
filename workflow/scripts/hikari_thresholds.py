from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.hikari.pipeline import thresholds_stage

thresholds_stage(Path(snakemake.input.oof_prob).parent, snakemake.params.cfg, snakemake.output.thresholds)
