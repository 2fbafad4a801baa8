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


# ---------------------------------------------------------------- the summary page's first screen and tables

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nidsflow.fixtures import make_summary_inputs  # noqa: E402
from nidsflow.report import (SUMMARY_FIGURES, TableDecorator, draw_summary_figures,  # noqa: E402
                             default_headline)
from nidsflow.summary_figures import (INTERVAL_COLUMNS, SummaryInputError, auroc_matrix,  # noqa: E402
                                      interval_sentence, read_intervals, read_loss_curve)


def _page(tmp_path, with_intervals=True):
    """The summary page of the fixture inputs (tables/, report/ under tmp_path); returns (html path, summary)."""
    p = make_summary_inputs(tmp_path, with_intervals=with_intervals)
    summary = draw_summary_figures(tmp_path / "report" / "figures", p["intervals"], p["within_csv"], "demo_a",
                                   p["alerts"], p["loss_files"])
    page = tmp_path / "report" / "summary.html"
    write_summary(tmp_path / "report" / "summary.md", [str(p["within_md"])], [str(f) for f in p["figures"]], [], [],
                  title="t", out_html=page, summary=summary)
    return page, summary


def test_the_fixture_intervals_file_has_exactly_the_tables_schema(tmp_path):
    p = make_summary_inputs(tmp_path)
    assert tuple(pd.read_csv(p["intervals"]).columns) == INTERVAL_COLUMNS
    df = read_intervals(p["intervals"])
    assert df["in_median"].dtype == bool and df.loc[df["category"] == "overall", "in_median"].eq(False).all()
    pd.read_csv(p["intervals"]).drop(columns=["auroc_hi", "group_by"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SummaryInputError, match=r"bad\.csv: missing column\(s\) auroc_hi, group_by"):
        read_intervals(tmp_path / "bad.csv")


def test_the_sentences_say_who_leads_by_how_much_and_whether_intervals_overlap():
    rows = pd.DataFrame({"method": ["A", "B", "C"], "auroc": [0.90, 0.80, 0.70], "auroc_lo": [0.88, 0.78, 0.6],
                         "auroc_hi": [0.92, 0.82, 0.8]})
    text = interval_sentence(rows, "d")
    assert text.startswith("On d, A leads with AUROC 90.0 [88.0, 92.0], 10.0 points above B (80.0 [78.0, 82.0])")
    assert text.endswith("their 95 % intervals do not overlap.")
    rows.loc[1, "auroc_hi"] = 0.885
    assert "intervals overlap, so the lead is not established" in interval_sentence(rows, "d")
    rows[["auroc_lo", "auroc_hi"]] = np.nan
    assert "the 95 % intervals are missing" in interval_sentence(rows, "d")


def test_heatmap_rows_are_methods_sorted_best_first_and_not_run_is_left_blank(tmp_path):
    df = read_intervals(make_summary_inputs(tmp_path)["intervals"])
    df.loc[(df["method"] == "GANomaly") & (df["dataset"] == "demo_b"), "auroc"] = np.nan
    m = auroc_matrix(df, "dataset")
    assert list(m.columns) == ["demo_a", "demo_b", "demo_c"] and len(m) == 6
    means = m.mean(axis=1).to_numpy()
    assert np.all(np.diff(means) <= 0) and np.isnan(m.loc["GANomaly", "demo_b"])
    cls = auroc_matrix(df, "category", "demo_a")
    assert set(cls.columns) == {"syn_flood", "port_scan", "dns_tunnel", "exfil"}


def test_tables_get_counts_in_headers_grey_few_flow_columns_bold_best_and_fold_by_dataset(tmp_path):
    page, summary = _page(tmp_path)
    html = page.read_text()
    # exfil has 12 test flows on demo_a and 25 on demo_c (< 30): greyed headers and cells, one per method row
    assert re.search(r'<th class="few">exfil \(n=12\)</th>', html) and '<th class="few">exfil (n=25)</th>' in html
    assert html.count('<td class="few"') == 2 * 6
    assert "<th>syn_flood (n=120)</th>" in html and "<th>overall (n=812)</th>" in html
    # every dataset's table folded in its own <details>, none of the tables left open
    assert [m for m in re.findall(r"<details><summary>(.*?)</summary>", html)] == ["demo_a", "demo_b", "demo_c"]
    # best per column in bold: demo_a's overall column has exactly one bold cell, the largest
    within = pd.read_csv(tmp_path / "tables" / "within.csv")
    best = within[(within.dataset == "demo_a") & (within.column == "overall")].sort_values("auroc_mean").iloc[-1]
    section = html.split("<summary>demo_a</summary>")[1].split("</details>")[0]
    assert f"<b>{100 * best.auroc_mean:.2f} ± 0.40</b>" in section
    assert section.count("<b>") == 2 + 4  # overall, per-class median, four classes (params is not ranked)


def test_the_tables_own_counts_and_few_flow_marks_grey_their_columns():
    """rule tables' headers: 'class (benign / attack)', ‡ on a class below evaluate.min_class_flows."""
    head = ["method", "params", "overall (100 / 159)", "per-class median", "c2 (100 / 16) ‡", "scan (100 / 38)"]
    out_head, rows, classes = TableDecorator(None)("demo_a", head, [["A", "1k", "**90.00 ± 1.00**", "2", "3", "4"]])
    assert out_head == head and rows[0][4] == "3" and classes == ["", "", "", "", "few", ""]
    # the AUPRC table under a dataset: the mark alone greys
    assert TableDecorator(None)("demo_a: AUPRC", ["method", "AUPRC c2 (100 / 16) ‡"], [["A", "1"]])[2] == ["", "few"]


def test_a_table_that_marks_its_own_best_and_counts_is_left_as_it_is():
    deco = TableDecorator(None)
    head, rows, classes = deco("demo_a", ["method", "overall (n=900)", "x (n=5)"],
                               [["A", "**90.00 ± 1.00**", "1"], ["B", "80.00 ± 1.00", "2"]])
    assert head == ["method", "overall (n=900)", "x (n=5)"] and rows[1][2] == "2" and classes == ["", "", ""]
    deco.datasets = {"demo_a"}
    assert deco("demo_a", head, rows)[2] == ["", "", "few"]  # n parsed from the header itself


def test_without_intervals_the_page_draws_the_means_and_says_the_intervals_are_missing(tmp_path):
    page, summary = _page(tmp_path, with_intervals=False)
    assert any("intervals.csv is missing" in n for n in summary["notes"])
    assert "intervals are missing" in summary["figures"]["auroc_intervals"][1]
    assert "No operating point in the tables" in page.read_text()
    for path, _ in summary["figures"].values():
        assert path.stat().st_size > 0


def test_learning_curves_read_janus_logs_and_baseline_histories_and_name_the_missing(tmp_path):
    p = make_summary_inputs(tmp_path)
    janus = read_loss_curve(p["loss_files"]["JANUS (full, A1)"])
    assert list(janus["epoch"]) == list(range(1, 11)) and janus["val_loss"].is_monotonic_decreasing
    assert read_loss_curve(p["loss_files"]["GANomaly"]) is None and read_loss_curve(tmp_path / "absent.tsv") is None
    summary = draw_summary_figures(tmp_path / "f", p["intervals"], None, "demo_a", p["alerts"], p["loss_files"])
    sentence = summary["figures"]["learning_curves"][1]
    assert "still learning when training stopped): JANUS (full, A1)" in sentence  # its best val epoch is its last
    assert "Stopped after its best val epoch: MMR-style, STFPM-style" in sentence
    assert sentence.endswith("No per-epoch losses recorded for: GANomaly.")


def test_default_headline_prefers_the_corpus_split_by_capture():
    assert default_headline(["a", "corpus", "corpus_by_capture"]) == "corpus_by_capture"
    assert default_headline(["b", "a"]) == "b" and default_headline([]) is None


def test_the_page_references_nothing_outside_its_own_file(tmp_path):
    page, _ = _page(tmp_path)
    html = page.read_text()
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)["\']', html) + re.findall(r"url\(([^)]*)\)", html)
    assert len(refs) == len(SUMMARY_FIGURES) + 1  # the six summary figures and the ROC figure
    assert all(r.startswith("data:image/png;base64,") for r in refs), [r[:40] for r in refs]
    assert not re.search(r"https?://", html) and "../" not in html and "file:" not in html
    assert not re.search(r"[\"'(]/(?:home|tmp|work|results|usr)\b", html) and str(tmp_path) not in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const fig = document.querySelector('figure'), tab = document.querySelector('table');
  const r = {n: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
             fig_top: fig ? fig.getBoundingClientRect().top : null, table_top: tab ? tab.getBoundingClientRect().top : null};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium); "
                                             "the page's browser check is skipped")
