from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.capture.extract import extract_dataset

store_dir = Path(snakemake.output.flows).parent
extract_dataset(snakemake.wildcards.ds, snakemake.params.dataset, snakemake.params.extract, store_dir)
