"""Phase 1 of the evaluation: a JANUS model scores a split, the score table is saved with its AUROCs.

:func:`score_phase1` (rule ``score_phase1``) scores the model's own dataset; :func:`score_cross` (rule
``score_cross``) the target dataset of a cross pair with the source's model. Both call
:func:`nidsflow.janus.score.score_split` and :func:`auroc_report`: per score column and for the
Mahalanobis-OAS aggregate (A1) fitted on the table's benign val rows, overall and per attack class.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from nidsflow.evaluate.aggregators import make_aggregator
from nidsflow.evaluate.metrics import evaluate_scores
from nidsflow.janus.score import score_split
from nidsflow.scores import ScoreTable

log = logging.getLogger(__name__)


def auroc_report(table: ScoreTable) -> dict:
    """Overall + per-attack-class test AUROC of each score column and of the Mahalanobis-OAS aggregate (A1)."""
    report: dict = {"scores": {}}
    for j, name in enumerate(table.score_names):
        col = table.scores[:, j]
        if not np.all(np.isfinite(col)):
            report["scores"][name] = None  # the variant has no such head (see nidsflow.janus.score)
            continue
        report["scores"][name] = evaluate_scores(table.split, table.attack_class, table.is_attack, col)
    agg = make_aggregator("A1").fit_table(table)
    report["mahalanobis_oas"] = evaluate_scores(table.split, table.attack_class, table.is_attack,
                                                agg.score_table(table))
    report["mahalanobis_oas"]["columns"] = list(agg.columns)
    return report


def score_phase1(model_path, store_root, split_path, out_scores, out_auroc, janus_cfg: dict,
                 device: str | None = None, progress: bool = True, variant: str | None = None) -> dict:
    """``variant``: the variant scored (its scoring settings), when the model is another variant's trained
    identically (variants.trained_as); default the model's own."""
    table = score_split(model_path, store_root, split_path, janus_cfg, device, progress, variant)
    table.save(out_scores)
    report = auroc_report(table)
    Path(out_auroc).write_text(json.dumps(report, indent=1))
    a = report["mahalanobis_oas"]["auroc"]
    log.info("%s: Mahalanobis-OAS test AUROC %s", out_scores, f"{a:.4f}" if a is not None else "undefined")
    return report


def score_cross(model_path, target_store, target_split, out_scores, janus_cfg: dict, device: str | None = None,
                progress: bool = True, variant: str | None = None) -> ScoreTable:
    """The source's cross model scores the target's benign val and test flows (target store + split);
    ``variant`` as in :func:`score_phase1`."""
    table = score_split(model_path, target_store, target_split, janus_cfg, device, progress, variant)
    table.save(out_scores)
    try:
        a = auroc_report(table)["mahalanobis_oas"]["auroc"]
        log.info("%s: Mahalanobis-OAS (fitted on target benign val) test AUROC %s", out_scores,
                 f"{a:.4f}" if a is not None else "undefined")
    except Exception as e:  # the AUROC here is only informative; evaluation recomputes it
        log.warning("%s: AUROC not computed (%s)", out_scores, e)
    return table
