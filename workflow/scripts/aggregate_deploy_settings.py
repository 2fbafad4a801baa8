from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.deploy.model_dir import write_deploy_settings

write_deploy_settings(snakemake.output[0], snakemake.params.extract, snakemake.params.janus)
