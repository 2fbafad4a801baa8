from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.deploy.model_dir import model_fingerprint_of, write_deploy_settings

write_deploy_settings(snakemake.output[0], snakemake.params.extract, snakemake.params.janus,
                      model_fingerprint_of(snakemake.input.model))
