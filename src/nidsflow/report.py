"""The human-readable summary: every result table and figure of both branches in one markdown page."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.strip()}\n"


def write_summary(out: str | Path, tables: list[str], figures: list[str], hikari_tables: list[str],
                  validation_summaries: list[str], title: str = "nidsflow results") -> None:
    """Concatenate the markdown tables, link the figures (relative paths) and key validation figures."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}\n\nEvery number below was computed by this pipeline run; tables end with their provenance.\n"]
    for path in tables:
        parts.append(_section(Path(path).stem.replace("_", " "), Path(path).read_text()))
    if figures:
        links = "\n".join(f"![{Path(f).stem}]({os.path.relpath(f, out.parent)})" for f in figures)
        parts.append(_section("Figures", links))
    for table, summary in zip(hikari_tables, validation_summaries):
        name = Path(table).parent.name
        body = Path(table).read_text()
        v = json.loads(Path(summary).read_text())
        keys = [k for k in ("operating_point", "calibration", "separation", "leakage") if k in v]
        body += "\n\nValidation (excerpt):\n\n```json\n" + json.dumps({k: v[k] for k in keys}, indent=1) + "\n```\n"
        parts.append(_section(f"HIKARI meta-ensemble: {name}", body))
    out.write_text("\n".join(parts))
