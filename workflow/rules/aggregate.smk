# Aggregation and evaluation: the deployable aggregator artifact, result tables, figures, and scoring a
# capture never seen (nidsflow.evaluate). Input lists come from common.smk's phase1_files(),
# cross_files() and baseline_files() (every score file the config asks for).

#: nidsflow.evaluate.tables.TABLE_NAMES, spelled out so parsing the workflow does not import the package
#: (tests/test_tables.py checks the two agree).
TABLE_NAMES = ("within", "cross_matrix", "aggregators", "ablation_B")


def tables_phase1_inputs(wildcards):
    return phase1_files()


def tables_cross_inputs(wildcards):
    return cross_files()


def tables_baseline_inputs(wildcards):
    return baseline_files()


def main_variant(ds):
    """JANUS's main variant of a dataset: the full model, or B2 (flow features only) on a flow-table store."""
    return "full" if has_packets(ds) else "B2"


def figure_seed():
    """The seed drawn in the figures: the first baseline seed that JANUS also ran, else JANUS's first."""
    common = [s for s in config["baselines"]["seeds"] if int(s) in SEEDS]
    return int(common[0]) if common else SEEDS[0]


def figures_inputs(wildcards):
    """JANUS's main-variant scores ("janus") and each configured baseline's scores (by method name), one seed."""
    seed, ds = figure_seed(), wildcards.ds
    files = {m: f"results/{ds}/baselines/{m}/seed{seed}/scores.npz" for m in config["baselines"]["methods"]}
    files["janus"] = f"results/{ds}/janus/{main_variant(ds)}/seed{seed}/phase1_scores.npz"
    return files


def new_capture_path(wildcards):
    captures = config["evaluate"].get("new_captures") or {}
    if wildcards.capture_name not in captures:
        raise WorkflowError(f"evaluate.new_captures has no capture named {wildcards.capture_name!r} "
                            f"(configured: {sorted(captures)})")
    return captures[wildcards.capture_name]


def new_capture_targets():
    """Each configured new capture scored by the full model (first seed) of every packet dataset that did not
    train on it (a capture among the dataset's own captures is skipped: it is not new to that model)."""
    captures = config["evaluate"].get("new_captures") or {}
    return [f"results/newcapture/{ds}/seed{SEEDS[0]}/{name}.csv" for ds in packet_datasets()
            for name, path in captures.items() if path not in dataset_config(ds).get("captures", [])]


def tables_targets():
    return [f"results/tables/{name}.{ext}" for name in TABLE_NAMES for ext in ("md", "csv")]


def figures_targets():
    return [f"results/figures/{ds}/{fig}.png" for ds in DATASETS for fig in ("roc", "score_distribution")]


rule fit_aggregator:
    input:
        scores="results/{ds}/janus/{variant}/seed{seed}/phase1_scores.npz",
    output:
        "results/{ds}/janus/{variant}/seed{seed}/aggregator.json",
    log:
        "logs/aggregate/fit_aggregator_{ds}_{variant}_seed{seed}.log",
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
    output:
        [report(f"results/tables/{name}.md", category="Tables") for name in TABLE_NAMES],
        [f"results/tables/{name}.csv" for name in TABLE_NAMES],
    log:
        "logs/aggregate/tables.log",
    benchmark:
        "benchmarks/aggregate/tables.tsv"
    params:
        config=config,
        fpr_target=config["evaluate"]["fpr_target"],
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_tables.py"


rule figures:
    input:
        unpack(figures_inputs),
    output:
        roc=report("results/figures/{ds}/roc.png", category="Figures", subcategory="{ds}"),
        dist=report("results/figures/{ds}/score_distribution.png", category="Figures", subcategory="{ds}"),
    log:
        "logs/aggregate/figures_{ds}.log",
    params:
        methods=config["baselines"]["methods"],
        fpr_target=config["evaluate"]["fpr_target"],
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_figures.py"


rule score_capture:
    input:
        model="results/{ds}/janus/full/seed{seed}/model.pt",
        aggregator="results/{ds}/janus/full/seed{seed}/aggregator.json",
        capture=new_capture_path,
    output:
        "results/newcapture/{ds}/seed{seed}/{capture_name}.csv",
    log:
        "logs/aggregate/score_capture_{ds}_seed{seed}_{capture_name}.log",
    params:
        extract=config["extract"],
        janus=config["janus"],
    resources:
        gpu=1,
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/aggregate_score_capture.py"
