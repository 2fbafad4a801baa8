from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

import logging
from pathlib import Path

from nidsflow.demo.generate import generate_demo

cfg = {k: v for k, v in snakemake.params.demo.items() if k != "out_dir"}
cfg["idle_timeout_s"] = snakemake.params.idle_timeout_s
cfg["active_timeout_s"] = snakemake.params.active_timeout_s
manifest = generate_demo(Path(snakemake.output.manifest).parent, cfg)
for domain, info in manifest["domains"].items():
    logging.info("demo %s: %d packets, %d flows (%d benign, %d attack)", domain, info["packets"], info["flows"],
                 info["benign_flows"], info["attack_flows"])
missing = [f for f in snakemake.output if not Path(f).is_file()]
if missing:
    raise FileNotFoundError(f"demo_traffic did not write {missing}: do the rule's outputs match the demo profiles?")
