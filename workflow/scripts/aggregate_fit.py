from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
from nidsflow.scores import ScoreTable

table = ScoreTable.load(snakemake.input.scores)
artifact = fit_deployable(table, snakemake.params.fpr_target, snakemake.params.aggregator)
artifact["source"] = snakemake.input.scores
save_artifact(artifact, snakemake.output[0])
