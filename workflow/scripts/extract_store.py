from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.capture.extract import gather_store

store_dir = Path(snakemake.output.flows).parent
gather_store(snakemake.wildcards.ds, snakemake.params.dataset, snakemake.params.extract, snakemake.input.parts,
             store_dir)
