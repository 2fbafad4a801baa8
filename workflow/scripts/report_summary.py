from nidsflow.logs import setup_snakemake_logging

setup_snakemake_logging(snakemake)

from pathlib import Path

from nidsflow.report import draw_summary_figures, write_summary

summary = draw_summary_figures(
    Path(snakemake.output.auroc_heatmap).parent,
    intervals_csv=snakemake.input.intervals[0] if snakemake.input.intervals else None,
    within_csv=snakemake.input.within_csv,
    headline=snakemake.params.headline,
    alerts_json=snakemake.input.alerts[0] if snakemake.input.alerts else None,
    loss_files=dict(zip(snakemake.params.loss_names, snakemake.input.loss)),
    min_class_flows=snakemake.params.min_class_flows,
)
write_summary(
    snakemake.output.md,
    tables=list(snakemake.input.tables),
    figures=list(snakemake.input.figures),
    hikari_tables=list(snakemake.input.hikari_tables),
    validation_summaries=list(snakemake.input.validation),
    title=snakemake.params.title,
    hikari_figures=list(snakemake.input.hikari_figures),
    out_html=snakemake.output.html,
    summary=summary,
    min_class_flows=snakemake.params.min_class_flows,
)
