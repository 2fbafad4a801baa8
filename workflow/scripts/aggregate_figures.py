from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.evaluate.figures import dataset_figures

baselines = {m: snakemake.input[m] for m in snakemake.params.methods}
dataset_figures(snakemake.wildcards.ds, snakemake.input.janus, baselines, snakemake.output.roc,
                snakemake.output.dist, snakemake.params.fpr_target)
