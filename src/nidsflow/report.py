"""The human-readable summary: every result table and figure of both branches on one page.

``write_summary`` opens with the headline (the within table's overviews: overall and per-class median
AUROC of every method on every dataset), then every table in full; it writes it twice: as markdown (tables inline, figures linked by relative path) and
as one self-contained HTML file (tables rendered, figures embedded), which opens in any browser and
is what the Snakemake report shows under "Summary".
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


def markdown_to_html(text: str) -> str:
    """HTML of the markdown subset the pipeline writes: headings, paragraphs, pipe tables, bullet lists,
    fenced code blocks, rules and images. Anything else is kept as escaped text."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
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
            th = "".join(f"<th>{_inline(c)}</th>" for c in head)
            body = "".join("<tr>" + "".join(f'<td style="text-align:{align[k] if k < len(align) else "left"}">'
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
figure{display:inline-block;margin:.5em}img{max-width:640px}figcaption{font-size:12px;color:#555}"""


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


def write_summary(out: str | Path, tables: list[str], figures: list[str], hikari_tables: list[str],
                  validation_summaries: list[str], title: str = "nidsflow results",
                  hikari_figures: list[str] = (), out_html: str | Path | None = None) -> None:
    """The tables in order, the figures, then each HIKARI table with its plots and validation excerpt.

    ``out`` gets markdown (figures linked by path relative to it); ``out_html``, if given, one
    self-contained page with the same content (figures embedded).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    intro = f"# {title}\n\nEvery number below was computed by this pipeline run; tables end with their provenance.\n"
    md_parts, html_parts = [intro], [markdown_to_html(intro)]

    def add(title_: str, body: str, images: list[str] = ()) -> None:
        links = "\n".join(f"![{_figure_caption(Path(f))}]({os.path.relpath(f, out.parent)})" for f in images)
        md_parts.append(_section(title_, body + ("\n\n" + links if links else "")))
        figs = "".join(f'<figure><img alt="{html.escape(_figure_caption(Path(f)))}" src="{_data_uri(Path(f))}">'
                       f"<figcaption>{html.escape(_figure_caption(Path(f)))}</figcaption></figure>" for f in images)
        html_parts.append(f"<section><h2>{html.escape(title_)}</h2>{markdown_to_html(body)}{figs}</section>")

    headline = "\n\n".join(o for o in (overview_sections(Path(p).read_text()) for p in tables if Path(p).stem == "within")
                             if o)
    if headline:
        add("Headline", "Test AUROC (%) of every method, mean ± std over seeds: overall (dominated by the attack "
                        "class with most flows) and the per-class median (every attack class weighs alike). "
                        "Details in the within-dataset table below.\n\n" + headline)
    for path in tables:  # each table's own "# title" heads its section
        text = Path(path).read_text()
        first, _, rest = text.partition("\n")
        heading = first[2:].strip() if first.startswith("# ") else Path(path).stem.replace("_", " ")
        add(heading, rest if first.startswith("# ") else text)
    if figures:
        add("Figures", "ROC curves of JANUS and the baselines on the test split, and the deployable score's "
                       "distribution, one panel per attack class against the test benign flows.", list(figures))
    for table, summary in zip(hikari_tables, validation_summaries):
        name = Path(table).parent.name
        body = Path(table).read_text()
        v = json.loads(Path(summary).read_text())
        excerpt = {k: v[k] for k in _VALIDATION_KEYS if k in v}
        if "calibration" in excerpt:  # the reliability curve is drawn in calibration_curve.png
            excerpt["calibration"] = {k: c for k, c in excerpt["calibration"].items() if k != "curve"}
        body += "\n\nValidation (excerpt of validation_summary.json):\n\n```json\n" + json.dumps(excerpt, indent=1) + "\n```\n"
        images = [f for f in hikari_figures if Path(f).parent.name == name]
        add(f"HIKARI meta-ensemble: {name}", body, images)
    out.write_text("\n".join(md_parts))
    if out_html is not None:
        Path(out_html).write_text(html_page(title, "\n".join(html_parts)))
