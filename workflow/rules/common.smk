"""Python helpers of the workflow: config validation, dataset checks, wildcard constraints, targets."""

import dataclasses
import glob
import re
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from nidsflow.demo.generate import HIKARI_FILE, MANIFEST_FILE, capture_file
from nidsflow.capture.extract import manifest_files, plan_parts
from nidsflow.config_schema import load_schema, order_like_schema, unknown_key_message
from nidsflow import layout
from nidsflow.evaluate.tables import INTERVALS_FILE, STORE_FLOWS, TABLE_NAMES
from nidsflow.janus.variants import ScoreSettings, trained_as


def _typed_scalars(node):
    """Snakemake reads nested `--config` values as strings (`seeds=[42]` gives ["42"]): turn every string
    leaf that is a YAML number, boolean or null into that value, so overrides validate like the file."""
    if isinstance(node, dict):
        return {k: _typed_scalars(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_typed_scalars(v) for v in node]
    if isinstance(node, str):
        try:
            value = yaml.safe_load(node)
        except yaml.YAMLError:
            return node
        if isinstance(value, bool):  # YAML 1.1 also reads yes/no/on/off as booleans: only true/false count
            return value if node.strip().lower() in ("true", "false") else node
        return value if isinstance(value, (int, float)) or value is None and node.strip() in ("null", "~") else node
    return node


config.update(_typed_scalars(dict(config)))
# workflow/schemas/config.schema.yaml holds every key, its description and its default (nidsflow.config_schema):
# an unknown key (a typo) stops here naming it and the nearest valid key; validate() then checks the values and
# fills in the defaults; the sections are put in the schema's key order, so a config stating only what differs
# from the defaults gives its rules the very same params as one that states every key.
_SCHEMA = load_schema(Path(workflow.basedir) / "schemas" / "config.schema.yaml")
_UNKNOWN = unknown_key_message(config, _SCHEMA)
if _UNKNOWN:
    raise WorkflowError(_UNKNOWN)
validate(config, schema="../schemas/config.schema.yaml")
_ORDERED = order_like_schema(dict(config), _SCHEMA)
config.clear()
config.update(_ORDERED)

#: The study this configuration belongs to (config key "study"): every rule writes under results/{study}/,
#: logs/{study}/ and benchmarks/{study}/, the {study} wildcard pinned to this one value (wildcard_constraints
#: below), so running another configuration never touches this one's files. Helpers build concrete paths from
#: the prefixes below.
STUDY = config["study"]
RESULTS = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
BENCHMARKS = f"benchmarks/{STUDY}"
DATASETS = list(config["datasets"])
SEEDS = [int(s) for s in config["seeds"]]
JANUS = config["janus"]
DEMO_DOMAINS = list(config["demo"]["domains"])
#: Drivers whose stores have no packet sequences: only flow-level models run on them.
FLOW_TABLE_DRIVERS = {"flow_table"}


def _regex(names):
    return "|".join(sorted(map(str, names), key=len, reverse=True)) or "__none__"


wildcard_constraints:
    study=re.escape(STUDY),
    ds=_regex(DATASETS),
    src=_regex(DATASETS),
    tgt=_regex(DATASETS),
    domain=_regex(DEMO_DOMAINS),
    seed=r"\d+",
    variant=_regex(set(JANUS["variants"]) | set(config["quick"]["variants"])
                   | {layout.CROSS_VARIANT, layout.main_variant(True), layout.main_variant(False)}),
    method=_regex(set(config["baselines"]["methods"]) | set(config["quick"]["methods"])),
    hk=_regex(config["hikari"]["datasets"]),


# ---------------------------------------------------------------- datasets and their files


def dataset_config(ds):
    return config["datasets"][ds]


def is_demo(ds):
    return dataset_config(ds)["driver"] == "demo"


def has_packets(ds):
    return dataset_config(ds)["driver"] not in FLOW_TABLE_DRIVERS


def _expand(patterns):
    """Config paths may be globs (a dataset ships hundreds of captures); a glob matching nothing stays as is."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        files += matches or [pattern]
    return files


def dataset_files(ds):
    """Every raw input file of a dataset: its captures and its label tables."""
    cfg = dataset_config(ds)
    labels = cfg.get("labels", [])
    files = _expand(list(cfg.get("captures", [])) + (list(labels) if isinstance(labels, dict) else list(labels)))
    files += manifest_files(cfg)  # per-file label manifests (nidsflow.capture.extract)
    return list(dict.fromkeys(files))  # a per-file label glob names the captures again


def dataset_inputs(wildcards):
    return dataset_files(wildcards.ds)


def check_datasets_present():
    """Stop before building the DAG when a configured dataset's files are not where the config says."""
    missing = {}
    for ds in DATASETS:
        if is_demo(ds):
            continue  # generated by rule demo_traffic
        absent = [f for f in dataset_files(ds) if not Path(f).exists()]
        if not dataset_files(ds):
            absent = ["(no captures or labels configured)"]
        if absent:
            missing[ds] = absent
    if missing:
        lines = [f"  {ds}: " + ", ".join(files) for ds, files in missing.items()]
        raise WorkflowError(
            "Datasets are missing. Put these files where the config says (resources/README.md lists each "
            "dataset's official source and expected files), or remove the dataset from the config:\n"
            + "\n".join(lines)
        )


check_datasets_present()


# ---------------------------------------------------------------- what to build


def packet_datasets():
    return [ds for ds in DATASETS if has_packets(ds)]


def janus_runs():
    """(ds, variant, seed) of every JANUS model scored within its dataset (nidsflow.layout.janus_runs)."""
    return layout.janus_runs(DATASETS, has_packets, SEEDS, JANUS["variants"], JANUS["ablation_datasets"],
                             JANUS["ablation_seeds"])


#: janus keys that only plan which runs exist: changing them adds or drops jobs, never reruns a model.
JANUS_PLAN_KEYS = {"variants", "ablation_datasets", "ablation_seeds", "cross", "threads"}
#: janus keys read only when scoring (ScoreSettings): changing them rescores, never retrains.
JANUS_SCORE_KEYS = {f.name for f in dataclasses.fields(ScoreSettings)}


def janus_train_params():
    """The janus section as train_janus reads it (params: a change reruns training)."""
    return {k: v for k, v in JANUS.items() if k not in JANUS_PLAN_KEYS | JANUS_SCORE_KEYS}


def janus_score_params():
    """The janus section as the scoring rules read it (the model's own settings come from its checkpoint)."""
    return {k: v for k, v in JANUS.items() if k not in JANUS_PLAN_KEYS}


def janus_model(ds_wildcard):
    """Input function: the model.pt a (ds, variant, seed) is scored with, the one of the first variant trained
    identically (nidsflow.janus.variants.trained_as; nofix_disc -> full); ``ds_wildcard``: "ds" or "src"."""

    def model(w):
        return f"results/{w.study}/{w[ds_wildcard]}/janus/{trained_as(JANUS, w.variant)}/seed{w.seed}/model.pt"

    return model


def cross_runs():
    """(src, tgt, variant, seed) of every cross-dataset scoring (nidsflow.layout.cross_runs)."""
    return layout.cross_runs(layout.cross_pairs(packet_datasets(), JANUS["cross"]), SEEDS, janus_runs(),
                             JANUS["variants"], JANUS["ablation_datasets"], JANUS["ablation_seeds"])


def phase1_files():
    return [layout.path(layout.PHASE1_SCORES, study=STUDY, ds=ds, variant=v, seed=s) for ds, v, s in janus_runs()]


def cross_files():
    return [layout.path(layout.CROSS_SCORES, study=STUDY, src=a, tgt=b, variant=v, seed=s)
            for a, b, v, s in cross_runs()]


def baseline_files():
    return [
        layout.path(layout.BASELINE_SCORES, study=STUDY, ds=ds, method=m, seed=s)
        for ds in DATASETS
        for m in config["baselines"]["methods"]
        for s in config["baselines"]["seeds"]
    ]


def hikari_names():
    return [layout.safe_name(n, "hikari.datasets") for n in config["hikari"]["datasets"]]


#: The HIKARI branch is one chain of single jobs; started first, it runs beside JANUS and the baselines
#: instead of after them (on the demo it was the last ~4 minutes of the run, on one core).
HIKARI_PRIORITY = 10


HIKARI_OUTPUTS = (
    "comparison.md", "comparison.csv", "confusion_matrix.png",
    "validation_summary.json", "calibration_curve.png", "probability_distributions.png",
)


def hikari_files():
    return [f"{RESULTS}/hikari/{hk}/{name}" for hk in hikari_names() for name in HIKARI_OUTPUTS]


def report_tables():
    return [f"{RESULTS}/tables/{name}.md" for name in TABLE_NAMES]


def get_final_outputs():
    """Everything the configuration asks for, ending with the one-page summary."""
    return (
        phase1_files() + cross_files() + baseline_files() + tables_targets() + figures_targets()
        + new_capture_targets() + hikari_files() + [f"{RESULTS}/report/summary.html"]
    )


# ---------------------------------------------------------------- demo stage


DEMO_DIR = config["demo"]["out_dir"]


# ---------------------------------------------------------------- extract stage

def extract_dataset_params(wildcards):
    """The dataset's own config section (driver, captures, labels, time_offset_s, ...), without its split
    settings (changing how a dataset is split must not re-extract it)."""
    return {k: v for k, v in config["datasets"][wildcards.ds].items() if k != "split"}


# ---------------------------------------------------------------- split stage

def split_params(wildcards):
    """The split section with the dataset's own split keys (datasets.{ds}.split) over it."""
    return {**config["split"], **(dataset_config(wildcards.ds).get("split") or {})}


#: extract keys that only plan the jobs (plan_parts): a change re-plans, the jobs' params stay as they are.
EXTRACT_PLAN_KEYS = {"part_target_bytes"}
_EXTRACT_PLANS = {}


def extract_plan(ds):
    """The dataset's extraction jobs by name (nidsflow.capture.extract.plan_parts, a deterministic function of
    the config and the captures' sizes); computed once per run, so the DAG is stable."""
    if ds not in _EXTRACT_PLANS:
        parts = plan_parts(ds, dataset_config(ds), config["extract"], strict=False)
        _EXTRACT_PLANS[ds] = {p.name: p for p in parts}
    return _EXTRACT_PLANS[ds]


def extract_part_of(wildcards):
    plan = extract_plan(wildcards.ds)
    if wildcards.part not in plan:
        raise WorkflowError(f"dataset {wildcards.ds} has no extraction part {wildcards.part!r} "
                            f"(plan: {sorted(plan)}; extract.part_target_bytes changed?)")
    return plan[wildcards.part]


def extract_part_inputs(wildcards):
    """The part's captures and the label CSVs it joins (per-file labels name only captures)."""
    part = extract_part_of(wildcards)
    return list(dict.fromkeys(list(part.captures) + list(part.labels)))


def extract_part_params(wildcards):
    return extract_part_of(wildcards).as_dict()


def extract_job_params():
    """The extract section as the extraction jobs read it (the planning keys left out)."""
    return {k: v for k, v in config["extract"].items() if k not in EXTRACT_PLAN_KEYS}


def extract_part_dirs(wildcards):
    """Every part of the dataset, in plan order: the gather's inputs."""
    return [f"{RESULTS}/{wildcards.ds}/extract_parts/{name}" for name in extract_plan(wildcards.ds)]


# ---------------------------------------------------------------- baselines stage

def baseline_params(wildcards):
    """The method's own config block (config["baselines"][method], a context twin's falling back on its
    detector's); {} means the module's defaults."""
    from nidsflow.evaluate.baselines import method_params

    return method_params(config["baselines"], wildcards.method)


# ---------------------------------------------------------------- aggregate stage



def tables_phase1_inputs(wildcards):
    return phase1_files()


def tables_cross_inputs(wildcards):
    return cross_files()


def tables_baseline_inputs(wildcards):
    return baseline_files()


def tables_group_by():
    """Each dataset's split.group_by: the tables' bootstrap resamples captures where it is source_file."""
    return {ds: {**config["split"], **(dataset_config(ds).get("split") or {})}.get("group_by", "none")
            for ds in DATASETS}


def tables_store_inputs(wildcards):
    """The flows.parquet (each flow's source_file) of every dataset split by capture, for the tables' intervals."""
    return [layout.path(STORE_FLOWS, study=STUDY, ds=ds) for ds, g in tables_group_by().items()
            if g == "source_file"]


def quick_store_inputs():
    """tables_store_inputs for the quick study's datasets only."""
    return [layout.path(STORE_FLOWS, study=STUDY, ds=ds) for ds in quick_datasets()
            if tables_group_by()[ds] == "source_file"]


def main_variant(ds):
    return layout.main_variant(has_packets(ds))


def figure_seed():
    """The seed drawn in the figures: the first baseline seed that JANUS also ran, else JANUS's first."""
    common = [s for s in config["baselines"]["seeds"] if int(s) in SEEDS]
    return int(common[0]) if common else SEEDS[0]


def figures_inputs(wildcards):
    """JANUS's main-variant scores ("janus") and each configured baseline's scores (by method name), one seed."""
    seed, ds = figure_seed(), wildcards.ds
    files = {m: layout.path(layout.BASELINE_SCORES, study=STUDY, ds=ds, method=m, seed=seed)
             for m in config["baselines"]["methods"]}
    files["janus"] = layout.path(layout.PHASE1_SCORES, study=STUDY, ds=ds, variant=main_variant(ds), seed=seed)
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
    for name in captures:
        layout.safe_name(name, "evaluate.new_captures")
    return [f"{RESULTS}/newcapture/{ds}/seed{SEEDS[0]}/{name}.csv" for ds in packet_datasets()
            for name, path in captures.items() if path not in dataset_config(ds).get("captures", [])]


def tables_targets():
    return [f"{RESULTS}/tables/{name}.{ext}" for name in TABLE_NAMES for ext in ("md", "csv", "html")]


def figures_targets():
    return [f"{RESULTS}/figures/{ds}/{fig}.png" for ds in DATASETS for fig in ("roc", "score_distribution")]


# ---------------------------------------------------------------- hikari stage

def hikari_source(wildcards):
    """The configured source of table {hk}: {"csv": ...} or {"store": ...}."""
    return dict(config["hikari"]["datasets"][wildcards.hk])


def hikari_params(stage):
    """The hikari keys one stage reads (its rule's params: a change reruns only the rules that read it)."""
    from nidsflow.hikari.config import stage_config

    return stage_config(config["hikari"], stage)


def hikari_table_files(wildcards):
    """Input files of table {hk}: its CSV files (a folder's *.csv, a glob expanded) or the store's tables."""
    source = hikari_source(wildcards)
    if "store" in source:
        root = str(source["store"]).rstrip("/")
        return [f"{root}/flows.parquet", f"{root}/flow_features.parquet"]
    spec = str(source["csv"])
    if Path(spec).is_dir():
        return sorted(str(p) for p in Path(spec).glob("*.csv")) or [spec]
    return _expand([spec])


# ---------------------------------------------------------------- quick study

def quick_datasets():
    """quick.datasets (every dataset when empty); a name that is not a dataset is an error."""
    names = list(config["quick"]["datasets"]) or DATASETS
    unknown = [ds for ds in names if ds not in config["datasets"]]
    if unknown:
        raise WorkflowError(f"quick.datasets names {unknown}, not datasets of this config ({DATASETS})")
    return names


def quick_phase1_files(wildcards=None):
    """JANUS's main variant (full, or B2 on a flow table) and the quick.variants at every seed on the quick
    datasets."""
    runs = layout.janus_runs(quick_datasets(), has_packets, SEEDS, config["quick"]["variants"], quick_datasets(),
                             SEEDS)
    return [layout.path(layout.PHASE1_SCORES, study=STUDY, ds=ds, variant=v, seed=s) for ds, v, s in runs]


def quick_baseline_files(wildcards=None):
    return [layout.path(layout.BASELINE_SCORES, study=STUDY, ds=ds, method=m, seed=s)
            for ds in quick_datasets() for m in config["quick"]["methods"] for s in config["baselines"]["seeds"]]


def quick_config():
    """The config the quick tables are written with: its datasets, methods and variants only, no cross."""
    return {**config, "datasets": {ds: config["datasets"][ds] for ds in quick_datasets()},
            "baselines": {**config["baselines"], "methods": list(config["quick"]["methods"])},
            "janus": {**JANUS, "variants": list(config["quick"]["variants"]), "ablation_datasets": quick_datasets(),
                      "ablation_seeds": SEEDS, "cross": False}}


# ---------------------------------------------------------------- report stage

from nidsflow.evaluate.baselines import is_deep
from nidsflow.report import default_headline


def report_headline():
    """The dataset that opens the page: report.headline, or corpus_by_capture / the first dataset."""
    name = config["report"]["headline"]
    if name is None:
        return default_headline(DATASETS)
    if name not in DATASETS:
        raise WorkflowError(f"report.headline {name!r} is not a configured dataset (datasets: {', '.join(DATASETS)})")
    return name


def report_model_files(wildcards):
    """The headline's JANUS main-variant run at the figures' seed: its scores, aggregator, model and store."""
    ds = report_headline()
    run = dict(study=STUDY, ds=ds, variant=main_variant(ds), seed=figure_seed())
    return {
        "scores": layout.path(layout.PHASE1_SCORES, **run),
        "aggregator": layout.path("results/{study}/{ds}/janus/{variant}/seed{seed}/aggregator.json", **run),
        "model": layout.path("results/{study}/{ds}/janus/{variant}/seed{seed}/model.pt", **run),
        "flows": f"{RESULTS}/{ds}/store/flows.parquet",
        "features": f"{RESULTS}/{ds}/store/flow_features.parquet",
    }


def report_intervals_input(wildcards):
    """intervals.csv (the AUROC intervals and operating points), where rule tables writes it; none for a
    checkout whose tables rule predates it (the page then draws the means and says the intervals are missing)."""
    return [f"{RESULTS}/tables/intervals.csv"] if "intervals" in rules.tables.output.keys() else []


def report_alerts_input(wildcards):
    """top_alerts.json when the headline dataset has a JANUS run (every configured dataset has one), else none."""
    return [f"{RESULTS}/report/top_alerts.json"] if report_headline() in DATASETS else []


def report_loss_files():
    """Display name -> per-epoch loss file on the headline dataset at the figures' seed: JANUS's train_log.tsv
    and each deep baseline's auroc.json (its loss_history)."""
    ds = report_headline()
    if ds is None:
        return {}
    from nidsflow.evaluate.baselines import DISPLAY

    v, seed = main_variant(ds), figure_seed()
    files = {f"JANUS ({v})": f"{RESULTS}/{ds}/janus/{v}/seed{seed}/train_log.tsv"}
    bseed = seed if seed in [int(s) for s in config["baselines"]["seeds"]] else int(config["baselines"]["seeds"][0])
    for m in config["baselines"]["methods"]:
        if is_deep(m):
            files[DISPLAY.get(m, m)] = f"{RESULTS}/{ds}/baselines/{m}/seed{bseed}/auroc.json"
    return files
