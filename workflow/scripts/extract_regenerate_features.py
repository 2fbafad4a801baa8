from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.capture.extract import regenerate_features

regenerate_features(Path(snakemake.input.flows).parent, snakemake.params.dataset, snakemake.params.extract,
                    out_path=snakemake.output.features)
