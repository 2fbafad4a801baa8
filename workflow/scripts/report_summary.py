from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from nidsflow.report import write_summary

write_summary(
    snakemake.output.md,
    tables=list(snakemake.input.tables),
    figures=list(snakemake.input.figures),
    hikari_tables=list(snakemake.input.hikari_tables),
    validation_summaries=list(snakemake.input.validation),
    title=snakemake.params.title,
    hikari_figures=list(snakemake.input.hikari_figures),
    out_html=snakemake.output.html,
)
