from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.deploy.scoring import score_capture

score_capture(snakemake.input.capture, snakemake.input.model, snakemake.input.aggregator, snakemake.output[0],
              snakemake.params.extract, snakemake.params.janus)
