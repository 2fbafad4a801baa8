from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.evaluate.tables import write_tables

write_tables(snakemake.input.phase1, snakemake.input.cross, snakemake.input.baselines, Path(snakemake.output[0]).parent,
             dict(snakemake.params.config), snakemake.params.fpr_target, dict(snakemake.params.bootstrap),
             snakemake.params.min_class_flows, dict(snakemake.params.group_by), snakemake.input.stores)