def test_a_browser_opens_the_copied_page_every_image_loads_and_a_figure_comes_before_the_tables(tmp_path):
    page, _ = _page(tmp_path / "run")
    copied = tmp_path / "copied" / "summary.html"  # the page alone, moved away from the run's folders
    copied.parent.mkdir()
    copied.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    shutil.rmtree(tmp_path / "run")
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                           "--virtual-time-budget=10000", "--dump-dom", copied.as_uri()],
                          capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout)
    assert m, f"no probe result in the DOM (chromium rc {proc.returncode}): {proc.stderr[-2000:]}"
    r = json.loads(m.group(1).replace("&quot;", '"'))
    assert r["n"] == len(SUMMARY_FIGURES) + 1 and r["broken"] == []
    assert r["fig_top"] is not None and r["table_top"] is not None and r["fig_top"] < r["table_top"]


def test_the_loss_reader_takes_other_spellings_and_plain_json_histories(tmp_path):
    (tmp_path / "l.csv").write_text("epoch,train,val\n1,2.0,2.5\n2,1.0,1.5\n")
    df = read_loss_curve(tmp_path / "l.csv")
    assert list(df["train_loss"]) == [2.0, 1.0] and list(df["val_loss"]) == [2.5, 1.5]
    (tmp_path / "h.json").write_text(json.dumps({"history": [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0}]}))
    assert read_loss_curve(tmp_path / "h.json")["val_loss"].tolist() == [2.0]
    (tmp_path / "bad.tsv").write_text("step\tlr\n1\t0.1\n")
    assert read_loss_curve(tmp_path / "bad.tsv") is None


