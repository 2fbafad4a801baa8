"""The config schema is the one source of defaults and a strict one: an unknown key is an error naming it and the
nearest valid key; every config of the repository validates; the Python defaults agree with the schema's."""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from nidsflow.config_schema import (ConfigError, check_known_keys, load_config, load_schema, resolve,
                                    schema_defaults, unknown_keys)

SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
CONFIGS = sorted(str(p.relative_to(REPO)) for p in [*(REPO / "config").glob("*.yaml"),
                                                    *(REPO / "tests" / "configs").glob("*.yaml")])
DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _with(cfg: dict, path: str, value) -> dict:
    out = copy.deepcopy(cfg)
    *heads, last = path.split(".")
    node = out
    for h in heads:
        node = node.setdefault(h, {})
    node[last] = value
    return out


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("path, near", [
    ("janus.d_modle", "janus.d_model"),
    ("janu", None),                                            # top level: "janus" is set, the typo is a new key
    ("extract.idle_timeout", "extract.idle_timeout_s"),
    ("split.groupby", "split.group_by"),
    ("datasets.demo_a.captrues", "datasets.demo_a.captures"),  # a dataset's fields are fixed, its name is free
    ("datasets.demo_a.split.n_trian", "datasets.demo_a.split.n_train"),
    ("baselines.stfpm.widht", "baselines.stfpm.widths"),
    ("baselines.iforst", "baselines.iforest"),
    ("hikari.ae.latnet_dim", "hikari.ae.latent_dim"),
    ("hikari.datasets.demo.cvs", "hikari.datasets.demo.csv"),
    ("evaluate.fpr_taget", "evaluate.fpr_target"),
])
def test_an_unknown_key_is_named_with_the_nearest_valid_key(path, near):
    cfg = _with(DEMO, path, 1)
    bad = unknown_keys(cfg, SCHEMA)
    if near is None:
        assert [p for p, _ in bad] == [path], bad
        return
    assert bad == [(path, near)]
    with pytest.raises(ConfigError) as e:
        check_known_keys(cfg, SCHEMA)
    assert f"config key {path} is not known; did you mean {near}?" in str(e.value)


def test_a_key_with_no_near_match_lists_the_valid_keys():
    with pytest.raises(ConfigError) as e:
        check_known_keys(_with(DEMO, "split.zzz", 1), SCHEMA)
    assert "config key split.zzz is not known (valid keys there: group_by, max_test_benign, max_test_per_class, min_test_benign, " \
           "n_train, n_val)" in str(e.value)


def test_free_form_names_are_not_unknown_keys():
    cfg = _with(DEMO, "datasets.my_data",
                {"driver": "per_file", "captures": ["a.pcap"], "labels": {"a.pcap": "BENIGN"}})
    cfg = _with(cfg, "hikari.datasets.other", {"store": "results/demo/my_data/store"})
    cfg = _with(cfg, "janus.variant_overrides", {"B1": {"flow_token": False}})
    assert unknown_keys(cfg, SCHEMA) == []


def test_resolve_rejects_bad_values_naming_the_key():
    with pytest.raises(ConfigError, match=r"config key janus\.epochs: 0 is less than the minimum of 1"):
        resolve(_with(DEMO, "janus.epochs", 0), SCHEMA)


