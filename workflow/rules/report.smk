# The one-page human-readable summary of both branches (nidsflow.report): markdown, and a self-contained
# HTML page that the Snakemake report (`snakemake --report report.html`) shows under "Summary".


rule report:
    input:
        tables=report_tables(),
        figures=figures_targets(),
        hikari_tables=[f"results/{{study}}/hikari/{hk}/comparison.md" for hk in hikari_names()],
        validation=[f"results/{{study}}/hikari/{hk}/validation_summary.json" for hk in hikari_names()],
        hikari_figures=[
            f"results/{{study}}/hikari/{hk}/{png}"
            for hk in hikari_names()
            for png in ("confusion_matrix.png", "calibration_curve.png", "probability_distributions.png")
        ],
    output:
        md="results/{study}/report/summary.md",
        html=report("results/{study}/report/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/{study}/report/summary.log",
    params:
        title=f"nidsflow results: study {STUDY}",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/report_summary.py"
