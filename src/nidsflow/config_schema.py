"""The workflow config's one schema, ``workflow/schemas/config.schema.yaml``: every key, its description and
its default live there, and nowhere else.

``resolve`` is what a config goes through before anything reads it (``workflow/rules/common.smk`` does the same
steps with Snakemake's ``validate``; the CLI calls ``load_config``):

1. ``check_known_keys``: a key the schema does not know (``additionalProperties: false`` at every level) is an
   error naming its full path and the nearest valid key (``config key janus.d_modle is not known; did you mean
   janus.d_model?``);
2. JSON-schema validation that fills in the schema's defaults for missing keys (as ``snakemake.utils.validate``
   does with ``set_default=True``);
3. ``order_like_schema``: each section's keys in the schema's order, so a config that states only what differs
   from the defaults resolves to the very same dict, key order included (Snakemake compares a rule's params by
   their repr: another key order would rerun the jobs).
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import yaml

#: The schema in this checkout (src/nidsflow/ -> the repository root -> workflow/schemas/).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config the schema rejects (an unknown key, a wrong type or value)."""


def load_schema(path: str | Path | None = None) -> dict:
    """The schema at ``path``; by default this checkout's, else (an installed package) the working directory's
    workflow/schemas/config.schema.yaml."""
    if path is None:
        path = SCHEMA_PATH if SCHEMA_PATH.is_file() else Path("workflow") / "schemas" / "config.schema.yaml"
    with open(path) as f:
        return yaml.safe_load(f)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def unknown_keys(cfg: dict, schema: dict | None = None) -> list[tuple[str, str | None]]:
    """(full key path, nearest valid key path or None) of every key the schema does not allow.

    An object's keys are checked where its schema says ``additionalProperties: false``; a key it lists under
    ``properties`` is followed into, as is a free-form name (a dataset, a HIKARI table) into the schema of its
    ``additionalProperties``.
    """
    schema = load_schema() if schema is None else schema
    found: list[tuple[str, str | None]] = []

    def walk(node, sch, path):
        if not isinstance(node, dict) or not isinstance(sch, dict):
            return
        props = sch.get("properties") or {}
        extra = sch.get("additionalProperties", True)
        for key, value in node.items():
            here = _join(path, key)
            if key in props:
                walk(value, props[key], here)
            elif isinstance(extra, dict):
                walk(value, extra, here)
            elif extra is False:
                near = difflib.get_close_matches(str(key), [str(k) for k in props], n=1, cutoff=0.6)
                found.append((here, _join(path, near[0]) if near else None))

    walk(cfg, schema, "")
    return found


def _known_here(schema: dict, path: str) -> list[str]:
    """The valid keys of the object at ``path`` (a free-form level is walked through its additionalProperties)."""
    sch = schema
    for part in path.split(".")[:-1]:
        props = sch.get("properties") or {}
        sch = props[part] if part in props else sch.get("additionalProperties") or {}
    return sorted(sch.get("properties") or {})


def unknown_key_message(cfg: dict, schema: dict | None = None) -> str | None:
    """The error text for every unknown key of ``cfg``, or None when every key is known."""
    schema = load_schema() if schema is None else schema
    bad = unknown_keys(cfg, schema)
    if not bad:
        return None
    lines = []
    for path, near in bad:
        if near:
            lines.append(f"config key {path} is not known; did you mean {near}?")
        else:
            lines.append(f"config key {path} is not known (valid keys there: {', '.join(_known_here(schema, path))})")
    return "\n".join(lines) + "\n(every key, its meaning and its default: workflow/schemas/config.schema.yaml)"


def check_known_keys(cfg: dict, schema: dict | None = None) -> None:
    """Raise ConfigError naming each key of ``cfg`` the schema does not know, with the nearest valid key."""
    message = unknown_key_message(cfg, schema)
    if message:
        raise ConfigError(message)


def order_like_schema(node, schema: dict | None):
    """``node`` with the keys of each fixed section (an object reached through the schema's ``properties``) in the
    schema's order. Below a free-form name (a dataset, a HIKARI table, a label pattern) nothing is reordered: a
    dataset entry keeps the order its config gives (its extraction params are that entry). Values are not changed."""
    if not isinstance(node, dict) or not isinstance(schema, dict):
        return node
    props = schema.get("properties") or {}
    out = {k: order_like_schema(node[k], props[k]) for k in props if k in node}
    out.update((k, v) for k, v in node.items() if k not in out)
    return out


def fill_defaults(cfg: dict, schema: dict) -> dict:
    """Validate ``cfg`` in place, filling in the schema's defaults for missing keys (the validator
    ``snakemake.utils.validate(set_default=True)`` uses); raise ConfigError on the first violation."""
    import jsonschema
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sch):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, sch)

    Validator = validators.extend(Draft202012Validator, {"properties": set_defaults})
    try:
        Validator(schema).validate(cfg)
    except jsonschema.ValidationError as e:
        where = ".".join(map(str, e.absolute_path)) or "(top level)"
        raise ConfigError(f"config key {where}: {e.message}") from e
    return cfg


def resolve(cfg: dict, schema: dict | None = None) -> dict:
    """The config as the workflow reads it: unknown keys rejected, defaults filled in, keys in schema order
    (a new dict; ``cfg`` is not changed)."""
    schema = load_schema() if schema is None else schema
    check_known_keys(cfg, schema)
    out = fill_defaults(copy.deepcopy(cfg), copy.deepcopy(schema))
    return order_like_schema(out, schema)


def load_config(path: str | Path, schema: dict | None = None) -> dict:
    """Read a workflow config file and ``resolve`` it."""
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    try:
        return resolve(cfg, schema)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def schema_defaults(schema: dict | None = None, path: str = "") -> dict:
    """{key: default} of the object at ``path`` ("janus", "baselines.stfpm", "hikari.ae"; "" = the top level)
    for every key there that has a default."""
    sch = load_schema() if schema is None else schema
    for part in [p for p in path.split(".") if p]:
        sch = sch["properties"][part]
    return {k: v["default"] for k, v in (sch.get("properties") or {}).items() if "default" in v}
