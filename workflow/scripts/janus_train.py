from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

import torch

from nidsflow.janus.train import train_janus

torch.set_num_threads(snakemake.threads)
out = Path(snakemake.output.model).parent
train_janus(
    store_root=Path(snakemake.input.flows).parent,
    split_path=snakemake.input.split,
    out_dir=out,
    janus_cfg=snakemake.params.janus,
    variant=snakemake.wildcards.variant,
    seed=int(snakemake.wildcards.seed),
)
