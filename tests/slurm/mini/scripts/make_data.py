"""Writes ten numbers scaled by the dataset's `scale` parameter (changing it must rebuild only that dataset)."""

scale = float(snakemake.params.scale)
with open(snakemake.output[0], "w") as out:
    for i in range(10):
        out.write(f"{i * scale}\n")
with open(snakemake.log[0], "w") as log:
    log.write(f"wrote 10 values at scale {scale} to {snakemake.output[0]}\n")
