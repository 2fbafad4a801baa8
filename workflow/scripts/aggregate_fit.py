from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.deploy.model_dir import model_fingerprint_of
from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
from nidsflow.scores import ScoreTable

table = ScoreTable.load(snakemake.input.scores)
artifact = fit_deployable(table, snakemake.params.fpr_target, snakemake.params.aggregator)
artifact["source"] = snakemake.input.scores
artifact["model"] = model_fingerprint_of(snakemake.input.model)  # checked before deployment scores
save_artifact(artifact, snakemake.output[0])
