"""The workflow itself: lint, schema validation, and dry runs of both configurations."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def snakemake(*args, cwd=REPO, check=True):
    proc = subprocess.run(["snakemake", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_lint_has_no_findings():
    proc = snakemake("--lint", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_demo_config_dry_run_builds_every_stage():
    out = snakemake("-n", "--forceall", "--cores", "2", "--quiet", "rules").stdout
    for rule in ("demo_traffic", "extract", "split", "train_janus", "score_phase1", "score_cross", "baseline"):
        assert rule in out, f"rule {rule} missing from the demo DAG:\n{out}"


def test_paper_config_without_data_stops_naming_the_files():
    proc = snakemake("-n", "--cores", "1", "--configfile", "config/paper.yaml", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "Datasets are missing" in err and "resources/README.md" in err
    assert "resources/cicids2017/PCAPs" in err


def test_paper_config_with_data_in_place_builds_the_whole_dag(tmp_path):
    """Place an empty stand-in for every file the paper config asks for: the DAG must then build."""
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, work / name)
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    patterns = []
    for ds in cfg["datasets"].values():
        labels = ds.get("labels", [])
        patterns += ds.get("captures", []) + (list(labels) if isinstance(labels, dict) else labels)
    patterns += [h["csv"] for h in cfg["hikari"]["datasets"].values() if "csv" in h]
    for pattern in patterns:
        path = work / pattern.replace("*", "x")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        assert glob.glob(str(work / pattern)), pattern
    out = snakemake("-n", "--forceall", "--cores", "2", "--quiet", "rules", "--configfile", "config/paper.yaml", cwd=work).stdout
    for rule in ("extract", "split", "train_janus", "score_phase1", "score_cross", "baseline"):
        assert rule in out, out
    # The paper config replaces the demo config rather than merging the demo datasets into it.
    assert "demo_traffic" not in out, out


def test_schema_rejects_an_unknown_top_level_key(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["no_such_key"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "no_such_key" in proc.stdout + proc.stderr


def test_config_overrides_on_the_command_line_are_typed():
    """`--config seeds=[42]` reaches Snakemake as ["42"]; the workflow reads it as the number it is."""
    out = snakemake("-n", "--forceall", "--configfile", "config/config.yaml", "--config", "seeds=[42]",
                    "janus={epochs: 3, score_bf16: false}").stdout
    assert "janus/full/seed42/phase1_scores.npz" in out and "janus/full/seed43" not in out
    proc = snakemake("-n", "--configfile", "config/config.yaml", "--config", "seeds=[forty-two]", check=False)
    assert proc.returncode != 0 and "'forty-two' is not of type 'integer'" in proc.stdout + proc.stderr


@pytest.mark.parametrize("key, name, message", [
    ("datasets", "tables", "'tables' should not be valid under"),      # results/{study}/tables/ is the tables' folder
    ("datasets", "cross", "'cross' should not be valid under"),
    ("datasets", "Demo A", "'Demo A' does not match"),                 # upper case, space
    ("datasets", "demo/a", "'demo/a' does not match"),                 # a path separator
    ("datasets", "demo__a", "'demo__a' does not match"),               # "__" separates source and target of cross/
    ("study", "Real Study", "'Real Study' does not match"),
])
def test_schema_rejects_reserved_or_malformed_names(tmp_path, key, name, message):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if key == "datasets":
        cfg["datasets"][name] = cfg["datasets"].pop("demo_c")
    else:
        cfg["study"] = name
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--cores", "1", "--configfile", str(bad), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Error validating config file" in out and message in out, out


def test_every_target_is_under_the_configs_study():
    """Each configuration writes results/{study}/, logs/{study}/ and benchmarks/{study}/ only."""
    out = snakemake("-n", "--forceall", "--cores", "2", "--configfile", "config/config.yaml", "--config",
                    "study=other_study").stdout
    outputs = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith(("output:", "log:"))]
    files = [f for line in outputs for f in line.split(", ")]
    assert len(files) > 100
    assert {f.split("/")[0] for f in files} == {"results", "logs", "resources"}, files  # (-n prints no benchmarks)
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):  # every benchmark path carries the study
        for line in rules.read_text().splitlines():
            assert "benchmarks/" not in line or "benchmarks/{study}/" in line or "BENCHMARKS" in line, line
    assert all(f.startswith(("results/other_study/", "logs/other_study/", "benchmarks/other_study/", "resources/demo/"))
               for f in files), [f for f in files if "other_study" not in f and not f.startswith("resources/")]


def test_real_config_diverse_dataset_gives_each_attack_file_its_own_class(shared_data):
    """config/real.yaml's per-file dataset: benign = the nDPI corpus + the CIC-IDS2017 Monday excerpt, every attack
    capture (CIC-DDoS2019 + attack-pcaps-diverse) its own class; the second entry differs only in its split."""
    from nidsflow.capture.drivers import get_driver

    cfg = yaml.safe_load((REPO / "config" / "real.yaml").read_text())
    ds, grouped = cfg["datasets"]["diverse_files"], cfg["datasets"]["diverse_files_by_capture"]
    assert {k: v for k, v in grouped.items() if k != "split"} == ds and grouped["split"] == {"group_by": "source_file"}
    captures = sorted({f for p in ds["captures"] for f in glob.glob(str(REPO / p))})
    label_of = {}
    for pattern, label in ds["labels"].items():
        for f in glob.glob(str(REPO / pattern)):
            label_of[f] = label
    assert set(captures) <= set(label_of)
    driver = get_driver(ds["driver"])
    classes = {f: driver.attack_class(label_of[f]) for f in captures}
    attack = {Path(f).name: c for f, c in classes.items() if c != "benign"}
    diverse = {Path(f).name for f in glob.glob(str(shared_data / "attack-pcaps-diverse" / "*.pcap*"))}
    ddos = {Path(f).name for f in glob.glob(str(shared_data / "cicddos2019-attack-pcaps" / "*.pcap"))}
    assert set(attack) == diverse | ddos and len(diverse) == 7 and len(ddos) == 2
    assert len(set(attack.values())) == len(attack) == 9  # one class per file
    benign = {f for f, c in classes.items() if c == "benign"}
    assert len(benign) == len(glob.glob(str(shared_data / "pcaps-ndpi" / "*"))) + 1  # + the Monday excerpt


def test_real_corpus_config_labels_every_capture(shared_data, monkeypatch):
    """config/real.yaml's corpus: every benign and attack capture of ../shared/data, each labelled (old sets by the
    diverse_files names, new ones by their manifest); the two entries differ only in their split."""
    from nidsflow.capture.drivers import get_driver
    from nidsflow.capture.extract import _per_file_table, capture_files

    monkeypatch.chdir(REPO)
    cfg = yaml.safe_load((REPO / "config" / "real.yaml").read_text())
    ds, flow_level = cfg["datasets"]["corpus_by_capture"], cfg["datasets"]["corpus"]
    assert {k: v for k, v in flow_level.items() if k != "split"} == {k: v for k, v in ds.items() if k != "split"}
    assert ds["split"]["group_by"] == "source_file" and flow_level["split"]["group_by"] == "none"
    assert cfg["datasets"]["diverse_files"]["labels"].items() <= ds["labels"].items()  # the old names kept
    captures = capture_files(ds)
    table = _per_file_table("corpus", ds, get_driver(ds["driver"]), captures)  # raises on an uncovered capture
    on_disk = [f for f in glob.glob(str(shared_data / "*" / "*")) if f.endswith((".pcap", ".pcapng", ".gz"))]
    assert len(captures) == len(on_disk) == 661
    classes = {get_driver("per_file").attack_class(table[str(Path(c))]) for c in captures}
    assert {"benign", "port_scan", "port_scan_iot", "lateral_movement", "cryptomining", "syn_flood",
            "spoofed_syn_flood", "apt29_emulation"} <= classes and len(classes) == 23


def test_quick_study_target_dry_runs(shared_data):
    out = snakemake("quick_study", "-n", "--cores", "2", "--configfile", "config/real.yaml").stdout  # target first: --configfile takes several
    assert "results/real/quick/tables/within.md" in out
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["train_janus"] == 6 and jobs["baseline"] == 30 and jobs["quick_study"] == 1  # 2 datasets x 3 seeds


def test_context_overlay_plans_the_context_variant_and_the_twins(shared_data):
    """config/overlays/context.yaml: JANUS full and context at 3 seeds, 17 quick methods (6 of them *_context
    twins) at 3 seeds, on the capture-disjoint corpus; the twins pass the wildcard constraints though
    baselines.methods of another config might not name them."""
    out = snakemake("quick_study", "-n", "--cores", "2", "--configfile", "config/real.yaml",
                    "config/overlays/context.yaml").stdout
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["train_janus"] == 6 and jobs["score_phase1"] == 6 and jobs["baseline"] == 51
    for s in (42, 43, 44):
        assert f"results/real/corpus_by_capture/janus/context/seed{s}/phase1_scores.npz" in out
        assert f"results/real/corpus_by_capture/baselines/knn_context/seed{s}/scores.npz" in out
