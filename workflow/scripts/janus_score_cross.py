from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

import torch

from nidsflow.evaluate.phase1 import score_cross

torch.set_num_threads(snakemake.threads)
score_cross(
    model_path=snakemake.input.model,
    target_store=Path(snakemake.input.flows).parent,
    target_split=snakemake.input.split,
    out_scores=snakemake.output.scores,
    janus_cfg=snakemake.params.janus,
    variant=snakemake.wildcards.variant,  # its model may be an identically trained variant's
)
