"""Result tables (markdown + CSV), every cell computed here from the pipeline's score files.

Tables written to ``out_dir`` (results/{study}/tables/):

``within``        dataset x method: test AUROC (%) mean +- std over seeds with the 95 % bootstrap interval of
                  the seed mean, overall, the per-class median (median over the attack classes with at least
                  ``min_class_flows`` test flows of the per-class AUROC of each run) and per attack class, the
                  number of test flows in each column's header, the best of each column in bold; then AUPRC and
                  the operating point at the benign-val threshold (detection rate, realised false-positive
                  rate); JANUS (its main variant, deployable aggregator A1) and every baseline. Its numbers
                  are also in ``intervals.csv``, one row per (dataset, method, category), for the report.
``cross_matrix``  source x target AUROC of JANUS's "cross" model, aggregator fitted on the target's
                  benign val; the diagonal is the within-dataset full model.
``aggregators``   group A (A1-A7, A1z and the score options' rows) on the full model's score vectors: within per dataset and their
                  mean, cross mean and cross worst over the off-diagonal pairs (the "cross" model).
``length_bands``  issue 23: AUROC per packet-count band (1, 2, 3-8, 9-15, 16+) of JANUS's rows and of every
                  baseline with and without the length-aware benign reference (``+L``).
``ablation_B``    group B (B1-B5): within / cross-mean / cross-worst AUROC difference to the full
                  model, in AUROC points, on the same datasets, seeds and (source, target) pairs;
                  across datasets the variant's own model is compared with the full model (sigma
                  janus.sigma), both scoring the same target.

A cell with no computed number says "not run". Each table ends with its provenance: the sha256
of the configuration (canonical JSON), the seeds it used, the git commit and the date.
CSV files are long-format (one row per cell) with numeric mean/std/n_seeds and the printed cell.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow import layout
from nidsflow.evaluate.aggregators import (AGGREGATORS, DEPLOYABLE, MIN_BAND_CLASS, REPORT_BANDS, AggregatorError,
                                           FlowNLL, length_referenced_score, length_referenced_table,
                                           make_aggregator, per_band_auroc)
from nidsflow.evaluate.baselines import ALL_METHODS, DISPLAY, NOT_RUN
from nidsflow.janus.variants import DEFAULT_VARIANT_OVERRIDES, FIX_ABLATIONS
from nidsflow.evaluate.metrics import (MetricError, ResamplingDraws, evaluate_scores, format_mean_std, mean_std,
                                      percentile_interval)
from nidsflow.report import write_markdown_as_html
from nidsflow.scores import ScoreTable

log = logging.getLogger(__name__)

NOT_RUN_CELL = "not run"
#: JANUS's rows in the within and length_bands tables (issue 23): row name -> aggregator (flow_nll alone is A10
#: of the group-A table); a row that did not run on a dataset (flow_nll* without the flow_nll score option's
#: column, the L rows on score files without packet counts) is left out.
LENGTH_ROWS = {DEPLOYABLE: DEPLOYABLE, "A1L": "A1L", "flow_nll": FlowNLL.name, "flow_nllL": "flow_nllL"}
ABLATION_VARIANTS = ("B1", "B2", "B3", "B4", "B5")
#: The within table's numbers, machine-readable, beside the tables (rule tables writes it with them).
INTERVALS_FILE = "intervals.csv"
INTERVAL_COLUMNS = ("dataset", "method", "category", "n_benign", "n_attack", "n_seeds", "auroc", "auroc_lo",
                    "auroc_hi", "auprc", "det_rate", "fpr_realised", "fpr_target", "in_median", "group_by")
#: config evaluate.bootstrap's defaults (workflow/schemas/config.schema.yaml).
BOOTSTRAP_DEFAULTS = {"n_boot": 1000, "level": 0.95, "seed": 0}
#: config evaluate.min_class_flows's default: a category with fewer test flows is shown, not in the median.
MIN_CLASS_FLOWS = 30
#: Marks a category column with fewer than min_class_flows test flows (greyed by a renderer; "few_flows" in CSV).
FEW_FLOWS_MARK = "‡"
#: Where a dataset's store keeps each flow's capture (source_file), read for capture-level intervals.
STORE_FLOWS = "results/{study}/{ds}/store/flows.parquet"


# ---------------------------------------------------------------- provenance

def config_hash(config: dict) -> str:
    """sha256 of the configuration as canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the code that computed the tables (by default the checkout holding this package)."""
    cwd = Path(__file__).resolve().parent if cwd is None else cwd
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def provenance(config: dict, seeds, notes=()) -> list[str]:
    lines = ["", "---", "Provenance:",
             f"- config sha256: {config_hash(config)}",
             f"- seeds: {', '.join(str(s) for s in sorted(set(seeds))) or 'none'}",
             f"- git commit: {git_commit()}",
             f"- date (UTC): {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S')}",
             "- every number above was computed by this pipeline from its own score files; none is copied "
             "from a paper; a cell that was not run says \"not run\"."]
    lines += [f"- note: {n}" for n in notes]
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return out


# ---------------------------------------------------------------- loading and scoring runs

@dataclass
class ResultSet:
    """Score files of one pipeline run, keyed by their wildcards (paths parsed, tables loaded lazily)."""

    janus: dict = field(default_factory=dict)      # (ds, variant, seed) -> path
    cross: dict = field(default_factory=dict)      # (src, tgt, variant, seed) -> path
    baselines: dict = field(default_factory=dict)  # (ds, method, seed) -> path
    _cache: dict = field(default_factory=dict)

    @classmethod
    def from_files(cls, phase1_files=(), cross_files=(), baseline_files=()) -> "ResultSet":
        r = cls()
        for f in phase1_files:
            d = layout.parse(layout.PHASE1_SCORES, f)
            r.janus[(d["ds"], d["variant"], d["seed"])] = Path(f)
        for f in cross_files:
            d = layout.parse(layout.CROSS_SCORES, f)
            r.cross[(d["src"], d["tgt"], d["variant"], d["seed"])] = Path(f)
        for f in baseline_files:
            d = layout.parse(layout.BASELINE_SCORES, f)
            r.baselines[(d["ds"], d["method"], d["seed"])] = Path(f)
        return r

    def load(self, path: Path) -> ScoreTable | None:
        """The table, or None when the file is absent or empty (a run marked "not run")."""
        if path not in self._cache:
            if not Path(path).exists():
                log.warning("%s: missing; its cells say not run", path)
                self._cache[path] = None
            else:
                t = ScoreTable.load(path)
                self._cache[path] = t if len(t.flow_id) else None
        return self._cache[path]

    def datasets(self) -> list[str]:
        return sorted({k[0] for k in self.janus} | {k[0] for k in self.baselines}
                      | {k[0] for k in self.cross} | {k[1] for k in self.cross})

    def janus_main_variant(self, ds) -> str | None:
        variants = {k[1] for k in self.janus if k[0] == ds}
        return "full" if "full" in variants else ("B2" if "B2" in variants else None)


def aggregated_metrics(table: ScoreTable, aggregator: str = DEPLOYABLE, fpr_target: float | None = None,
                       origin: str = "", draws: ResamplingDraws | None = None, groups=None) -> dict | None:
    """Fit the aggregator on the table's benign val rows, then evaluate its test rows (with bootstrap replicates
    when ``draws`` is given, resampling ``groups``); None if it cannot run."""
    try:
        agg = make_aggregator(aggregator).fit_table(table)
    except AggregatorError as e:
        log.info("%s: aggregator %s not run (%s)", origin, aggregator, e)
        return None
    s = agg.score_table(table)
    try:
        return evaluate_scores(table.split, table.attack_class, table.is_attack, s, fpr_target, draws, groups)
    except MetricError as e:
        log.warning("%s: %s", origin, e)
        return None


def baseline_metrics(table: ScoreTable, fpr_target=None, draws: ResamplingDraws | None = None,
                     groups=None) -> dict | None:
    try:
        return evaluate_scores(table.split, table.attack_class, table.is_attack, table.scores[:, 0], fpr_target,
                               draws, groups)
    except MetricError as e:
        log.warning("baseline: %s", e)
        return None


#: Within-table column: the median over attack classes of one run's per-class AUROC. Overall AUROC is dominated
#: by the class with most flows; the median weighs every class alike (the headline of per-file datasets).
MEDIAN_COLUMN = "per-class median"


def per_class_median(metrics: dict, min_flows: int = 0) -> float | None:
    """Median over the attack classes of the run's per-class AUROC; classes without one, or with fewer than
    ``min_flows`` test flows in this run (an AUROC of a handful of flows moves by whole points when one of
    them changes rank), are left out."""
    vals = [c["auroc"] for c in metrics["per_class"].values()
            if c.get("auroc") is not None and c.get("n", min_flows) >= min_flows]
    return float(np.median(vals)) if vals else None


def janus_parameter_count(phase1_scores: Path) -> int | None:
    """Parameters of the JANUS model beside a phase1_scores.npz (its model.pt); None when absent."""
    model = Path(phase1_scores).with_name("model.pt")
    if not model.exists():
        return None
    from nidsflow.evaluate.baselines.common import count_parameters
    from nidsflow.janus.train import load_model

    return count_parameters(load_model(model, device="cpu")[0])


def baseline_parameter_count(scores: Path) -> tuple[int | None, str]:
    """(n_parameters, what is counted) from the auroc.json beside a baseline's scores.npz."""
    info = Path(scores).with_name("auroc.json")
    try:
        d = json.loads(info.read_text())
    except (OSError, ValueError):
        return None, ""
    return d.get("n_parameters"), d.get("parameter_count", "")


