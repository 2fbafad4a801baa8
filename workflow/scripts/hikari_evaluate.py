from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.hikari.pipeline import evaluate_stage

evaluate_stage(Path(snakemake.input.meta_prob_test).parent, snakemake.input.residual_scores,
               snakemake.input.base_scores, snakemake.output.md, snakemake.output.csv, snakemake.output.png)
