from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.capture.extract import extract_part

extract_part(snakemake.wildcards.ds, snakemake.params.dataset, snakemake.params.extract, snakemake.params.part,
             snakemake.output.part)
