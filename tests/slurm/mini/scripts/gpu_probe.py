"""A GPU job's stand-in: records when it ran and what GPU/SLURM environment it saw, then writes a model.

probe.json holds the wall-clock start/end (time.time()) so a test can compute how many GPU jobs
overlapped, and the CUDA_VISIBLE_DEVICES / SLURM_* variables the scheduler set.
"""

import json
import os
import socket
import time

start = time.time()
time.sleep(float(snakemake.params.sleep_s))
seed = int(snakemake.wildcards.seed)
with open(snakemake.input[0]) as f:
    values = [float(line) for line in f if line.strip()]
with open(snakemake.output.model, "w") as out:
    for v in values:
        out.write(f"{v * seed}\n")
env = {k: v for k, v in os.environ.items() if k == "CUDA_VISIBLE_DEVICES" or k.startswith("SLURM_")}
end = time.time()
with open(snakemake.output.probe, "w") as out:
    json.dump(
        {
            "job": f"{snakemake.wildcards.ds}/seed{seed}",
            "start": start,
            "end": end,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpu_resource": int(snakemake.resources.gpu),
            "env": env,
        },
        out,
        indent=1,
    )
with open(snakemake.log[0], "w") as log:
    log.write(f"ran {end - start:.2f} s with CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')}\n")