def format_parameters(counts: list, stored: bool = False) -> str:
    """Mean parameter count over seeds as 12.3k / 1.2M ("-" when unknown); "†" marks stored values."""
    counts = [c for c in counts if c is not None]
    if not counts:
        return "-"
    n = float(np.mean(counts))
    text = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"
    return text + (" †" if stored else "")


def _collect(per_seed: dict[int, dict | None], key: str | None, min_flows: int = 0):
    """Values over seeds of overall AUROC (key None), of the per-class median (MEDIAN_COLUMN, over the classes
    with at least ``min_flows`` test flows) or of one class's AUROC; (values, seeds)."""
    vals, seeds = [], []
    for s, m in sorted(per_seed.items()):
        if m is None:
            continue
        if key is None:
            v = m["auroc"]
        elif key == MEDIAN_COLUMN:
            v = per_class_median(m, min_flows)
        else:
            v = m["per_class"].get(key, {}).get("auroc")
        if v is not None:
            vals.append(v)
            seeds.append(s)
    return vals, seeds


# ---------------------------------------------------------------- the tables

class TableWriter:
    """Writes every table of one study. ``bootstrap`` (config evaluate.bootstrap: n_boot, level, seed) sets the
    within table's intervals; ``min_class_flows`` the smallest category the per-class median counts;
    ``group_by`` (dataset -> its split.group_by) and ``store_flows`` (dataset -> its store's flows.parquet, read
    for the flows' captures) choose what the bootstrap resamples: captures for ``source_file``, else flows."""

    def __init__(self, results: ResultSet, config: dict, out_dir: str | Path, fpr_target: float | None = None,
                 bootstrap: dict | None = None, min_class_flows: int = MIN_CLASS_FLOWS,
                 group_by: dict | None = None, store_flows: dict | None = None):
        self.r, self.config, self.out = results, config, Path(out_dir)
        self.fpr = fpr_target
        self.boot = {**BOOTSTRAP_DEFAULTS, **(bootstrap or {})}
        self.draws = ResamplingDraws(self.boot["n_boot"], self.boot["seed"])
        self.min_flows = int(min_class_flows)
        self.group_by = dict(group_by or {})
        self.store_flows = {ds: Path(p) for ds, p in (store_flows or {}).items()}
        self._sources: dict = {}
        self.out.mkdir(parents=True, exist_ok=True)
        self._janus_cache: dict = {}  # per-run metrics of JANUS and the baselines

    def resamples_captures(self, ds) -> bool:
        return self.group_by.get(ds, "none") == "source_file"

    def _groups(self, ds, table: ScoreTable) -> np.ndarray:
        """Each row's bootstrap unit: its capture (the store's source_file) on a capture-disjoint split, else
        the flow itself (its flow id)."""
        if not self.resamples_captures(ds):
            return table.flow_id
        if ds not in self._sources:
            path = self.store_flows.get(ds)
            if path is None:
                raise ValueError(f"dataset {ds}: split.group_by is source_file, so its intervals resample captures, "
                                 f"but the tables were given no {STORE_FLOWS.replace('{ds}', ds)}")
            f = pd.read_parquet(path, columns=["flow_id", "source_file"])
            if not np.array_equal(f["flow_id"].to_numpy(), np.arange(len(f))):
                raise ValueError(f"{path}: flow_id is not arange(N)")
            self._sources[ds] = f["source_file"].to_numpy(dtype=str)
        src = self._sources[ds]
        if len(table.flow_id) and int(table.flow_id.max()) >= len(src):
            raise ValueError(f"dataset {ds}: scores name flow id {int(table.flow_id.max())}, but "
                             f"{self.store_flows[ds]} has {len(src)} flows (a store rebuilt after scoring?)")
        return src[table.flow_id]

    # per-run metrics, cached; ``boot``: with the bootstrap replicates of its AUROCs (the within table's runs)
    def janus_run(self, ds, variant, seed, aggregator=DEPLOYABLE, boot=False):
        key = ("w", ds, variant, seed, aggregator)
        cached = self._janus_cache.get(key, False)
        if cached is False or (boot and cached is not None and "replicates" not in cached):
            path = self.r.janus.get((ds, variant, seed))
            t = self.r.load(path) if path else None
            extra = {"draws": self.draws, "groups": self._groups(ds, t)} if boot and t is not None else {}
            self._janus_cache[key] = None if t is None else aggregated_metrics(t, aggregator, self.fpr, str(path),
                                                                               **extra)
        return self._janus_cache[key]

    def cross_run(self, src, tgt, seed, aggregator=DEPLOYABLE, variant=layout.CROSS_VARIANT):
        key = ("x", src, tgt, variant, seed, aggregator)
        if key not in self._janus_cache:
            path = self.r.cross.get((src, tgt, variant, seed))
            t = self.r.load(path) if path else None
            self._janus_cache[key] = None if t is None else aggregated_metrics(t, aggregator, self.fpr, str(path))
        return self._janus_cache[key]

    def _methods(self):
        """The baselines the tables show: those of the config's baselines.methods and any with results, in the
        registry's order (a method neither configured nor run gets no "not run" row); every method when the
        config names none."""
        configured = (self.config or {}).get("baselines", {}).get("methods")
        if configured is None:
            return list(ALL_METHODS)
        ran = {k[1] for k in self.r.baselines}
        return [m for m in ALL_METHODS if m in set(configured) or m in ran]

    def _model_variants(self, ds):
        """JANUS variants run on ``ds`` besides full and B2, in the variants' defined order: each gets within
        rows of its own (the fix ablations nofix_* have their table, ``fixes``; cross is the cross matrix's)."""
        order = list(DEFAULT_VARIANT_OVERRIDES)
        ran = {k[1] for k in self.r.janus if k[0] == ds} - {"full", "B2", layout.CROSS_VARIANT} - set(FIX_ABLATIONS)
        return sorted(ran, key=lambda v: (order.index(v) if v in order else len(order), v))

    def _seeds(self, keys, ds=None, variant=None):
        return sorted({k[2] for k in keys if (ds is None or k[0] == ds) and (variant is None or k[1] == variant)})

    def _baseline_runs(self, ds, method, boot=False):
        """(seeds, seed -> metrics or None) of one baseline on one dataset (None: its file says "not run");
        ``boot``: with the bootstrap replicates of its AUROCs."""
        seeds = sorted(k[2] for k in self.r.baselines if k[0] == ds and k[1] == method)
        per = {}
        for s in seeds:
            key = ("b", ds, method, s)
            cached = self._janus_cache.get(key, False)  # every table asks again: evaluate each run once
            if cached is False or (boot and cached is not None and "replicates" not in cached):
                t = self.r.load(self.r.baselines[(ds, method, s)])
                extra = {"draws": self.draws, "groups": self._groups(ds, t)} if boot and t is not None else {}
                self._janus_cache[key] = None if t is None else baseline_metrics(t, self.fpr, **extra)
            per[s] = self._janus_cache[key]
        return seeds, per

    def _cross_keys(self, variant=layout.CROSS_VARIANT, pair=None):
        """(src, tgt, seed) of the cross scores of one variant (of one (src, tgt) pair)."""
        return sorted((a, b, s) for a, b, v, s in self.r.cross if v == variant and (pair is None or (a, b) == pair))

    def _write(self, name, md_lines, csv_rows, seeds, notes=()):
        prov = provenance(self.config, seeds, notes)
        md = "\n".join(md_lines + prov)
        (self.out / f"{name}.md").write_text(md + "\n")
        write_markdown_as_html(md, self.out / f"{name}.html", md_lines[0].lstrip("# "))
        df = pd.DataFrame(csv_rows)
        with open(self.out / f"{name}.csv", "w") as fh:
            df.to_csv(fh, index=False)
            for line in prov[2:]:
                fh.write(f"# {line.lstrip('- ')}\n")
        log.info("wrote %s/%s.{md,html,csv} (%d cells)", self.out, name, len(csv_rows))

    # ---- within
    def _within_entries(self, ds):
        """The within table's rows of one dataset: (display, seed -> metrics with replicates, reason not run,
        parameter counts over seeds, stored values?)."""
        entries = []
        main = self.r.janus_main_variant(ds)
        for variant, label in (("full", "JANUS (full, A1)"), ("B2", "JANUS B2 flow features only (A1)")):
            seeds = self._seeds(self.r.janus, ds, variant)
            if variant == "full" and not seeds and main != "B2":
                entries.append((label, {}, "no JANUS run", [], False))
            if seeds:
                entries.append((label, {s: self.janus_run(ds, variant, s, boot=True) for s in seeds}, None,
                                [janus_parameter_count(self.r.janus[(ds, variant, s)]) for s in seeds], False))
                entries += [(label.replace("A1)", f"{agg})"), per, None, entries[-1][3], False)  # issue 23's rows
                            for agg, per in self._length_rows(ds, variant, seeds, boot=True)]
        for variant in self._model_variants(ds):  # the other JANUS models run here (B1, context, ...): rows of their own
            seeds = self._seeds(self.r.janus, ds, variant)
            label = f"JANUS ({variant}, A1)"
            entries.append((label, {s: self.janus_run(ds, variant, s, boot=True) for s in seeds}, None,
                            [janus_parameter_count(self.r.janus[(ds, variant, s)]) for s in seeds], False))
            entries += [(label.replace("A1)", f"{agg})"), per, None, entries[-1][3], False)
                        for agg, per in self._length_rows(ds, variant, seeds, boot=True)]
        for method in self._methods():
            seeds, per = self._baseline_runs(ds, method, boot=True)
            reason = NOT_RUN.get(method) if not any(v is not None for v in per.values()) else None
            if reason is None and not any(v is not None for v in per.values()):
                reason = self._baseline_reason(ds, method, seeds)
            counted = [baseline_parameter_count(self.r.baselines[(ds, method, s)]) for s in seeds if per[s]]
            entries.append((DISPLAY.get(method, method), per, reason, [n for n, _ in counted],
                            any(what.startswith("stored values") for _, what in counted)))
            if reason is None:  # its length-referenced twin (issue 23)
                entries.append(self._baseline_l_entry(ds, method, entries[-1], boot=True))
        return entries

    def _column(self, per: dict, key: str | None) -> dict:
        """One method's cell of one column (key None: overall; MEDIAN_COLUMN; or a class) over its seeds: AUROC
        values and seeds, the bootstrap interval of their mean, AUPRC, detection rate, realised FPR, flow counts.

        The interval: per replicate, the mean over seeds of each seed's resampled AUROC, then its percentiles
        (each seed's own test set resampled, :class:`~nidsflow.evaluate.metrics.ResamplingDraws`)."""
        vals, seeds = _collect(per, key, self.min_flows)
        c = {"vals": vals, "seeds": seeds, "lo": None, "hi": None, "ap": [], "det": [], "fpr": [], "n_b": [],
             "n_a": []}
        if key == MEDIAN_COLUMN:
            return c
        reps = []
        for s in seeds:
            m = per[s]
            d = m if key is None else m["per_class"][key]
            thr = m.get("threshold") or {}
            c["ap"].append(d.get("ap"))
            c["det"].append(thr.get("test_tpr") if key is None else d.get("tpr"))
            c["fpr"].append(thr.get("test_fpr"))
            c["n_b"].append(m["n_test_benign"])
            c["n_a"].append(m["n_test_attack"] if key is None else d["n"])
            if "replicates" in m:
                reps.append(m["replicates"]["overall" if key is None else key])
        if reps and len(reps) == len(seeds):
            c["lo"], c["hi"] = percentile_interval(np.mean(reps, axis=0), self.boot["level"])
        return c

    @staticmethod
    def _count_text(counts) -> str:
        lo, hi = min(counts), max(counts)
        return f"{lo}" if lo == hi else f"{lo}–{hi}"

    def within(self):
        fpr_pct = "the configured" if self.fpr is None else f"{100 * self.fpr:g} %"
        lvl = f"{100 * self.boot['level']:g} %"
        md = ["# Within-dataset AUROC (%)", "",
              f"Test AUROC in percent, mean ± sample std over seeds, then [the {lvl} bootstrap interval of that "
              "mean]; per attack class: that class vs the test benign flows; per-class median: the median over "
              f"attack classes with at least {self.min_flows} test flows of each run's per-class AUROC, then mean "
              "± std over seeds. Each column's header gives its test flows (benign / attack; a range when the "
              f"seeds' splits differ); {FEW_FLOWS_MARK} marks a class with fewer than {self.min_flows} test flows "
              "in a run: shown, left out of the per-class median. The best mean of each column is in bold. JANUS: "
              "deployable score (Mahalanobis-OAS, aggregator A1, fitted on benign val).", "",
              f"Intervals: percentile bootstrap ({self.boot['n_boot']} replicates, seed {self.boot['seed']}), "
              "stratified by class; each seed's test set is resampled on its own and each replicate averages the "
              "seeds' resampled AUROCs. A dataset split by capture (split.group_by source_file) resamples whole "
              "captures (its flows' source files), any other resamples flows.", "",
              f"Then per dataset: AUPRC (%, average precision; per class: that class vs the test benign flows, so "
              f"it depends on the class's share) and the operating point a SOC sees at the threshold fitted on "
              f"benign val for {fpr_pct} false positives (evaluate.fpr_target): the detection rate (share of the "
              "test attack flows above it) and the realised false-positive rate on the test benign flows, mean ± "
              "std over seeds; AUPRC's best is in bold."]
        rows, interval_rows, all_seeds = [], [], set()
        overview, overview_median = {}, {}  # label -> ds -> (cell, mean)
        for ds in self.r.datasets():
            entries = self._within_entries(ds)
            classes = sorted({c for _, per, *_ in entries for m in per.values() if m for c in m["per_class"]})
            runs = [m for _, per, *_ in entries for m in per.values() if m]
            few = {c for c in classes if any(m["per_class"][c]["n"] < self.min_flows
                                               for m in runs if c in m["per_class"])}
            keys = [None, MEDIAN_COLUMN] + classes
            cols = {label: {k: self._column(per, k) for k in keys} for label, per, *_ in entries}

            def head(k):
                if k == MEDIAN_COLUMN:
                    return MEDIAN_COLUMN
                nb = [m["n_test_benign"] for m in runs if k is None or k in m["per_class"]]
                na = [m["n_test_attack"] if k is None else m["per_class"][k]["n"] for m in runs
                      if k is None or k in m["per_class"]]
                name = "overall" if k is None else k
                if not nb:
                    return name
                return f"{name} ({self._count_text(nb)} / {self._count_text(na)})" + (
                    f" {FEW_FLOWS_MARK}" if k in few else "")

            def best(k, what):
                means = [float(np.mean(v)) for c in cols.values() if (v := [x for x in c[k][what] if x is not None])]
                return max(means) if means else None

            def cell(values, top, digits=2, bold=True):
                text = format_mean_std(values, digits=digits)
                vals = [x for x in values if x is not None]
                if bold and vals and top is not None and np.isclose(np.mean(vals), top, rtol=0, atol=1e-12):
                    text = f"**{text}**"
                return text

            header = ["method", "params"] + [head(k) for k in keys]
            top_auroc = {k: best(k, "vals") for k in keys}
            top_ap = {k: best(k, "ap") for k in keys if k != MEDIAN_COLUMN}
            table_rows, extra_rows = [], []
            for label, per, reason, counts, stored in entries:
                cells = []
                for k in keys:
                    c = cols[label][k]
                    text = cell(c["vals"], top_auroc[k])
                    if c["lo"] is not None:
                        text += f" [{100 * c['lo']:.1f}, {100 * c['hi']:.1f}]"
                    if not c["vals"] and k == MEDIAN_COLUMN and cols[label][None]["vals"]:
                        text = f"n/a (no class with {self.min_flows}+ flows)"
                    cells.append(text)
                    all_seeds.update(c["seeds"])
                    col_name = "overall" if k is None else k
                    row = {**self._cell_row(ds, label, col_name, c["vals"], reason),
                           "auroc_lo": c["lo"], "auroc_hi": c["hi"],
                           "auprc_mean": mean_std(c["ap"])[0] if c["ap"] else None,
                           "det_rate": mean_std(c["det"])[0] if c["det"] else None,
                           "fpr_realised": mean_std(c["fpr"])[0] if c["fpr"] else None,
                           "n_benign": float(np.mean(c["n_b"])) if c["n_b"] else None,
                           "n_attack": float(np.mean(c["n_a"])) if c["n_a"] else None,
                           "few_flows": k in few}
                    if k is None:
                        known = [n for n in counts if n is not None]
                        row["n_parameters"] = float(np.mean(known)) if known else None
                    rows.append(row)
                    if c["vals"] and k != MEDIAN_COLUMN:
                        interval_rows.append(self._interval_row(ds, label, col_name, c, k not in few))
                table_rows.append([label, format_parameters(counts, stored)] + cells)
                ov = cols[label]
                # the overviews bold their own columns' best
                overview.setdefault(label, {})[ds] = (cells[0].replace("**", ""), float(np.mean(ov[None]["vals"])) if ov[None]["vals"]
                                                      else None)
                overview_median.setdefault(label, {})[ds] = (
                    cells[1].replace("**", ""), float(np.mean(ov[MEDIAN_COLUMN]["vals"])) if ov[MEDIAN_COLUMN]["vals"] else None)
                c0 = cols[label][None]
                extra_rows.append([label, format_mean_std(c0["det"], digits=1), format_mean_std(c0["fpr"])]
                                  + [cell(cols[label][k]["ap"], top_ap[k]) for k in keys if k != MEDIAN_COLUMN])
            unit = "captures" if self.resamples_captures(ds) else "flows"
            md += ["", f"## {ds}", "", f"Bootstrap units: {unit}.", ""] + markdown_table(header, table_rows)
            md += ["", f"### {ds}: AUPRC (%) and the operating point at the benign-val threshold for {fpr_pct} "
                   "false positives", ""]
            md += markdown_table(["method", "detection rate (%)", "realised FPR (%)"]
                                 + [f"AUPRC {head(k)}" for k in keys if k != MEDIAN_COLUMN], extra_rows)
        if overview:
            dss = self.r.datasets()
            # JANUS rows first (a dataset's main variant may differ: full with packets, B2 on a flow table)
            order = sorted(overview, key=lambda m: not m.startswith("JANUS"))
            for title, table in (("overall AUROC", overview), (f"{MEDIAN_COLUMN} AUROC", overview_median)):
                tops = {d: max((table[m][d][1] for m in order if d in table[m] and table[m][d][1] is not None),
                               default=None) for d in dss}
                md += ["", f"## Overview ({title})", ""] + markdown_table(
                    ["method"] + dss, [[m] + [self._bold_if(table[m].get(d, (NOT_RUN_CELL, None)), tops[d])
                                              for d in dss] for m in order])
        notes = [f"{DISPLAY[m]}: {why}" for m, why in NOT_RUN.items()]
        notes.append("A1L, flow_nllL and a baseline's +L row: its score referenced to benign val flows of similar "
                     "length (issue 23; evaluate.aggregators.LengthReference), fitted on its own benign val scores")
        notes.append("params: mean over seeds of the parameters of the fitted networks (JANUS, deep baselines); "
                     "† the values a classical detector stores to score (kNN/LOF/ECOD/COPOD: benign train flows x "
                     "dims; OCSVM: support vectors x dims + dual coefficients; Isolation Forest: 2 per tree node)")
        notes.append(f"{FEW_FLOWS_MARK}: a class with fewer than {self.min_flows} test flows in a run "
                     "(evaluate.min_class_flows) is shown but left out of the per-class median (within.csv: "
                     "few_flows; intervals.csv: in_median false)")
        self._write("within", md, rows, all_seeds, notes)
        cols_df = pd.DataFrame(interval_rows, columns=list(INTERVAL_COLUMNS))
        cols_df.to_csv(self.out / INTERVALS_FILE, index=False)
        log.info("wrote %s (%d rows)", self.out / INTERVALS_FILE, len(cols_df))

    @staticmethod
    def _bold_if(cell_mean, top):
        cell, mean = cell_mean
        return f"**{cell}**" if mean is not None and top is not None and np.isclose(mean, top, rtol=0,
                                                                                    atol=1e-12) else cell

    def _interval_row(self, ds, label, category, c, in_median) -> dict:
        """One row of intervals.csv (fractions, not percent; means over the seeds with a result)."""
        mean = lambda v: mean_std(v)[0] if v else None  # noqa: E731
        return {"dataset": ds, "method": label, "category": category,
                "n_benign": int(round(np.mean(c["n_b"]))), "n_attack": int(round(np.mean(c["n_a"]))),
                "n_seeds": len(c["vals"]), "auroc": float(np.mean(c["vals"])), "auroc_lo": c["lo"],
                "auroc_hi": c["hi"], "auprc": mean(c["ap"]), "det_rate": mean(c["det"]), "fpr_realised": mean(c["fpr"]),
                "fpr_target": self.fpr, "in_median": "true" if in_median or category == "overall" else "false",
                "group_by": "source_file" if self.resamples_captures(ds) else "none"}

    def _baseline_l_entry(self, ds, method, entry, boot=False):
        """The within table's row of a baseline's ``+L`` twin (issue 23) beside its row ``entry``: each seed's
        score through a LengthReference fitted on that run's benign val scores (no retraining); ``boot``: with
        the bootstrap replicates, as :meth:`_baseline_runs`."""
        per = {}
        for s in sorted(k[2] for k in self.r.baselines if k[0] == ds and k[1] == method):
            t = self.r.load(self.r.baselines[(ds, method, s)])
            extra = {"draws": self.draws, "groups": self._groups(ds, t)} if boot and t is not None else {}
            try:
                per[s] = None if t is None else baseline_metrics(length_referenced_table(t), self.fpr, **extra)
            except AggregatorError as e:  # a score file without packet counts
                log.info("%s +L on %s seed %s: not run (%s)", method, ds, s, e)
                per[s] = None
        return (entry[0] + " +L", per, None if any(per.values()) else "no packet counts in its score files",
                *entry[3:])

    def _length_rows(self, ds, variant, seeds, **run_args):
        """(aggregator, seed -> metrics) of issue 23's JANUS rows beside A1 that ran on at least one seed
        (``run_args``: passed to :meth:`janus_run`)."""
        runs = [(row, {s: self.janus_run(ds, variant, s, agg, **run_args) for s in seeds})
                for row, agg in LENGTH_ROWS.items() if row != DEPLOYABLE]
        return [(row, per) for row, per in runs if any(per.values())]

    def _baseline_reason(self, ds, method, seeds):
        for s in seeds:
            info = Path(self.r.baselines[(ds, method, s)]).with_name("auroc.json")
            if info.exists():
                try:
                    return json.loads(info.read_text()).get("reason", "no result")
                except ValueError:
                    pass
        return "no result"

    @staticmethod
    def _cell_row(ds, method, column, vals, reason=None):
        m, s, n = mean_std(vals)
        return {"dataset": ds, "method": method, "column": column, "auroc_mean": m if n else None,
                "auroc_std": s if n else None, "n_seeds": n, "cell": format_mean_std(vals),
                "reason": reason if not n else ""}

    # ---- cross
    def _cross_datasets(self):
        keys = self._cross_keys()
        return sorted({k[0] for k in keys} | {k[1] for k in keys} | {k[0] for k in self.r.janus if k[1] == "full"})

    def cross_matrix(self):
        dss = self._cross_datasets()
        rows, table_rows, all_seeds = [], [], set()
        for src in dss:
            cells = [f"**{src}**"]
            for tgt in dss:
                if src == tgt:
                    per = {s: self.janus_run(src, "full", s) for s in self._seeds(self.r.janus, src, "full")}
                else:
                    per = {s: self.cross_run(src, tgt, s) for _, _, s in self._cross_keys(pair=(src, tgt))}
                vals, seeds = _collect(per, None)
                all_seeds.update(seeds)
                cell = format_mean_std(vals)
                cells.append(f"_{cell}_ (within)" if src == tgt and vals else cell)
                m, s, n = mean_std(vals)
                rows.append({"source": src, "target": tgt, "within": src == tgt, "auroc_mean": m if n else None,
                             "auroc_std": s if n else None, "n_seeds": n, "cell": cell})
            table_rows.append(cells)
        md = ["# Cross-dataset AUROC (%)", "",
              "Rows: the source dataset whose cross model (sigma = janus.cross_sigma) scores the target (columns); "
              "the aggregator (A1, Mahalanobis-OAS) is fitted on the target's benign val. Diagonal: within-dataset "
              "full model.", ""] + markdown_table(["source ↓ / target →"] + dss, table_rows)
        self._write("cross_matrix", md, rows, all_seeds)

    # ---- aggregators (group A)
    def _within_vals(self, ds, variant, agg, seeds=None):
        seeds = self._seeds(self.r.janus, ds, variant) if seeds is None else seeds
        return _collect({s: self.janus_run(ds, variant, s, agg) for s in seeds}, None)

    def _cross_pair_means(self, agg, pairs=None):
        """Per (src, tgt) pair: the seed-mean AUROC of the "cross" model (pairs without a result are left out)."""
        pairs = sorted({k[:2] for k in self._cross_keys()}) if pairs is None else pairs
        out, seeds_used = {}, set()
        for pair in pairs:
            vals, seeds = _collect({s: self.cross_run(*pair, s, agg) for _, _, s in self._cross_keys(pair=pair)},
                                   None)
            if vals:
                out[pair] = float(np.mean(vals))
                seeds_used.update(seeds)
        return out, seeds_used

    def aggregators(self):
        dss = sorted({k[0] for k in self.r.janus if k[1] == "full"})
        rows, table_rows, all_seeds = [], [], set()
        for name, cls in AGGREGATORS.items():
            cells = [f"{name}: {cls.description}"]
            ds_means = []
            for ds in dss:
                vals, seeds = self._within_vals(ds, "full", name)
                all_seeds.update(seeds)
                cells.append(format_mean_std(vals))
                m, s, n = mean_std(vals)
                if n:
                    ds_means.append(m)
                rows.append({"aggregator": name, "column": f"within {ds}", "auroc_mean": m if n else None,
                             "auroc_std": s if n else None, "n_seeds": n, "cell": cells[-1]})
            pair_means, seeds = self._cross_pair_means(name)
            all_seeds.update(seeds)
            summary = {"within mean": np.mean(ds_means) if ds_means else None,
                       "cross mean": np.mean(list(pair_means.values())) if pair_means else None,
                       "cross worst": min(pair_means.values()) if pair_means else None}
            for col, v in summary.items():
                cells.append(NOT_RUN_CELL if v is None else f"{100 * v:.2f}")
                rows.append({"aggregator": name, "column": col, "auroc_mean": v, "auroc_std": None,
                             "n_seeds": None, "cell": cells[-1]})
            table_rows.append(cells)
        md = ["# Aggregators (group A) on the JANUS full model's score vector", "",
              "AUROC (%). Within: per dataset, mean ± std over seeds. Within mean: over datasets. Cross mean / "
              "worst: over the off-diagonal (source, target) pairs of the cross matrix (the source's \"cross\" "
              "model, sigma = janus.cross_sigma), each pair averaged over "
              "seeds; every aggregator is fitted on the (target's) benign val only. \"not run\": the aggregator's "
              "score columns are absent (e.g. NaN for a model without that head) or no scores exist. "
              "A1z is A1 on scores standardised on benign val: A1 − A1z is what the scale dependence of OAS's "
              "shrinkage target costs.", ""]
        md += markdown_table(["aggregator"] + [f"within {d}" for d in dss] + ["within mean", "cross mean",
                                                                              "cross worst"], table_rows)
        self._write("aggregators", md, rows, all_seeds)

    # ---- ablations (group B)
    @staticmethod
    def _paired_mean(run, variant, seeds):
        """(variant, full) seed-mean AUROC over the seeds where both have one, and those seeds; None if none.

        ``run(variant, seed)`` gives a run's metrics (or None)."""
        per_v = {s: run(variant, s) for s in seeds}
        per_f = {s: run("full", s) for s in seeds}
        paired = [s for s in seeds if per_v[s] and per_f[s] and per_v[s]["auroc"] is not None
                  and per_f[s]["auroc"] is not None]
        if not paired:
            return None
        return (float(np.mean([per_v[s]["auroc"] for s in paired])),
                float(np.mean([per_f[s]["auroc"] for s in paired])), paired)

    def _ablation_within(self, variant, abl_ds):
        """Per ablation dataset: (variant, full) within AUROC, seed means over the seeds where both ran; seeds."""
        out, used = {}, set()
        for ds in abl_ds:
            seeds = [s for s in self._seeds(self.r.janus, ds, variant) if (ds, "full", s) in self.r.janus]
            res = self._paired_mean(lambda v, s: self.janus_run(ds, v, s), variant, seeds)
            if res:
                out[ds] = res[:2]
                used.update(res[2])
        return out, used

    def _ablation_cross(self, variant):
        """Per (source, target) pair the variant's own model scored: (variant, full) cross AUROC, seed means over
        the seeds where the full model (sigma janus.sigma, not the "cross" model) scored the same pair; seeds."""
        out, used = {}, set()
        for pair in sorted({k[:2] for k in self._cross_keys(variant)}):
            seeds = [s for _, _, s in self._cross_keys(variant, pair) if (*pair, "full", s) in self.r.cross]
            res = self._paired_mean(lambda v, s: self.cross_run(*pair, s, variant=v), variant, seeds)
            if res:
                out[pair] = res[:2]
                used.update(res[2])
        return out, used

    def ablation_B(self):
        abl_ds = sorted({k[0] for k in self.r.janus if k[1] in ABLATION_VARIANTS})
        rows, table_rows, all_seeds, any_cross = [], [], set(), False
        fmt = lambda v, sign="": NOT_RUN_CELL if v is None else f"{100 * v:{sign}.2f}"  # noqa: E731
        for variant in ABLATION_VARIANTS:
            within, seeds = self._ablation_within(variant, abl_ds)
            all_seeds.update(seeds)
            w_v = float(np.mean([v for v, _ in within.values()])) if within else None
            w_f = float(np.mean([f for _, f in within.values()])) if within else None
            w_d = float(np.mean([v - f for v, f in within.values()])) if within else None

            cross, seeds = self._ablation_cross(variant)
            all_seeds.update(seeds)
            any_cross |= bool(cross)
            # mean over the targets of each source, then over the sources
            by_src = {}
            for (src, _), (v, f) in cross.items():
                by_src.setdefault(src, []).append((v, f, v - f))
            src_means = [np.mean(vals, axis=0) for vals in by_src.values()]
            c_v, c_f, c_d = (float(x) for x in np.mean(src_means, axis=0)) if src_means else (None, None, None)
            worst = min(cross, key=lambda p: cross[p][0] - cross[p][1]) if cross else None
            c_w = cross[worst][0] - cross[worst][1] if worst else None

            table_rows.append([variant, fmt(w_v), fmt(w_f), fmt(w_d, "+"), fmt(c_v), fmt(c_f), fmt(c_d, "+"),
                               NOT_RUN_CELL if worst is None else f"{fmt(c_w, '+')} ({worst[0]} → {worst[1]})"])
            for col, v, n_ds, n_pairs, pair in (
                    ("within AUROC variant", w_v, len(within), None, ""),
                    ("within AUROC full", w_f, len(within), None, ""),
                    ("within delta", w_d, len(within), None, ""),
                    ("cross-mean AUROC variant", c_v, len(by_src), len(cross), ""),
                    ("cross-mean AUROC full", c_f, len(by_src), len(cross), ""),
                    ("cross-mean delta", c_d, len(by_src), len(cross), ""),
                    ("cross-worst delta", c_w, len(by_src), len(cross), "" if worst is None else "__".join(worst)),
                    *((f"cross delta {a}__{b}", cv - cf, 1, 1, f"{a}__{b}") for (a, b), (cv, cf) in cross.items())):
                rows.append({"variant": variant, "column": col, "value": v, "n_datasets": n_ds, "n_pairs": n_pairs,
                             "pair": pair, "cell": fmt(v)})
        notes = [] if any_cross else [
            "cross-dataset columns: no ablation cross scores were given (janus.cross off, no packet dataset besides "
            "the ablation datasets, or not built yet), so the cross deltas are not run"]
        md = ["# Architecture ablations (group B) vs the full model", "",
              f"AUROC points (variant − full), deployable aggregator A1, on the ablation datasets "
              f"{', '.join(abl_ds) or '(none run)'} and the seeds where both the variant and the full model ran.", "",
              "Within: each variant and the full model on their own dataset's test split (A1 fitted on its benign "
              "val); mean over the seeds, then over the datasets.", "",
              "Cross: the variant's own model, trained on an ablation dataset (the source), scores every other "
              "packet dataset (the target), A1 fitted on the target's benign val; it is compared with the full "
              "model (sigma = janus.sigma, trained on the same source with the same seed) scoring the same target, "
              "not with the cross matrix's \"cross\" model (sigma = janus.cross_sigma). Per (source, target) pair "
              "the difference is averaged over the seeds where both ran. Cross-mean: mean over the targets of each "
              "source, then over the sources (the cross-mean AUROC columns average the same way). Cross-worst: the "
              "smallest pair difference, that pair named (source → target).", ""]
        md += markdown_table(["variant", "within AUROC (variant)", "within AUROC (full)", "within Δ",
                              "cross-mean AUROC (variant)", "cross-mean AUROC (full)", "cross-mean Δ",
                              "cross-worst Δ"], table_rows)
        self._write("ablation_B", md, rows, all_seeds, notes)

    # ---- issue 11's before/after table
    def _best_baseline(self, ds, key):
        """(display name, seed-mean AUROC) of the baseline with the highest seed mean on ``ds`` (None if none ran)."""
        best = None
        for method in self._methods():
            vals, _ = _collect(self._baseline_runs(ds, method)[1], key, self.min_flows)
            if vals and (best is None or np.mean(vals) > best[1]):
                best = (DISPLAY.get(method, method), float(np.mean(vals)))
        return best

    def fixes(self):
        """Each bias fix of issue 11 undone, against the model with every fix, on the same datasets and seeds.

        Rows: a ``nofix_*`` variant (``janus.variants``) against the variant it undoes a fix of
        (:data:`nidsflow.janus.variants.FIX_ABLATIONS`), both with aggregator A1; and the OAS fix, A1 (the seed's
        OAS on raw scores, the deployable default) against A1z on the main model. Cells: mean ± std over the seeds
        where both ran; delta = with the fix − without, mean of the per-seed differences."""
        rows, table_rows, all_seeds = [], [], set()
        fix_of = {"nofix_iat": "IAT in microseconds", "nofix_ot": "sharp OT coupling", "nofix_disc":
                  "disc_nll drawn per flow", "nofix_all": "all three", "B2_nofix_ot": "sharp OT coupling"}
        for ds in self.r.datasets():
            main = self.r.janus_main_variant(ds)
            pairs = [(v, FIX_ABLATIONS[v], DEPLOYABLE, DEPLOYABLE) for v in FIX_ABLATIONS
                     if self._seeds(self.r.janus, ds, v)]
            if main is not None and pairs:
                pairs.append((main, main, DEPLOYABLE, "A1z"))
            best = {k: self._best_baseline(ds, k) for k in (None, MEDIAN_COLUMN)}
            for before, after, agg_before, agg_after in pairs:
                seeds = [s for s in self._seeds(self.r.janus, ds, before) if (ds, after, s) in self.r.janus]
                label = (f"{fix_of[before]} ({before} → {after})" if before != after
                         else f"OAS on benign-val-standardised scores ({after} A1 → A1z)")
                cells = [ds, label]
                for key in (None, MEDIAN_COLUMN):
                    vb, sb = _collect({s: self.janus_run(ds, before, s, agg_before) for s in seeds}, key,
                                      self.min_flows)
                    va, sa = _collect({s: self.janus_run(ds, after, s, agg_after) for s in seeds}, key,
                                      self.min_flows)
                    both = sorted(set(sb) & set(sa))
                    all_seeds.update(both)
                    d = [va[sa.index(s)] - vb[sb.index(s)] for s in both]
                    col = "overall" if key is None else MEDIAN_COLUMN
                    cells += [format_mean_std(vb), format_mean_std(va), format_mean_std(d, signed=True)]
                    for what, vals in (("without the fix", vb), ("with the fix", va), ("delta", d)):
                        m, sd, n = mean_std(vals)
                        rows.append({"dataset": ds, "row": label, "variant": before, "compared_with": after,
                                     "column": f"{col} {what}", "auroc_mean": m if n else None,
                                     "auroc_std": sd if n else None, "n_seeds": n, "cell": format_mean_std(vals)})
                for key in (None, MEDIAN_COLUMN):
                    b = best[key]
                    cells.append(NOT_RUN_CELL if b is None else f"{100 * b[1]:.2f} ({b[0]})")
                table_rows.append(cells)
            for key, b in best.items():
                if pairs and b is not None:
                    rows.append({"dataset": ds, "row": "best baseline", "variant": b[0], "compared_with": "",
                                 "column": "overall" if key is None else MEDIAN_COLUMN, "auroc_mean": b[1],
                                 "auroc_std": None, "n_seeds": None, "cell": f"{100 * b[1]:.2f}"})
        md = ["# JANUS: each bias fix undone (issue 11)", "",
              "Test AUROC (%), mean ± sample std over the seeds where both rows ran. Each row undoes one fix of "
              "issue 11 (janus.variants nofix_*: the seed's behaviour) and compares that model with the one "
              "with every fix, both scored with A1; the OAS row compares A1 with A1z on the main model. Δ = with "
              "the fix − without, per seed, then mean ± std. The best baseline of the same run (highest seed "
              "mean over its seeds) is the bar JANUS has to clear. The per-class median is the within table's "
              f"(classes with at least {self.min_flows} test flows).", ""]
        md += markdown_table(["dataset", "fix (without → with)", "overall without", "overall with", "overall Δ",
                              f"{MEDIAN_COLUMN} without", f"{MEDIAN_COLUMN} with", f"{MEDIAN_COLUMN} Δ",
                              "best baseline overall", f"best baseline {MEDIAN_COLUMN}"], table_rows)
        notes = [] if table_rows else ["no fix ablation was run (janus.variants has no nofix_* variant on the "
                                       "ablation datasets)"]
        self._write("fixes", md, rows, all_seeds, notes)

    # ---- per packet-count band (issue 23)
    def _band_sources(self, ds):
        """(row label, seed -> (table, score function)) of the length_bands table's rows on ``ds``."""
        out = []
        main = self.r.janus_main_variant(ds)
        # every JANUS model variant with within rows of its own (context, B1, ...) gets its band rows too
        for variant in ([main] if main is not None else []) + self._model_variants(ds):
            seeds = self._seeds(self.r.janus, ds, variant)
            for row, agg in LENGTH_ROWS.items():
                fn = lambda t, agg=agg: make_aggregator(agg).fit_table(t).score_table(t)  # noqa: E731
                out.append((f"JANUS ({variant}, {row})", {s: (self.r.janus[(ds, variant, s)], fn) for s in seeds}))
        for method in self._methods():
            seeds = sorted(k[2] for k in self.r.baselines if k[0] == ds and k[1] == method)
            for length_ref in (False, True) if seeds else ():
                fn = lambda t, lr=length_ref: length_referenced_score(t) if lr else t.scores[:, 0]  # noqa: E731
                out.append((DISPLAY.get(method, method) + (" +L" if length_ref else ""),
                            {s: (self.r.baselines[(ds, method, s)], fn) for s in seeds}))
        return out

    def length_bands(self):
        """AUROC per packet-count band (:data:`REPORT_BANDS`): each band's test attack flows against the same
        band's test benign flows, with scores fitted as in the within table (on all benign val flows)."""
        bands = [b[0] for b in REPORT_BANDS]
        md = ["# AUROC per packet-count band (%)", "",
              "Each band compares that band's test attack flows (all classes pooled) with that band's test benign "
              "flows; mean ± sample std over seeds. Every score is fitted on all benign val flows, as in the "
              "within table. A1L / +L: the score referenced to benign val flows of similar length "
              "(evaluate.aggregators.LengthReference, bands of at least 50 val flows). A single score's reference "
              "is monotone inside one reference band, so its per-band AUROC changes only where a band here spans "
              "several reference bands. A cell with fewer "
              f"than {MIN_BAND_CLASS} test flows of a class says so; a row that could not be scored says not run."]
        rows, all_seeds = [], set()
        for ds in self.r.datasets():
            table_rows, counts = [], None
            for label, runs in self._band_sources(ds):
                per_seed, reason = {}, None
                for s, (path, fn) in runs.items():
                    t = self.r.load(path)
                    if t is None:
                        continue
                    if t.n_packets is None:
                        reason = "no packet counts in the score file"
                        continue
                    try:
                        per_seed[s] = per_band_auroc(t.split, t.is_attack, t.n_packets, fn(t))
                    except (AggregatorError, MetricError) as e:
                        reason = str(e)
                if not per_seed:
                    if (label.startswith("JANUS") and label.rsplit(", ", 1)[-1].startswith("flow_nll")
                            or label.endswith(" +L") and table_rows and table_rows[-1][1] == NOT_RUN_CELL):
                        continue  # no flow_nll column (helper "nll"'s option), or the baseline itself did not run
                    table_rows.append([label] + [NOT_RUN_CELL] * len(bands))
                    rows += [{"dataset": ds, "method": label, "band": b, "auroc_mean": None, "auroc_std": None,
                              "n_seeds": 0, "n_attack": None, "n_benign": None, "cell": NOT_RUN_CELL,
                              "reason": reason or "no result"} for b in bands]
                    continue
                first = per_seed[min(per_seed)]
                counts = counts or first
                cells = [label]
                for b in bands:
                    vals = [m[b]["auroc"] for m in per_seed.values() if m[b]["auroc"] is not None]
                    all_seeds.update(s for s, m in per_seed.items() if m[b]["auroc"] is not None)
                    cell = format_mean_std(vals) if vals else (
                        f"too few flows ({first[b]['n_attack']} attack, {first[b]['n_benign']} benign)")
                    cells.append(cell)
                    m, sd, n = mean_std(vals)
                    rows.append({"dataset": ds, "method": label, "band": b, "auroc_mean": m if n else None,
                                 "auroc_std": sd if n else None, "n_seeds": n, "n_attack": first[b]["n_attack"],
                                 "n_benign": first[b]["n_benign"], "cell": cell, "reason": ""})
                table_rows.append(cells)
            if counts:
                table_rows.insert(0, ["test flows (attack / benign, first seed)"]
                                  + [f"{counts[b]['n_attack']} / {counts[b]['n_benign']}" for b in bands])
            md += ["", f"## {ds}", ""] + markdown_table(["method"] + [f"{b} packets" for b in bands], table_rows)
        self._write("length_bands", md, rows, all_seeds)

    def write_all(self):
        self.within()
        self.cross_matrix()
        self.aggregators()
        self.ablation_B()
        self.fixes()
        self.length_bands()


TABLE_NAMES = ("within", "cross_matrix", "aggregators", "ablation_B", "fixes", "length_bands")


def write_tables(phase1_files, cross_files, baseline_files, out_dir, config: dict, fpr_target=None,
                 bootstrap: dict | None = None, min_class_flows: int = MIN_CLASS_FLOWS, group_by: dict | None = None,
                 store_flows=()) -> None:
    """Entry point of rule ``tables``: every table (and intervals.csv) from the given score files.

    ``group_by``: dataset -> its split.group_by; ``store_flows``: the flows.parquet (results/{study}/{ds}/store/)
    of each dataset split by source_file, whose flows' captures the bootstrap resamples."""
    stores = {layout.parse(STORE_FLOWS, f)["ds"]: f for f in store_flows}
    TableWriter(ResultSet.from_files(phase1_files, cross_files, baseline_files), config, out_dir,
                fpr_target, bootstrap, min_class_flows, group_by, stores).write_all()
