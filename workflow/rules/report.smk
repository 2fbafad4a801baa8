# The one-page human-readable summary of both branches (nidsflow.report): markdown, and a self-contained
# HTML page that the Snakemake report (`snakemake --report report.html`) shows under "Summary", with the page's
# own figures (report/figures/*.png) beside it. The page opens on the headline dataset (config report.headline);
# rule report_alerts explains its highest-scoring test flows with the deployment path when JANUS ran on it.

rule report_alerts:
    input:
        unpack(report_model_files),
    output:
        "results/{study}/report/top_alerts.json",
    log:
        "logs/{study}/report/top_alerts.log",
    params:
        dataset=report_headline(),
        run=f"JANUS {main_variant(report_headline()) if report_headline() else ''} seed {figure_seed()}",
        janus=janus_score_params(),
        extract=config["extract"],
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/report_alerts.py"


rule report:
    input:
        tables=report_tables(),
        within_csv=f"{RESULTS}/tables/within.csv",
        intervals=report_intervals_input,
        figures=figures_targets(),
        alerts=report_alerts_input,
        loss=list(report_loss_files().values()),
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
        auroc_heatmap=report(
            "results/{study}/report/figures/auroc_heatmap.png",
            caption="../report/summary_auroc_heatmap.rst",
            category="Summary",
        ),
        auroc_intervals=report(
            "results/{study}/report/figures/auroc_intervals.png",
            caption="../report/summary_auroc_intervals.rst",
            category="Summary",
        ),
        class_heatmap=report(
            "results/{study}/report/figures/class_heatmap.png",
            caption="../report/summary_class_heatmap.rst",
            category="Summary",
        ),
        operating_point=report(
            "results/{study}/report/figures/operating_point.png",
            caption="../report/summary_operating_point.rst",
            category="Summary",
        ),
        alerts=report(
            "results/{study}/report/figures/alerts.png", caption="../report/summary_alerts.rst", category="Summary"
        ),
        learning_curves=report(
            "results/{study}/report/figures/learning_curves.png",
            caption="../report/summary_learning_curves.rst",
            category="Summary",
        ),
    log:
        "logs/{study}/report/summary.log",
    params:
        title=f"nidsflow results: study {STUDY}",
        headline=report_headline(),
        # the tables' threshold (evaluate.min_class_flows) greys the same classes the tables mark
        min_class_flows=config["evaluate"].get("min_class_flows", 30),
        loss_names=list(report_loss_files()),
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/report_summary.py"
