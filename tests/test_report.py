"""The summary page: markdown rendered to HTML, figures embedded, every input table present."""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nidsflow.report import markdown_to_html, write_summary  # noqa: E402

TABLE = """# Within-dataset AUROC (%)

Test AUROC, **mean** ± std; _within_ `A1`.

| method | overall | syn_flood |
|---|---:|---|
| JANUS (full, A1) | 94.85 ± 0.25 | not run |
| a <b> & c | 1 | 2 |

---
Provenance:
- seeds: 42, 43
"""


def test_markdown_tables_headings_and_lists_render():
    page = markdown_to_html(TABLE)
    assert "<h1>Within-dataset AUROC (%)</h1>" in page
    assert "<b>mean</b>" in page and "<i>within</i>" in page and "<code>A1</code>" in page
    assert page.count("<tr>") == 3 and "<th>overall</th>" in page
    assert '<td style="text-align:right">94.85 ± 0.25</td>' in page  # the ---: column is right-aligned
    assert "a &lt;b&gt; &amp; c" in page  # cell text is escaped
    assert "<hr>" in page and "<li>seeds: 42, 43</li>" in page


def test_summary_embeds_figures_and_keeps_every_table(tmp_path):
    table = tmp_path / "tables" / "within.md"
    table.parent.mkdir()
    table.write_text(TABLE)
    fig = tmp_path / "figures" / "demo_a" / "roc.png"
    fig.parent.mkdir(parents=True)
    plt.plot([0, 1], [0, 1])
    plt.savefig(fig)
    plt.close("all")
    md, page = tmp_path / "report" / "summary.md", tmp_path / "report" / "summary.html"
    write_summary(md, [str(table)], [str(fig)], [], [], title="t", out_html=page)
    text = md.read_text()
    assert "## Within-dataset AUROC (%)" in text and "](../figures/demo_a/roc.png)" in text
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<h2>Within-dataset AUROC (%)</h2>" in html
    embedded = html.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(embedded) == fig.read_bytes()


def test_summary_opens_with_the_overall_and_per_class_median_overviews(tmp_path):
    within = tmp_path / "tables" / "within.md"
    within.parent.mkdir()
    within.write_text(TABLE.replace("---\nProvenance", "## Overview (overall AUROC)\n\n| method | d |\n|---|---|\n"
                                    "| JANUS | 94.85 ± 0.25 |\n\n## Overview (per-class median AUROC)\n\n"
                                    "| method | d |\n|---|---|\n| JANUS | 71.30 ± 2.00 |\n\n---\nProvenance"))
    md = tmp_path / "report" / "summary.md"
    write_summary(md, [str(within)], [], [], [], title="t", out_html=tmp_path / "report" / "summary.html")
    text = md.read_text()
    headline = text.split("## Headline")[1].split("## Within-dataset AUROC")[0]
    assert "### Overview (per-class median AUROC)" in headline and "71.30 ± 2.00" in headline
    assert "### Overview (overall AUROC)" in headline and "Provenance" not in headline
    assert text.index("## Headline") < text.index("## Within-dataset AUROC")
