"""The per-stage conda environments (workflow/envs/*.yaml) pin exactly the versions of pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from conftest import REPO

ENVS = sorted((REPO / "workflow" / "envs").glob("*.yaml"))
EXPECTED_ENVS = {"capture", "janus", "evaluate", "hikari", "report"}
#: Run the workflow itself, not inside a stage's environment.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+\-]+)$")


def canonical(name: str) -> str:
    """PEP 503 name normalisation: `PyYAML`, `pyyaml` and `py_yaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = PIN.match(requirement.strip())
        assert match, f"pyproject.toml: dependency {requirement!r} is not pinned with =="
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def env_pins(path) -> tuple[dict[str, str], list[str]]:
    """({package: version} of an env's pip section, [its conda dependencies])."""
    env = yaml.safe_load(path.read_text())
    conda, pip = [], {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for requirement in dep["pip"]:
                if requirement.startswith("--"):
                    continue  # pip options (an extra index)
                match = PIN.match(requirement.strip())
                assert match, f"{path.name}: pip requirement {requirement!r} is not pinned with =="
                pip[canonical(match.group(1))] = match.group(2)
        else:
            conda.append(dep)
    return pip, conda


def test_every_stage_has_an_environment():
    assert {p.stem for p in ENVS} >= EXPECTED_ENVS


@pytest.mark.parametrize("path", ENVS, ids=[p.stem for p in ENVS])
def test_env_pins_agree_with_pyproject(path):
    expected = pyproject_pins()
    pins, conda = env_pins(path)
    assert pins, f"{path.name} pins nothing"
    for name, version in pins.items():
        assert name in expected, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert version == expected[name], f"{path.name}: {name}=={version}, pyproject.toml has {expected[name]}"
    # conda itself brings only the interpreter and pip, at the version pyproject requires.
    assert "pip" in conda
    python = [d for d in conda if d.startswith("python")]
    assert python == ["python=3.11"], f"{path.name}: {python}"


def test_pyproject_requires_the_envs_python():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_every_dependency_is_in_some_environment():
    covered = set()
    for path in ENVS:
        covered |= set(env_pins(path)[0])
    missing = set(pyproject_pins()) - covered - WORKFLOW_ONLY
    assert not missing, f"in pyproject.toml but in no workflow/envs/*.yaml: {sorted(missing)}"


def test_every_env_a_rule_names_exists():
    named = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        named |= set(re.findall(r"conda:\s*\n?\s*\"\.\./envs/([\w\-]+\.yaml)\"", smk.read_text()))
    assert named, "no rule names a conda environment"
    missing = {name for name in named if not (REPO / "workflow" / "envs" / name).exists()}
    assert not missing, f"rules name conda environments that do not exist: {sorted(missing)}"


def test_pin_parser_rejects_unpinned(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - numpy>=2\n")
    with pytest.raises(AssertionError, match="not pinned"):
        env_pins(bad)
