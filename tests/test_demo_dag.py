"""The whole DAG for real, at toy size (tests/configs/tiny.yaml), then `snakemake --report`.

Every rule of the workflow runs once on generated traffic (two domains, one seed): extraction, splits,
JANUS training and scoring (full, cross and an ablation), cross scoring, baselines, tables, figures,
new-capture scoring, the HIKARI branch and its validation, the summary page. The report must hold the
tables and figures of both branches, each with its caption.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

TINY = REPO / "tests" / "configs" / "tiny.yaml"
SECOND = REPO / "tests" / "configs" / "tiny_second.yaml"
pytestmark = pytest.mark.slow


def snakemake(work: Path, *args: str, config: Path = TINY) -> subprocess.CompletedProcess:
    proc = subprocess.run(["snakemake", "--configfile", str(config), *args], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, work / name)
    snakemake(work, "--cores", "2")
    return work


def test_every_stage_writes_its_results(tiny_run):
    r = tiny_run / "results" / "tiny"
    for name in ("within", "cross_matrix", "aggregators", "ablation_B"):
        for ext in ("md", "csv", "html"):
            assert (r / "tables" / f"{name}.{ext}").stat().st_size > 0
    within = (r / "tables" / "within.md").read_text()
    assert "| JANUS (full, A1) |" in within and "| Isolation Forest |" in within and "| MMR-style |" in within
    assert "git commit:" in within and "seeds: 42" in within
    # the ablation's cross columns are filled (B2 trained on demo_a scores demo_b)
    b2 = next(line for line in (r / "tables" / "ablation_B.md").read_text().splitlines() if line.startswith("| B2 |"))
    assert "not run" not in b2
    auroc = json.loads((r / "demo_a/janus/full/seed42/phase1_auroc.json").read_text())["mahalanobis_oas"]["auroc"]
    assert 0.5 < auroc <= 1.0
    scored = pd.read_csv(r / "newcapture/demo_a/seed42/demo_b_capture.csv")
    assert len(scored) > 0 and {"deployable_score", "alert"} <= set(scored.columns)
    assert np.load(r / "hikari/demo/meta_prob_test.npy").ndim == 1
    assert json.loads((r / "hikari/demo/validation_summary.json").read_text())["operating_point"]["roc_auc"] > 0.5
    assert (r / "report/summary.html").read_text().count("<table>") >= 5


def test_report_holds_both_branches_with_captions(tiny_run):
    snakemake(tiny_run, "--report", "report.zip")
    with zipfile.ZipFile(tiny_run / "report.zip") as z:
        names = {Path(n).name for n in z.namelist()}
        page = z.read("report/report.html").decode()
    assert {"within.html", "cross_matrix.html", "aggregators.html", "ablation_B.html", "summary.html"} <= names
    assert {"roc.png", "score_distribution.png", "confusion_matrix.png", "calibration_curve.png",
            "probability_distributions.png"} <= names
    assert "ROC curves on the test split of demo_a" in page  # a caption with its wildcard filled in
    assert "Group B: architecture ablations" in page and "confusion matrix of the stacked meta" in page


def test_a_second_study_leaves_the_first_untouched(tiny_run):
    """Another configuration (study tiny_second: another seed, split and model) writes results/tiny_second/ only:
    the first study's tables, figures and report keep their bytes and times, and its DAG is still complete."""
    first = tiny_run / "results" / "tiny"
    watched = [p for d in ("tables", "figures", "report") for p in (first / d).rglob("*") if p.is_file()]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched}
    assert len(watched) >= 13
    snakemake(tiny_run, "--cores", "2", config=SECOND)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched} == before
    second = tiny_run / "results" / "tiny_second"
    within = (second / "tables" / "within.md").read_text()
    assert "## demo_a" in within and "## demo_b" not in within and "seeds: 43" in within
    assert (second / "report" / "summary.html").stat().st_size > 0 and (tiny_run / "logs" / "tiny_second").is_dir()
    assert "seeds: 42" in (first / "tables" / "within.md").read_text()
    assert "Nothing to be done" in snakemake(tiny_run, "-n", "--cores", "1").stdout
