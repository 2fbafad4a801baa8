# The one-page human-readable summary of both branches (nidsflow.report).


rule report:
    input:
        tables=report_tables(),
        figures=[f for f in figures_targets()],
        hikari_tables=[f"results/hikari/{hk}/comparison.md" for hk in hikari_names()],
        validation=[f"results/hikari/{hk}/validation_summary.json" for hk in hikari_names()],
    output:
        report("results/report/summary.md", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/report/summary.log",
    params:
        title="nidsflow results",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/report_summary.py"
