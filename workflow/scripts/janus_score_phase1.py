from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

import torch

from nidsflow.evaluate.phase1 import score_phase1

torch.set_num_threads(snakemake.threads)
score_phase1(
    model_path=snakemake.input.model,
    store_root=Path(snakemake.input.flows).parent,
    split_path=snakemake.input.split,
    out_scores=snakemake.output.scores,
    out_auroc=snakemake.output.auroc,
    janus_cfg=snakemake.params.janus,
    variant=snakemake.wildcards.variant,  # its model may be an identically trained variant's
)
