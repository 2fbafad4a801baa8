"""The human-readable summary: every result table and figure of both branches on one page.

``write_summary`` opens with the answer: a heatmap of every method's overall AUROC on every dataset, the
headline dataset's per-class heatmap and each method's AUROC there with its 95 % interval, each with a sentence
written from the numbers (:func:`draw_summary_figures`, from the tables' intervals.csv); then the operating
point at the val-fitted threshold, why JANUS alerted (:mod:`nidsflow.top_alerts`), the learning curves, and
every table (best per column bold, test flows in the headers, few-flow columns greyed, per-dataset tables
folded). It writes the page twice: as markdown (figures linked by relative path) and as one self-contained
HTML file (figures embedded as data URIs, nothing referenced outside it), which opens in any browser from any
folder and is what the Snakemake report shows under "Summary".
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

_VALIDATION_KEYS = ("operating_point", "calibration", "separation", "permutation_test", "permutation_test_end_to_end",
                    "bootstrap", "conformal")


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.strip()}\n"


def _inline(text: str) -> str:
    """Escaped text with the inline markdown our tables use: **bold**, _italic_, `code`."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w/])_(.+?)_(?![\w/])", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, decorate=None) -> str:
    """HTML of the markdown subset the pipeline writes: headings, paragraphs, pipe tables, bullet lists,
    fenced code blocks, rules and images. Anything else is kept as escaped text.

    ``decorate(heading, header, rows) -> (header, rows, column_classes)``, if given, may change a table's
    cells and give each column a CSS class ("" for none); ``heading`` is the text of the last heading above it.
    """
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    heading = ""
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", stripped):
            level = len(m.group(1))
            heading = m.group(2).strip()
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif stripped == "---":
            out.append("<hr>")
            i += 1
        elif stripped.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|?[\s:|-]+\|?", lines[i + 1].strip()):
            head = _cells(stripped)
            align = ["right" if c.endswith(":") else "left" for c in _cells(lines[i + 1])]
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            classes = [""] * len(head)
            if decorate is not None:
                head, rows, classes = decorate(heading, head, rows)
            cls = [f' class="{c}"' if c else "" for c in classes] + [""] * len(head)
            th = "".join(f"<th{cls[k]}>{_inline(c)}</th>" for k, c in enumerate(head))
            body = "".join("<tr>" + "".join(f'<td{cls[k]} style="text-align:{align[k] if k < len(align) else "left"}">'
                                            f"{_inline(c)}</td>" for k, c in enumerate(r)) + "</tr>" for r in rows)
            out.append(f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>")
        elif m := re.fullmatch(r"!\[(.*?)\]\((.*?)\)", stripped):
            out.append(f'<figure><img alt="{html.escape(m.group(1))}" src="{html.escape(m.group(2))}">'
                       f"<figcaption>{_inline(m.group(1))}</figcaption></figure>")
            i += 1
        elif stripped.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#|\||- |```|---$|!\[)", lines[i].strip()):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}pre{background:#f6f6f6;padding:.6em;font-size:12px}
figure{display:inline-block;margin:.5em}img{max-width:640px}figcaption{font-size:12px;color:#555}
.few{color:#999;background:#f3f3f3!important}th.few{font-style:italic}
.screen{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.screen figure{flex:1 1 45%;margin:0;max-width:49%}
.screen figure.full{flex-basis:100%;max-width:100%}.screen img,.wide img{max-width:100%}.lead{font-size:14px;margin:.3em 0 0;color:#222}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}"""


def html_page(title: str, body_html: str) -> str:
    """A self-contained HTML page (inline style) around ``body_html``."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body_html}</body></html>")


def write_markdown_as_html(md_text: str, out_html: str | Path, title: str) -> None:
    """One markdown document (a result table) as a self-contained HTML page."""
    Path(out_html).write_text(html_page(title, markdown_to_html(md_text)))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _figure_caption(path: Path) -> str:
    """'roc (demo_a)' for results/figures/demo_a/roc.png."""
    return f"{path.stem.replace('_', ' ')} ({path.parent.name})"


def overview_sections(table_md: str) -> str:
    """The "## Overview (...)" sections of a result table (the within table's overall and per-class median
    AUROC per method and dataset), headings lowered one level; "" when it has none."""
    out, keep = [], False
    for line in table_md.splitlines():
        if line.startswith("## ") or line.strip() == "---":
            keep = line.startswith("## Overview")
        if keep:
            out.append("#" + line if line.startswith("## ") else line)
    return "\n".join(out).strip()


# ---------------------------------------------------------------- the summary page

def default_headline(datasets) -> str | None:
    """config report.headline when unset: the dataset corpus_by_capture when configured, else the first."""
    datasets = list(datasets)
    if "corpus_by_capture" in datasets:
        return "corpus_by_capture"
    return datasets[0] if datasets else None


#: The summary page's own figures (rule report's outputs, in report/figures/): name -> caption.
SUMMARY_FIGURES: dict[str, str] = {
    "auroc_heatmap": "Overall test AUROC (%) of every method on every dataset; the best of each column boxed.",
    "class_heatmap": "Per-class test AUROC (%) on the headline dataset (each attack class against the test "
                     "benign flows); the best of each column boxed; the test flows of the class under its name.",
    "auroc_intervals": "Overall test AUROC (%) of each method on the headline dataset with its 95 % bootstrap "
                       "interval.",
    "operating_point": "Detection rate and realised false-positive rate on test at the threshold fitted on benign "
                       "val for evaluate.fpr_target (dashed), headline dataset.",
    "alerts": "Why JANUS alerted: the highest-scoring test flows of the headline dataset, each score axis' share "
              "of d² (left) and the packet cells the discrete head found least likely (right).",
    "learning_curves": "Benign train and val loss per epoch of JANUS and each deep baseline on the headline "
                       "dataset (the figures' seed).",
}
#: A per-class column with fewer test attack flows than this is greyed (config evaluate.min_class_flows, whose
#: default this is; the tables mark the same classes and leave them out of the per-class median).
MIN_CLASS_FLOWS = 30
_N_IN_HEADER = re.compile(r"\bn\s*=\s*(\d[\d,]*)")
#: The tables' column header: "syn_flood (500 / 120)" (test benign / attack flows; "40–42" when seeds differ).
_BENIGN_ATTACK = re.compile(r"\((\d[\d,]*)(?:[–-]\d[\d,]*)?\s*/\s*(\d[\d,]*)(?:[–-]\d[\d,]*)?\)")
#: The tables' mark of a class with fewer than evaluate.min_class_flows test flows (tables.FEW_FLOWS_MARK).
FEW_FLOWS_MARK = "‡"
_NUMBER = re.compile(r"^\**\s*([-+]?\d+(?:\.\d+)?)")


def _n_from_header(cell: str) -> tuple[str, int | None]:
    """(name, test attack flows) of a column header: 'syn_flood (n=40)', 'syn_flood (500 / 40) ‡' ->
    ('syn_flood', 40) (the smallest count where the seeds' splits differ); (cell, None) without a count."""
    m = _BENIGN_ATTACK.search(cell) or _N_IN_HEADER.search(cell)
    if not m:
        return cell.replace(FEW_FLOWS_MARK, "").strip(), None
    name = re.split(r"\s*[(\[]|\s+n\s*=|<br>", cell)[0].strip().strip("*_ ")
    return name, int(m.group(m.lastindex).replace(",", ""))


class TableDecorator:
    """The tables' look on the summary page, from intervals.csv: the number of test flows in each column's
    header (when the table does not print it), columns with fewer than ``min_flows`` test attack flows
    greyed (CSS class "few"), and, in the method tables of a table that does not mark its best cells, the best
    value of each AUROC column in bold."""

    def __init__(self, intervals=None, min_flows: int = MIN_CLASS_FLOWS):
        self.min_flows = min_flows
        self.n: dict[tuple[str, str], tuple[float, float]] = {}
        self.datasets: set[str] = set()
        self.left_out: set[tuple[str, str]] = set()  # classes the tables left out of the per-class median
        if intervals is not None and len(intervals):
            first = intervals.drop_duplicates(["dataset", "category"])
            for r in first.itertuples():
                self.n[(r.dataset, r.category)] = (r.n_benign, r.n_attack)
            self.datasets = set(intervals["dataset"])
            has_median = intervals.groupby("dataset")["in_median"].transform("any")
            out = intervals[(intervals["category"] != "overall") & ~intervals["in_median"] & has_median]
            self.left_out = set(zip(out["dataset"], out["category"]))

    def _count(self, ds: str | None, col: str) -> int | None:
        nb, na = self.n.get((ds, col), (float("nan"), float("nan")))
        if col == "overall" and not (nb != nb or na != na):
            return int(nb + na)
        return None if na != na else int(na)

    def __call__(self, heading: str, head: list[str], rows: list[list[str]]):
        classes = [""] * len(head)
        ds = heading if heading in self.datasets else None
        head = list(head)
        for j, cell in enumerate(head[1:], start=1):
            name, n = _n_from_header(cell)
            if ds is not None:  # a dataset's table: columns are overall / per-class median / classes
                if n is None:
                    n = self._count(ds, name)
                    if n is not None:
                        head[j] = f"{name} (n={n})"
                if name not in ("overall", "per-class median", "params") and (
                        n is not None and n < self.min_flows or (ds, name) in self.left_out):
                    classes[j] = "few"
            if FEW_FLOWS_MARK in cell:  # marked by the tables (also in the AUPRC tables under a dataset)
                classes[j] = "few"
            elif name in self.datasets and n is None:  # an overview: columns are datasets
                n = self._count(name, "overall")
                if n is not None:
                    head[j] = f"{name} (n={n})"
        if head and head[0].strip() == "method" and not any("**" in c for r in rows for c in r):
            rows = [list(r) for r in rows]
            for j in range(1, len(head)):
                if _n_from_header(head[j])[0] == "params":
                    continue
                vals = [(float(m.group(1)), i) for i, r in enumerate(rows) if j < len(r)
                        and (m := _NUMBER.match(r[j]))]
                if len(vals) > 1:
                    best = max(v for v, _ in vals)
                    for v, i in vals:
                        if v == best:
                            rows[i][j] = f"**{rows[i][j]}**"
        return head, rows, classes


def _fold_dataset_sections(md_text: str, datasets: set[str], decorate) -> str:
    """HTML of a table document whose "## {dataset}" sections are folded in <details> (one per dataset)."""
    parts, cur, cur_head = [], [], None
    for line in md_text.splitlines():
        m = re.match(r"##\s+(.*)", line)
        if m:
            parts.append((cur_head, cur))
            cur, cur_head = [line], m.group(1).strip()
        else:
            cur.append(line)
    parts.append((cur_head, cur))
    out = []
    for head, lines in parts:
        body = markdown_to_html("\n".join(lines), decorate)
        if head is not None and head in datasets:
            body = body.replace(f"<h2>{_inline(head)}</h2>", "", 1)
            out.append(f"<details><summary>{html.escape(head)}</summary>{body}</details>")
        else:
            out.append(body)
    return "\n".join(out)


def _figure_html(path: Path, caption: str, sentence: str = "", cls: str = "") -> str:
    lead = f'<p class="lead">{html.escape(sentence)}</p>' if sentence else ""
    return (f'<figure{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}><img alt="{html.escape(caption)}" src="{_data_uri(path)}">'
            f"<figcaption>{html.escape(caption)}</figcaption>{lead}</figure>")


def _pct(v) -> str:
    return "–" if v is None or v != v else f"{100 * float(v):.1f}"


def operating_point_markdown(intervals) -> str:
    """Method x dataset table of detection rate / realised FPR (%) at the val-fitted threshold."""
    from nidsflow.summary_figures import operating_point_rows

    d = operating_point_rows(intervals) if intervals is not None else None
    if d is None or d.empty:
        return ""  # the figure's sentence says so
    dss = sorted(d["dataset"].unique())
    target = d["fpr_target"].dropna()
    head = ["method"] + [f"{ds}: detection / FPR (%)" for ds in dss]
    rows = []
    for method in sorted(d["method"].unique(), key=lambda m: (not m.startswith("JANUS"), m)):
        cells = [method]
        for ds in dss:
            r = d[(d["method"] == method) & (d["dataset"] == ds)]
            cells.append("not run" if r.empty else f"{_pct(r['det_rate'].iloc[0])} / {_pct(r['fpr_realised'].iloc[0])}")
        rows.append(cells)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    intro = (f"Threshold of each method fitted on its benign val scores for a false-positive rate of "
             f"{100 * float(target.iloc[0]):g} % (evaluate.fpr_target); detection rate = test attacks above it, "
             "FPR = test benign flows above it." if len(target) else "")
    return intro + "\n\n" + "\n".join(lines)


def alerts_markdown(alerts: dict) -> str:
    """The alerted flows of the top-alerts JSON as a table (5-tuple, packets, category, d², main axes, cells)."""
    flows = alerts.get("flows") or []
    if not flows:
        return "No JANUS run on the headline dataset, so no alert to explain."
    head = ["#", "flow (5-tuple)", "packets", "category", "d²", "alert", "largest shares of d²",
            "least likely packets (DFM)"]
    rows = []
    for a in flows:
        share = sorted(((k, v) for k, v in a["axis_share"].items() if v is not None), key=lambda kv: -kv[1])[:3]
        cells = ", ".join(f"pkt {c['packet']} {c['channel']} (nll {c['nll']:.2f})" for c in a.get("dfm_top") or [])
        rows.append([str(a["rank"]), f"`{a['flow']}`", str(a["n_packets"]), a["category"], f"{a['d2']:.3g}",
                     "yes" if a.get("alert") else "no", ", ".join(f"{k} {100 * v:.0f} %" for k, v in share),
                     cells or "–"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    thr = flows[0].get("threshold")
    return (f"The {len(flows)} test flows of {alerts.get('dataset')} with the highest deployable score d² "
            f"({alerts.get('run', '')}; alert threshold {thr:.3g}, fitted on benign val), explained by the "
            "deployment path (nidsflow score-capture): each score axis' share of d² and the (packet, channel) "
            "cells the discrete head found least likely.\n\n" + "\n".join(lines))


def draw_summary_figures(out_dir: str | Path, intervals_csv: str | Path | None, within_csv: str | Path | None,
                         headline: str | None, alerts_json: str | Path | None = None,
                         loss_files: dict[str, str | Path] | None = None,
                         min_class_flows: int = MIN_CLASS_FLOWS) -> dict:
    """Draw every figure of :data:`SUMMARY_FIGURES` into ``out_dir`` and write the sentences under them.

    Returns {"figures": name -> (path, sentence), "intervals": the frame (or None), "notes": [...],
    "alerts": the top-alerts dict}. ``intervals_csv`` absent: the AUROC means come from ``within_csv`` and a
    note says the intervals are missing."""
    from nidsflow import summary_figures as sf

    out_dir = Path(out_dir)
    notes, figs = [], {}
    df = None
    if intervals_csv is not None and Path(intervals_csv).exists():
        df = sf.read_intervals(intervals_csv)
    elif within_csv is not None and Path(within_csv).exists():
        df = sf.intervals_from_within(within_csv)
        notes.append(f"{intervals_csv or 'intervals.csv'} is missing (a results folder older than the "
                     "intervals): AUROC means come from within.csv; the 95 % intervals, AUPRC and the operating "
                     "point are not available.")
    else:
        notes.append("Neither intervals.csv nor within.csv was found: no AUROC to draw.")
    if df is None:
        df = sf.empty_intervals()
    datasets = sorted(df["dataset"].unique())
    if headline not in datasets:
        if headline is not None and datasets:
            notes.append(f"headline dataset {headline} has no rows in the tables; using {datasets[0]}")
        headline = datasets[0] if datasets else headline
    p = lambda name: out_dir / f"{name}.png"  # noqa: E731
    m = sf.auroc_matrix(df, "dataset")
    counts = {ds: f"n={_count(df, ds)}" for ds in m.columns if _count(df, ds) is not None}
    sf.plot_heatmap(m, p("auroc_heatmap"), "Overall test AUROC (%)", counts)
    figs["auroc_heatmap"] = sf.heatmap_sentence(m, "dataset")
    mc = sf.auroc_matrix(df, "category", headline)
    sub = df[(df["dataset"] == headline) & (df["category"] != sf.OVERALL)]
    n_class = {c: int(n) for c, n in sub.groupby("category")["n_attack"].first().items() if n == n}
    few = {c for c, n in n_class.items() if n < min_class_flows}
    if sub["in_median"].any():  # the tables left these classes out of the per-class median: greyed too
        few |= set(sub.loc[~sub["in_median"], "category"])
    sf.plot_heatmap(mc, p("class_heatmap"), f"{headline}: per-class test AUROC (%)",
                    {c: f"n={n}" + (" (few)" if c in few else "") for c, n in n_class.items()}, few)
    figs["class_heatmap"] = sf.heatmap_sentence(mc, "attack classe", few).replace("(best by overall AUROC, %)",
                                                                             "(best by per-class AUROC, %)")
    hl = df[(df["dataset"] == headline) & (df["category"] == sf.OVERALL)]
    sf.plot_intervals(hl, p("auroc_intervals"), f"{headline}: overall test AUROC, 95 % interval")
    figs["auroc_intervals"] = sf.interval_sentence(hl, str(headline) if headline else "any dataset")
    sf.plot_operating_points(hl, p("operating_point"), f"{headline}: operating point on test")
    op = sf.operating_point_rows(hl)
    if len(op):
        j = op[op["method"].str.startswith("JANUS")]
        best = op.sort_values("det_rate", ascending=False, kind="stable").iloc[0]
        figs["operating_point"] = (
            f"At the val-fitted threshold, {best['method']} detects the most test attacks on {headline} "
            f"({_pct(best['det_rate'])} % at a realised FPR of {_pct(best['fpr_realised'])} %)"
            + (f"; JANUS detects {_pct(j['det_rate'].iloc[0])} % at {_pct(j['fpr_realised'].iloc[0])} %."
               if len(j) and not best["method"].startswith("JANUS") else "."))
    else:
        figs["operating_point"] = ("No operating point in the tables (intervals.csv missing, or without det_rate / "
                                   "fpr_realised).")
    alerts = _read_json(alerts_json) or {"dataset": headline, "flows": []}
    sf.plot_alerts(alerts.get("flows") or [], p("alerts"), f"{alerts.get('dataset') or headline}: why JANUS alerted")
    flows = alerts.get("flows") or []
    figs["alerts"] = (f"Of the {len(flows)} highest-scoring test flows, {sum(a['category'] != 'benign' for a in flows)} "
                      f"are attacks ({', '.join(sorted({a['category'] for a in flows} - {'benign'})) or 'none'}); the largest share of d² "
                      f"is {_top_axis(flows)}." if flows else "No JANUS run on the headline dataset.")
    curves = {name: sf.read_loss_curve(f) for name, f in (loss_files or {}).items()}
    missing = sf.plot_learning_curves(curves, p("learning_curves"), f"{headline}: learning curves")
    not_run = {n for n, f in (loss_files or {}).items() if str(f).endswith(".json")
               and ((_read_json(f) or {}).get("status") == "not run")}
    missing = [mname for mname in missing if mname not in not_run]
    figs["learning_curves"] = _curve_sentence(curves) + (
        f" No per-epoch losses recorded for: {', '.join(missing)}." if missing else "")
    return {"figures": {k: (p(k), figs[k]) for k in SUMMARY_FIGURES}, "intervals": df if len(df) else None,
            "notes": notes, "alerts": alerts, "headline": headline}


def _count(df, ds) -> int | None:
    r = df[(df["dataset"] == ds) & (df["category"] == "overall")]
    if r.empty or r["n_benign"].isna().all() or r["n_attack"].isna().all():
        return None
    return int(r["n_benign"].iloc[0] + r["n_attack"].iloc[0])


def _top_axis(flows) -> str:
    tops = [max(((k, v) for k, v in a["axis_share"].items() if v is not None), key=lambda kv: kv[1], default=(None, 0))
            for a in flows]
    names = [k for k, _ in tops if k]
    if not names:
        return "not available"
    common = max(set(names), key=names.count)
    return f"{common} in {names.count(common)} of {len(flows)} flows"


def _curve_sentence(curves) -> str:
    """Which models were still improving on benign val in their last epoch (best val epoch = last epoch)."""
    still, done = [], []
    for name, df in curves.items():
        if df is None or not len(df) or df["val_loss"].isna().all():
            continue
        last = df.groupby("part", sort=False).apply(lambda g: g.loc[g["val_loss"].idxmin(), "epoch"] == g["epoch"].max(),
                                                    include_groups=False)
        (still if bool(last.any()) else done).append(name)
    if not still and not done:
        return "No per-epoch losses were recorded."
    text = (f"Best val loss in the last epoch (still learning when training stopped): {', '.join(still)}. "
            if still else "Every model's best val epoch came before its last (it stopped on patience). ")
    return (text + (f"Stopped after its best val epoch: {', '.join(done)}." if still and done else "")).strip()


def _read_json(path) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def write_summary(out: str | Path, tables: list[str], figures: list[str], hikari_tables: list[str],
                  validation_summaries: list[str], title: str = "nidsflow results",
                  hikari_figures: list[str] = (), out_html: str | Path | None = None,
                  summary: dict | None = None, min_class_flows: int = MIN_CLASS_FLOWS) -> None:
    """The page: the first screen (AUROC heatmaps and the headline's intervals, a sentence under each), the
    operating point, why JANUS alerted, the learning curves, then every table (best per column bold, test
    flows in the headers, few-flow columns greyed, per-dataset sections folded), the ROC and score figures,
    then each HIKARI table with its plots and validation excerpt.

    ``summary``: what :func:`draw_summary_figures` returned (None: the tables and figures only). ``out`` gets
    markdown (figures linked by path relative to it); ``out_html``, if given, one self-contained page with the
    same content (figures embedded as data URIs, nothing referenced outside the file).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    intro = f"# {title}\n\nEvery number below was computed by this pipeline run; tables end with their provenance.\n"
    md_parts, html_parts = [intro], [markdown_to_html(intro)]
    intervals = summary.get("intervals") if summary else None
    decorate = TableDecorator(intervals, min_class_flows)

    def link(f, caption):
        return f"![{caption}]({os.path.relpath(f, out.parent)})"

    def add(title_: str, body: str, images: list[str] = (), body_html: str | None = None) -> None:
        links = "\n".join(link(f, _figure_caption(Path(f))) for f in images)
        md_parts.append(_section(title_, body + ("\n\n" + links if links else "")))
        figs = "".join(_figure_html(Path(f), _figure_caption(Path(f))) for f in images)
        inner = body_html if body_html is not None else markdown_to_html(body, decorate)
        html_parts.append(f"<section><h2>{html.escape(title_)}</h2>{inner}{figs}</section>")

    def add_figures(title_: str, names: list[str], cls: str, extra_md: str = "", first_md: str = "") -> None:
        figs = summary["figures"]
        md = "\n\n".join(f"{link(figs[n][0], SUMMARY_FIGURES[n])}\n\n{figs[n][1]}" for n in names)
        md_parts.append(_section(title_, (first_md + "\n\n" if first_md else "") + md
                                 + ("\n\n" + extra_md if extra_md else "")))
        body = "".join(_figure_html(Path(figs[n][0]), SUMMARY_FIGURES[n], figs[n][1], "full" if k == 2 else "")
                       for k, n in enumerate(names))  # a third figure takes the next row whole
        html_parts.append(f'<section><h2>{html.escape(title_)}</h2>' + (markdown_to_html(first_md) if first_md else "")
                          + f'<div class="{cls}">{body}</div>'
                          + (markdown_to_html(extra_md) if extra_md else "") + "</section>")

    if summary:
        headline = summary.get("headline")
        add_figures(f"Who detects best (headline dataset: {headline})",
                    ["auroc_heatmap", "auroc_intervals", "class_heatmap"], "screen",
                    first_md="\n".join(f"- note: {n}" for n in summary.get("notes", [])))
        add_figures("Operating point", ["operating_point"], "wide", operating_point_markdown(intervals))
        add_figures("Why JANUS alerted", ["alerts"], "wide", alerts_markdown(summary.get("alerts") or {}))
        add_figures("Learning curves", ["learning_curves"], "wide")
    datasets = decorate.datasets | {Path(f).parent.name for f in figures}
    for path in tables:  # each table's own "# title" heads its section
        text = Path(path).read_text()
        first, _, rest = text.partition("\n")
        heading = first[2:].strip() if first.startswith("# ") else Path(path).stem.replace("_", " ")
        body = rest if first.startswith("# ") else text
        add(heading, body, body_html=_fold_dataset_sections(body, datasets, decorate))
    if figures:
        add("Figures", "ROC curves of JANUS and the baselines on the test split, and the deployable score's "
                       "distribution, one panel per attack class against the test benign flows.", list(figures))
    for table, vsummary in zip(hikari_tables, validation_summaries):
        name = Path(table).parent.name
        body = Path(table).read_text()
        v = json.loads(Path(vsummary).read_text())
        excerpt = {k: v[k] for k in _VALIDATION_KEYS if k in v}
        if "calibration" in excerpt:  # the reliability curve is drawn in calibration_curve.png
            excerpt["calibration"] = {k: c for k, c in excerpt["calibration"].items() if k != "curve"}
        body += "\n\nValidation (excerpt of validation_summary.json):\n\n```json\n" + json.dumps(excerpt, indent=1) + "\n```\n"
        images = [f for f in hikari_figures if Path(f).parent.name == name]
        add(f"HIKARI meta-ensemble: {name}", body, images)
    out.write_text("\n".join(md_parts))
    if out_html is not None:
        Path(out_html).write_text(html_page(title, "\n".join(html_parts)))
