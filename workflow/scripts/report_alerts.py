from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

import torch

from nidsflow.top_alerts import explain_top_flows, write_alerts

torch.set_num_threads(snakemake.threads)
records = explain_top_flows(
    snakemake.input.scores,
    snakemake.input.aggregator,
    snakemake.input.model,
    Path(snakemake.input.flows).parent,
    janus_cfg=snakemake.params.janus,
    extract_cfg=snakemake.params.extract,
)
write_alerts(records, snakemake.output[0], snakemake.params.dataset, snakemake.params.run)
