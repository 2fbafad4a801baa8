"""Partial rebuilds with real Snakemake runs.

On the mini workflow of tests/slurm/mini (make_data per dataset -> train [gpu=1] per dataset and
seed -> score -> summary), copied to a temporary directory per test:
- a single target file builds only its ancestors;
- changing one dataset's parameter reruns only what depends on that dataset;
- `--until` and `--allowed-rules` restrict the jobs as documented;
- an interrupted job's partial output is never taken as done.
On the real workflow (dry runs only): a single target's DAG holds only that dataset's ancestors.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO

MINI = REPO / "tests" / "slurm" / "mini"


def snakemake(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["snakemake", *args], cwd=work, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_outputs(dry_run_output: str) -> list[str]:
    """Output files of every job a dry run lists (`output: a, b` lines)."""
    files = []
    for line in re.findall(r"^\s+output: (.+)$", dry_run_output, flags=re.M):
        files += [f.strip() for f in line.split(",")]
    return files


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The `Job stats` table of a dry run as {rule: count} (without the total)."""
    table = dry_run_output.split("Job stats:")[1].split("\n\n")[0]
    jobs = {}
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            jobs[match.group(1)] = int(match.group(2))
    return jobs


@pytest.fixture()
def mini(tmp_path: Path) -> Path:
    work = tmp_path / "mini"
    shutil.copytree(MINI, work)
    set_config(work, gpu_sleep_s=0)  # no need for the GPU stand-in to sleep here
    return work


def set_config(work: Path, **values) -> None:
    """Edit the copy's config file (each run records its params, so later runs must see the same)."""
    config_file = work / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config.update(values)
    config_file.write_text(yaml.safe_dump(config))


def produced(work: Path) -> set[str]:
    return {str(p.relative_to(work)) for p in (work / "results").rglob("*") if p.is_file()}


def test_one_target_builds_only_its_ancestors(mini):
    snakemake(mini, "--cores", "2", "results/a/seed2/score.txt")
    assert produced(mini) == {
        "results/a/data.txt",
        "results/a/seed2/model.txt",
        "results/a/seed2/probe.json",
        "results/a/seed2/score.txt",
    }


def test_changing_one_datasets_parameter_reruns_only_that_dataset(mini):
    snakemake(mini, "--cores", "2")
    datasets = yaml.safe_load((mini / "config.yaml").read_text())["datasets"]
    datasets["b"]["scale"] = 5
    set_config(mini, datasets=datasets)

    out = snakemake(mini, "-n", "--cores", "2", "--rerun-triggers", "params").stdout
    planned = planned_outputs(out)
    assert planned and not [f for f in planned if f.startswith("results/a/")], planned
    assert planned_jobs(out) == {"make_data": 1, "train": 3, "score": 3, "summary": 1, "all": 1}
    assert "Params have changed since last execution" in out

    # Rebuild, then nothing is left to do and dataset a's files were not touched.
    before = {f: (mini / f).stat().st_mtime_ns for f in produced(mini) if f.startswith("results/a/")}
    snakemake(mini, "--cores", "2", "--rerun-triggers", "params")
    assert {f: (mini / f).stat().st_mtime_ns for f in before} == before
    assert (mini / "results/b/data.txt").read_text().splitlines()[1] == "5.0"
    assert "Nothing to be done" in snakemake(mini, "-n", "--cores", "2").stdout


def test_until_stops_after_the_named_rule(mini):
    out = snakemake(mini, "-n", "--cores", "2", "--until", "train").stdout
    assert planned_jobs(out) == {"make_data": 2, "train": 6}
    snakemake(mini, "--cores", "2", "--until", "train")
    assert not (mini / "results/summary.tsv").exists()
    assert not list(mini.glob("results/*/seed*/score.txt"))
    assert len(list(mini.glob("results/*/seed*/model.txt"))) == 6


def test_allowed_rules_only_runs_those_rules(mini):
    # (--allowed-rules takes several names: targets go before it)
    out = snakemake(mini, "-n", "--cores", "1", "results/b/seed1/model.txt",
                    "--allowed-rules", "make_data", "train").stdout
    assert planned_jobs(out) == {"make_data": 1, "train": 1}
    # A target that needs a rule outside the allowed set cannot be built.
    proc = snakemake(mini, "-n", "--cores", "1", "results/b/seed1/model.txt",
                     "--allowed-rules", "make_data", check=False)
    assert proc.returncode != 0
    assert "MissingRuleException" in proc.stdout + proc.stderr or "No rule to produce" in proc.stdout + proc.stderr
    # Once the upstream files exist, the allowed rule alone finishes the job.
    snakemake(mini, "--cores", "1", "--until", "make_data")
    out = snakemake(mini, "-n", "--cores", "1", "results/b/seed1/model.txt",
                    "--allowed-rules", "train").stdout
    assert planned_jobs(out) == {"train": 1}


