"""Local GPU accounting: `--resources gpu=2` (the default profile's cap) never runs more than two GPU rules at once.

Runs the mini workflow of tests/slurm/mini (six `train` jobs with `resources: gpu=1`, each recording
its start and end time in probe.json) with 4 cores, and computes the largest number of recorded
intervals that overlap. No timing is asserted: only the recorded intervals are compared.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

MINI = REPO / "tests" / "slurm" / "mini"
DEFAULT_PROFILE = REPO / "workflow" / "profiles" / "default"


def run_mini(work: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["snakemake", *args], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def gpu_intervals(work: Path) -> list[tuple[float, float]]:
    probes = sorted(work.glob("results/*/seed*/probe.json"))
    return [(p["start"], p["end"]) for p in (json.loads(f.read_text()) for f in probes)]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Largest number of intervals open at one instant (an end at t closes before a start at t opens)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_max_overlap_counts_open_intervals():
    assert max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert max_overlap([(0, 1), (1, 2)]) == 1
    assert max_overlap([(0, 10), (1, 2), (3, 4), (1.5, 3.5)]) == 3


@pytest.fixture()
def mini_copy(tmp_path: Path) -> Path:
    work = tmp_path / "mini"
    shutil.copytree(MINI, work)
    return work


def test_default_profile_runs_at_most_two_gpu_jobs_at_once(mini_copy):
    # The repository's default profile supplies `resources: gpu: 2`; 4 cores would otherwise allow 4.
    # It also sets replace-workflow-config, so a --config override needs the config file named with it.
    run_mini(
        mini_copy,
        *("--workflow-profile", str(DEFAULT_PROFILE), "--cores", "4"),
        *("--configfile", "config.yaml", "--config", "gpu_sleep_s=1.5"),
    )
    intervals = gpu_intervals(mini_copy)
    assert len(intervals) == 6
    peak = max_overlap(intervals)
    assert peak <= 2, f"{peak} GPU jobs ran at once: {intervals}"
    assert peak == 2, f"the two GPUs were never used together: {intervals}"


def test_one_gpu_serialises_the_gpu_jobs(mini_copy):
    run_mini(mini_copy, "--cores", "4", "--resources", "gpu=1", "--config", "gpu_sleep_s=0.5")
    intervals = gpu_intervals(mini_copy)
    assert len(intervals) == 6
    assert max_overlap(intervals) == 1, intervals


def test_without_a_gpu_cap_more_gpu_jobs_overlap(mini_copy):
    """Control: the cap, not the cores, is what keeps the GPU jobs to two."""
    run_mini(mini_copy, "--cores", "4", "--resources", "gpu=6", "--config", "gpu_sleep_s=3")
    assert max_overlap(gpu_intervals(mini_copy)) > 2


def gpu_rules() -> set[str]:
    """Rules of workflow/rules/*.smk that declare `resources: gpu=1`."""
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", smk.read_text(), flags=re.M):
            if re.search(r"^\s+gpu\s*=\s*1\s*,?\s*$", body, flags=re.M):
                rules.add(name)
    return rules


def test_slurm_profile_sends_every_gpu_rule_to_the_gpu_partition():
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["default-resources"]["slurm_partition"] != "gpu"
    rules = gpu_rules()
    assert {"train_janus", "score_phase1", "score_cross"} <= rules
    for rule in rules:
        assert profile["set-resources"].get(rule, {}).get("slurm_partition") == "gpu", rule
    # Only GPU rules go there: a CPU rule in the GPU partition would hold a GPU node for nothing.
    in_gpu_partition = {r for r, res in profile["set-resources"].items() if res.get("slurm_partition") == "gpu"}
    assert in_gpu_partition == rules
