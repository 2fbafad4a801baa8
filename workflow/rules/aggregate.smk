# Aggregation and evaluation: the deployable aggregator artifact, result tables, figures, and scoring a
# capture never seen (nidsflow.evaluate). Input lists come from common.smk's phase1_files(),
# cross_files() and baseline_files() (every score file the config asks for).


rule fit_aggregator:
    input:
        scores=layout.PHASE1_SCORES,
        # its fingerprint is recorded in the artifact: deployment refuses an aggregator of another model
        model="results/{study}/{ds}/janus/{variant}/seed{seed}/model.pt",
    output:
        "results/{study}/{ds}/janus/{variant}/seed{seed}/aggregator.json",
    log:
        "logs/{study}/aggregate/fit_aggregator_{ds}_{variant}_seed{seed}.log",
    params:
        fpr_target=config["evaluate"]["fpr_target"],
        aggregator=config["evaluate"]["aggregator"],
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_fit.py"


rule tables:
    input:
        phase1=tables_phase1_inputs,
        cross=tables_cross_inputs,
        baselines=tables_baseline_inputs,
        # each flow's capture, for the intervals of datasets split by capture (split.group_by source_file)
        stores=tables_store_inputs,
    output:
        [f"results/{{study}}/tables/{name}.md" for name in TABLE_NAMES],
        [f"results/{{study}}/tables/{name}.csv" for name in TABLE_NAMES],
        [
            report(f"results/{{study}}/tables/{name}.html", caption=f"../report/table_{name}.rst", category="Tables")
            for name in TABLE_NAMES
        ],
        # the within table's numbers with their intervals, one row per (dataset, method, category)
        intervals=f"results/{{study}}/tables/{INTERVALS_FILE}",
    log:
        "logs/{study}/aggregate/tables.log",
    benchmark:
        "benchmarks/{study}/aggregate/tables.tsv"
    params:
        config=config,
        fpr_target=config["evaluate"]["fpr_target"],
        bootstrap=config["evaluate"]["bootstrap"],
        min_class_flows=config["evaluate"]["min_class_flows"],
        group_by=tables_group_by(),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_tables.py"


rule figures:
    input:
        unpack(figures_inputs),
    output:
        roc=report(
            "results/{study}/figures/{ds}/roc.png", caption="../report/roc.rst", category="Figures", subcategory="{ds}"
        ),
        dist=report(
            "results/{study}/figures/{ds}/score_distribution.png",
            caption="../report/score_distribution.rst",
            category="Figures",
            subcategory="{ds}",
        ),
    log:
        "logs/{study}/aggregate/figures_{ds}.log",
    params:
        methods=config["baselines"]["methods"],
        fpr_target=config["evaluate"]["fpr_target"],
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_figures.py"


rule deploy_settings:
    input:
        # its fingerprint is recorded in deploy.yaml: deployment refuses settings of another model
        model="results/{study}/{ds}/janus/{variant}/seed{seed}/model.pt",
    output:
        "results/{study}/{ds}/janus/{variant}/seed{seed}/deploy.yaml",
    log:
        "logs/{study}/aggregate/deploy_settings_{ds}_{variant}_seed{seed}.log",
    params:
        extract=config["extract"],
        janus=janus_score_params(),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_deploy_settings.py"


rule score_capture:
    input:
        model="results/{study}/{ds}/janus/full/seed{seed}/model.pt",
        aggregator="results/{study}/{ds}/janus/full/seed{seed}/aggregator.json",
        # completes the model directory (model.pt, aggregator.json, deploy.yaml) nidsflow watch reads
        deploy="results/{study}/{ds}/janus/full/seed{seed}/deploy.yaml",
        capture=new_capture_path,
    output:
        "results/{study}/newcapture/{ds}/seed{seed}/{capture_name}.csv",
    log:
        "logs/{study}/aggregate/score_capture_{ds}_seed{seed}_{capture_name}.log",
    benchmark:
        "benchmarks/{study}/aggregate/score_capture_{ds}_seed{seed}_{capture_name}.tsv"
    params:
        extract=config["extract"],
        janus=janus_score_params(),
    resources:
        gpu=1,
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_score_capture.py"


# The quick study: JANUS and the quick.methods baselines on quick.datasets, their tables apart from the
# study's own (README: snakemake quick_study).
rule quick_study:
    input:
        phase1=quick_phase1_files(),
        cross=[],
        baselines=quick_baseline_files(),
        stores=quick_store_inputs(),
    output:
        [f"{RESULTS}/quick/tables/{name}.md" for name in TABLE_NAMES],
        [f"{RESULTS}/quick/tables/{name}.csv" for name in TABLE_NAMES],
        intervals=f"{RESULTS}/quick/tables/{INTERVALS_FILE}",
    log:
        f"{LOGS}/aggregate/quick_tables.log",
    benchmark:
        f"{BENCHMARKS}/aggregate/quick_tables.tsv"
    params:
        config=quick_config(),
        fpr_target=config["evaluate"]["fpr_target"],
        bootstrap=config["evaluate"]["bootstrap"],
        min_class_flows=config["evaluate"]["min_class_flows"],
        group_by=tables_group_by(),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_tables.py"
