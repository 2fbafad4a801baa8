"""The package's shape (issue 14): every module imports, the intra-package import graph has no cycle, and
each sub-package depends only on the ones below it.

The graph is read from the sources with ``ast`` (imports inside functions included), so a cycle that a
lazy import hides at run time still fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import nidsflow

PACKAGE = Path(nidsflow.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_import_graph_has_no_cycle():
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _importers_of(prefix: str, within: str) -> dict[str, set[str]]:
    return {m: {d for d in deps if d == prefix or d.startswith(prefix + ".")}
            for m, deps in GRAPH.items() if (m == within or m.startswith(within + ".")) and
            any(d == prefix or d.startswith(prefix + ".") for d in deps)}


@pytest.mark.parametrize("lower, upper", [
    ("nidsflow.capture", "nidsflow.janus"),      # the parser knows nothing of the models
    ("nidsflow.capture", "nidsflow.evaluate"),
    ("nidsflow.capture", "nidsflow.hikari"),
    ("nidsflow.capture", "nidsflow.deploy"),
    ("nidsflow.capture", "nidsflow.demo"),       # nor of the demo generator
    ("nidsflow.janus", "nidsflow.evaluate"),     # JANUS scores; evaluation reads the scores
    ("nidsflow.janus", "nidsflow.deploy"),
    ("nidsflow.janus", "nidsflow.hikari"),
    ("nidsflow.evaluate", "nidsflow.deploy"),
    ("nidsflow.hikari", "nidsflow.janus"),       # the two branches are independent
    ("nidsflow.hikari", "nidsflow.evaluate.baselines"),
])
def test_a_lower_layer_does_not_import_an_upper_one(lower, upper):
    assert not _importers_of(upper, lower), _importers_of(upper, lower)



def test_the_package_ships_its_test_fixtures_in_one_module():
    """Test and benchmark data generators live in nidsflow.fixtures, not beside each stage."""
    assert not [m for m in MODULES if m.rpartition(".")[2] == "synthetic"]
    assert not [m for m, deps in GRAPH.items() if "nidsflow.fixtures" in deps]  # no stage reads them