def _default_sigint() -> None:
    """SIGINT at its default, as a shell starts a command: an ignored SIGINT is inherited across exec, and
    something earlier in a full test session leaves it ignored in this process (Snakemake then never sees
    the Ctrl-C and runs the job to the end)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_slow_job(work: Path) -> subprocess.Popen:
    """Start rule slow_write (writes half its output, then sleeps) in its own process group."""
    proc = subprocess.Popen(
        ["snakemake", "--cores", "1", "results/slow.txt"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    started = work / "logs" / "slow_write.log"
    for _ in range(600):  # until the job is half way (a readiness poll, not a timing assertion)
        if started.exists() and "started" in started.read_text():
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended before the job started:\n{proc.stdout.read()}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("rule slow_write did not start within 60 s")


def assert_not_taken_as_done(work: Path) -> None:
    """results/slow.txt is either gone, or kept but flagged incomplete: never `Nothing to be done`."""
    dry = snakemake(work, "-n", "--cores", "1", "results/slow.txt", check=False)
    text = dry.stdout + dry.stderr
    assert "Nothing to be done" not in text, text
    if (work / "results/slow.txt").exists():
        assert dry.returncode != 0 and "IncompleteFilesException" in text, text
        assert "results/slow.txt" in text.split("Incomplete files:")[1], text
        dry = snakemake(work, "-n", "--cores", "1", "--rerun-incomplete", "results/slow.txt")
    assert planned_jobs(dry.stdout) == {"slow_write": 1}, dry.stdout


def rebuild_slow(work: Path) -> None:
    set_config(work, slow_sleep_s=0)
    snakemake(work, "--cores", "1", "--rerun-incomplete", "results/slow.txt")
    assert (work / "results/slow.txt").read_text() == "first-half\nsecond-half\n"
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", "results/slow.txt").stdout


def test_killed_job_leaves_partial_output_that_is_never_taken_as_done(mini):
    proc = start_slow_job(mini)
    # SIGKILL to snakemake and the job: like a crashed node, nothing gets to clean up.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (mini / "results/slow.txt").read_text() == "first-half\n"
    # A killed Snakemake leaves its lock behind; removing it is the user's first step after a crash.
    snakemake(mini, "--unlock", "--cores", "1")
    assert_not_taken_as_done(mini)
    rebuild_slow(mini)


def test_interrupted_snakemake_never_takes_the_partial_output_as_done(mini):
    proc = start_slow_job(mini)
    # Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends it).
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert_not_taken_as_done(mini)
    rebuild_slow(mini)


# ---------------------------------------------------------------- the real workflow (dry runs)


@pytest.fixture()
def real_copy(tmp_path: Path) -> Path:
    """The real workflow in a copy, so that files already built in the checkout do not hide jobs."""
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, work / name)
    return work


REAL_PHASE1 = "results/demo/demo_a/janus/full/seed42/phase1_scores.npz"


def test_real_split_target_plans_only_its_datasets_ancestors(real_copy):
    out = snakemake(real_copy, "-n", "--cores", "2", "results/demo/demo_b/splits/seed43.npz").stdout
    assert planned_jobs(out) == {"demo_traffic": 1, "extract_part": 1, "extract": 1, "split": 1}
    outputs = planned_outputs(out)
    assert "results/demo/demo_b/splits/seed43.npz" in outputs
    # (demo_traffic writes every demo domain in one job; under results/ only demo_b seed 43 appears)
    results = [f for f in outputs if f.startswith("results/")]
    assert not [f for f in results if "demo_a" in f or "demo_c" in f or "seed42" in f], results


def test_real_phase1_target_and_until(real_copy):
    out = snakemake(real_copy, "-n", "--cores", "2", REAL_PHASE1).stdout
    assert planned_jobs(out) == {"demo_traffic": 1, "extract_part": 1, "extract": 1, "split": 1, "train_janus": 1, "score_phase1": 1}
    out = snakemake(real_copy, "-n", "--cores", "2", REAL_PHASE1, "--until", "split").stdout
    assert planned_jobs(out) == {"demo_traffic": 1, "extract_part": 1, "extract": 1, "split": 1}
    # Without the upstream files, the GPU rules alone cannot reach the target.
    proc = snakemake(real_copy, "-n", "--cores", "2", REAL_PHASE1, "--allowed-rules", "train_janus",
                     "score_phase1", check=False)
    assert proc.returncode != 0


def test_real_tables_plan_the_ablation_cross_scores(real_copy):
    """The tables ask for the cross matrix (each source's "cross" model, every seed) and, on each ablation source,
    the full model and every group-B variant scoring every other dataset with each ablation seed."""
    cfg = yaml.safe_load((real_copy / "config" / "config.yaml").read_text())
    out = snakemake(real_copy, "-n", "--cores", "2", "results/demo/tables/ablation_B.md").stdout
    planned = {f for f in planned_outputs(out) if f.startswith("results/demo/cross/")}
    dss, janus = list(cfg["datasets"]), cfg["janus"]
    matrix = {f"results/demo/cross/{a}__{b}/cross/seed{s}/cross_scores.npz"
              for a in dss for b in dss if a != b for s in cfg["seeds"]}
    ablation = {f"results/demo/cross/{a}__{b}/{v}/seed{s}/cross_scores.npz" for a in janus["ablation_datasets"]
                for b in dss if a != b for v in janus["variants"] for s in janus["ablation_seeds"]}
    assert planned == matrix | ablation
    assert planned_jobs(out)["score_cross"] == len(planned)
    # the demo: demo_a's variants score demo_b and demo_c with seed 42; no other source's variants are scored
    assert "results/demo/cross/demo_a__demo_c/B3/seed42/cross_scores.npz" in planned
    assert "results/demo/cross/demo_a__demo_b/full/seed42/cross_scores.npz" in planned
    assert not [f for f in planned if f.startswith("results/demo/cross/demo_b__") and "/cross/seed" not in f]