def test_snakemake_dry_run_names_a_misspelt_key_and_suggests_the_right_one():
    proc = subprocess.run(["snakemake", "-n", "--configfile", "config/config.yaml",
                           "--config", 'janus={"d_modle": 64}'], cwd=REPO, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "config key janus.d_modle is not known; did you mean janus.d_model?" in out, out


def test_cli_reads_a_config_through_the_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(DEMO, "extract.tcp_closed", True)))
    proc = subprocess.run([sys.executable, "-m", "nidsflow.cli", "--config", str(bad), "extract", "demo_a",
                           str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config key extract.tcp_closed is not known; did you mean extract.tcp_close?" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- the repository's configs


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_of_the_repository_validates_strictly(path):
    cfg = load_config(REPO / path, SCHEMA)
    assert set(cfg) == set(SCHEMA["properties"])


@pytest.mark.parametrize("path", ["config/real.yaml", "config/hikari_cicids2017.yaml"])
def test_derived_configs_state_only_what_differs_from_the_defaults(path):
    """config/real.yaml and config/hikari_cicids2017.yaml hold only values that differ from the schema defaults
    (config/config.yaml, the documented demo, states every key)."""
    cfg = yaml.safe_load((REPO / path).read_text())
    same = []

    def walk(node, sch, where):
        props = sch.get("properties") or {}
        for k, v in node.items():
            sub = props.get(k)
            if sub is None:
                continue  # a free-form name (dataset, table): its entry is the config's own
            here = f"{where}.{k}" if where else k
            if here == "datasets":
                continue  # "datasets: {}" says in so many words that a study has no capture datasets
            if v == {} or "default" in sub and not isinstance(v, dict) and _same(v, sub["default"]):
                same.append(here)
            elif isinstance(v, dict):
                walk(v, sub, here)

    walk(cfg, SCHEMA, "")
    assert same == [], f"{path} repeats schema defaults: {same}"


def test_every_schema_key_is_described():
    missing = []

    def walk(sch, where):
        for k, sub in (sch.get("properties") or {}).items():
            if "description" not in sub:
                missing.append(f"{where}{k}")
            walk(sub, f"{where}{k}.")
        extra = sch.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{where}<name>.")

    walk(SCHEMA, "")
    assert missing == []


def test_every_section_is_strict():
    loose = []

    def walk(sch, where):
        if sch.get("type") == "object" and "properties" in sch and sch.get("additionalProperties") is not False:
            loose.append(where or "(top level)")
        for k, sub in (sch.get("properties") or {}).items():
            walk(sub, f"{where}.{k}" if where else k)
        if isinstance(sch.get("additionalProperties"), dict):
            walk(sch["additionalProperties"], f"{where}.<name>")

    walk(SCHEMA, "")
    assert loose == []


# ---------------------------------------------------------------- Python defaults agree with the schema


def _dataclass_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and (isinstance(a, bool) == isinstance(b, bool))


def _disagreements(code: dict, schema: dict) -> dict:
    return {k: (code[k], schema[k]) for k in code.keys() & schema.keys() if not _same(code[k], schema[k])}


def test_janus_dataclasses_agree_with_the_schema():
    from nidsflow.janus.model import JanusConfig
    from nidsflow.janus.variants import ScoreSettings, TrainSettings

    janus = schema_defaults(SCHEMA, "janus")
    for cls in (JanusConfig, TrainSettings, ScoreSettings):
        code = _dataclass_defaults(cls)
        assert _disagreements(code, janus) == {}, cls.__name__
    # every training and scoring setting is a schema key with a default (JanusConfig's variant flags are not keys)
    assert set(_dataclass_defaults(TrainSettings)) | set(_dataclass_defaults(ScoreSettings)) <= set(janus)
    assert {"T", "d_model", "n_layers", "n_heads", "dropout"} <= set(janus)


def test_flow_meter_defaults_agree_with_the_schema():
    from nidsflow.capture.flows import FlowConfig

    extract = schema_defaults(SCHEMA, "extract")
    assert _disagreements(_dataclass_defaults(FlowConfig), extract) == {}
    assert set(_dataclass_defaults(FlowConfig)) <= set(SCHEMA["properties"]["extract"]["properties"])


def test_demo_generator_defaults_agree_with_the_schema():
    from nidsflow.demo.generate import DEFAULTS

    demo = schema_defaults(SCHEMA, "demo")
    assert set(DEFAULTS) - set(demo) == {"idle_timeout_s", "active_timeout_s"}  # the rule passes extract's
    assert _disagreements(DEFAULTS, demo) == {}
    extract = schema_defaults(SCHEMA, "extract")
    assert _disagreements({k: DEFAULTS[k] for k in ("idle_timeout_s", "active_timeout_s")}, extract) == {}


def test_hikari_defaults_agree_with_the_schema():
    from nidsflow.hikari.config import DEFAULTS, STAGE_KEYS
    from nidsflow.hikari.validation import DEFAULTS as VALIDATION_DEFAULTS

    assert _disagreements(VALIDATION_DEFAULTS, schema_defaults(SCHEMA, "hikari.validation")) == {}

    hikari = SCHEMA["properties"]["hikari"]["properties"]
    for key, value in DEFAULTS.items():
        if key == "datasets":
            continue
        if isinstance(value, dict):
            section = schema_defaults(SCHEMA, f"hikari.{key}")
            assert set(section) == set(value), key
            assert _disagreements(value, section) == {}, key
        else:
            assert _same(hikari[key]["default"], value), key
    assert set(hikari) == set(DEFAULTS)
    for keys in STAGE_KEYS.values():  # every key a stage reads is a schema key
        for path in keys:
            head, _, tail = path.partition(".")
            assert head in hikari and (not tail or tail in hikari[head]["properties"]), path


#: keys a baseline's inherited methods read that are not its config keys: OCSVMBaseline sets calibration_q from
#: nu; RD4AD's own _fit / _score never call STFPM's score normaliser (norm_neighbours).
NOT_CONFIG_KEYS = {"ocsvm": {"calibration_q"}, "rd4ad": {"norm_neighbours"}}


def _baseline_code_defaults(method: str) -> tuple[dict, set]:
    """(defaults, keys read) of a baseline: the literal defaults of ``p.get(key, default)`` / ``self.params.get``
    / ``self._get`` in the methods its class runs (its own and the nidsflow base classes' it does not override),
    the grid's default_grid and its module's DEFAULTS."""
    import importlib

    from nidsflow.evaluate.baselines import baseline_class

    cls = baseline_class(method)
    defaults, read = {}, set()
    for k, v in getattr(importlib.import_module(cls.__module__), "DEFAULTS", {}).items():
        defaults[k] = v
        read.add(k)
    for klass in cls.__mro__:
        if not klass.__module__.startswith("nidsflow."):
            continue
        grid_key = klass.__dict__.get("grid_key")
        if grid_key and getattr(cls, "grid_key") == grid_key:
            defaults.setdefault(grid_key, cls.default_grid)
            read.add(grid_key)
        for name, func in klass.__dict__.items():
            if not inspect.isfunction(func) or inspect.getattr_static(cls, name) is not func:
                continue  # overridden further down: never run for this method
            for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("get", "_get") and node.args and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)):
                    continue
                if ast.unparse(node.func.value) not in ("p", "self.params", "self"):
                    continue
                key = node.args[0].value
                read.add(key)
                if len(node.args) > 1:
                    try:
                        defaults.setdefault(key, ast.literal_eval(node.args[1]))
                    except ValueError:
                        pass  # DEFAULTS[key]: the module's DEFAULTS, above
    skip = NOT_CONFIG_KEYS.get(method, set())
    return {k: v for k, v in defaults.items() if k not in skip}, read - skip


@pytest.mark.parametrize("method", sorted(k for k in SCHEMA["properties"]["baselines"]["properties"]
                                          if k not in ("methods", "seeds") and not k.endswith("_context")))
def test_baseline_defaults_agree_with_the_schema(method):  # a *_context twin takes its detector's block
    section = SCHEMA["properties"]["baselines"]["properties"][method]["properties"]
    code, read = _baseline_code_defaults(method)
    assert read, method
    assert read <= set(section), f"baselines.{method}: keys read but not in the schema: {sorted(read - set(section))}"
    assert _disagreements(code, schema_defaults(SCHEMA, f"baselines.{method}")) == {}
    # a key the schema does not fill in names the code's default in its description
    for key, sub in section.items():
        if "default" not in sub and key in code:
            assert "not filled in" in sub["description"], (method, key)


def test_every_repository_baseline_has_a_schema_section():
    from nidsflow.evaluate.baselines import BASELINES

    assert set(BASELINES) <= set(SCHEMA["properties"]["baselines"]["properties"])