def test_classes_the_tables_left_out_of_the_median_are_greyed(tmp_path):
    p = make_summary_inputs(tmp_path)
    df = pd.read_csv(p["intervals"])
    df.loc[(df["dataset"] == "demo_b") & (df["category"] == "brute_force"), "in_median"] = False
    df.to_csv(p["intervals"], index=False)
    deco = TableDecorator(read_intervals(p["intervals"]))
    head, _, classes = deco("demo_b", ["method", "overall", "syn_flood", "brute_force"], [["A", "1", "2", "3"]])
    assert classes == ["", "", "", "few"] and head[3] == "brute_force (n=80)"



def test_the_report_rule_explains_the_configured_headline_and_names_an_unknown_one():
    from conftest import REPO

    def dry(*args):
        return subprocess.run(["snakemake", "-n", "--cores", "1", "--configfile", "tests/configs/tiny.yaml", "-p",
                               "results/tiny/report/top_alerts.json", *args], cwd=REPO, capture_output=True,
                              text=True)

    out = dry("--config", "report={'headline': 'demo_b'}")
    assert out.returncode == 0, out.stderr[-2000:]
    job = out.stdout.split("rule report_alerts:")[1].split("\n\n")[0]
    assert "results/tiny/demo_b/janus/full/seed42/phase1_scores.npz" in job and "demo_a" not in job
    bad = dry("--config", "report={'headline': 'nope'}")
    assert bad.returncode != 0 and "report.headline 'nope' is not a configured dataset" in bad.stdout + bad.stderr


def test_a_study_without_datasets_still_gets_its_page(tmp_path):
    """A HIKARI-only study: the tables hold provenance only; every figure says what is missing."""
    from nidsflow.evaluate.tables import write_tables

    write_tables([], [], [], tmp_path / "tables", {})
    s = draw_summary_figures(tmp_path / "figures", tmp_path / "tables" / "intervals.csv",
                             tmp_path / "tables" / "within.csv", None)
    assert s["headline"] is None and s["figures"]["auroc_intervals"][1] == "No method has an AUROC on any dataset."
    write_summary(tmp_path / "s.md", [str(tmp_path / "tables" / "within.md")], [], [], [], out_html=tmp_path / "s.html",
                  summary=s)
    assert (tmp_path / "s.html").read_text().count("<img") == len(SUMMARY_FIGURES)


def test_the_class_sentence_ranks_only_classes_with_enough_flows(tmp_path):
    p = make_summary_inputs(tmp_path)
    s = draw_summary_figures(tmp_path / "f", p["intervals"], None, "demo_a", p["alerts"], {})
    sentence = s["figures"]["class_heatmap"][1]
    assert " of 3 attack classes" in sentence and sentence.endswith("Not ranked, too few test flows (greyed): exfil.")
    assert "exfil:" not in sentence
