"""Why JANUS alerted: the highest-scoring test flows of a dataset, explained as the deployment path explains them.

The flows are ranked by the deployable score d^2 of the phase-1 score table (the aggregator of
``aggregator.json``, fitted on benign val by rule ``fit_aggregator``), over every test flow, benign or not (a
benign flow at the top is a false alarm and is shown as one). Each of the ``k`` flows is then scored again by
:class:`nidsflow.deploy.scoring.Detector`, the class behind ``nidsflow score-capture`` and ``watch``, from the
store's own flow statistics and packets: its explanation is each score axis' share of d^2 (contribution_i =
z_i (P z)_i over d^2 = z^T P z, :func:`nidsflow.deploy.explain.axis_contributions`) and the (packet, channel)
cells the discrete head found least likely (:func:`nidsflow.deploy.explain.top_cells`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from nidsflow.evaluate.aggregators import load_artifact
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable

log = logging.getLogger(__name__)

#: Flows explained on the summary page.
TOP_FLOWS = 5


def rank_test_flows(table: ScoreTable, aggregator_path: str | Path, k: int = TOP_FLOWS) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the ``k`` test rows with the highest d^2 (ties by flow id) and their d^2."""
    agg, _, _ = load_artifact(aggregator_path)
    d2 = agg.score(table.scores, table.score_names, table.n_packets)
    test = np.nonzero(table.split == "test")[0]
    # +inf (unscorable) first, then by d^2; lexsort's last key is the primary one
    order = test[np.lexsort((table.flow_id[test], -np.nan_to_num(d2[test], nan=-np.inf, posinf=np.finfo(float).max)))]
    top = order[:k]
    return top, d2[top]


def flow_text(row) -> str:
    """'10.0.0.1:5353 → 10.0.0.2:53 proto 17' from a flows-table row."""
    return f"{row['src_ip']}:{int(row['src_port'])} → {row['dst_ip']}:{int(row['dst_port'])} proto {int(row['protocol'])}"


def explain_top_flows(phase1_scores: str | Path, aggregator_path: str | Path, model_path: str | Path,
                      store_root: str | Path, janus_cfg: dict, extract_cfg: dict | None = None,
                      k: int = TOP_FLOWS, device: str | None = "cpu") -> list[dict]:
    """The ``k`` highest-scoring test flows, each a record: rank, flow_id, flow (5-tuple), n_packets, category,
    label, d2 (phase 1), d2_rescored and alert (the deployment path), threshold, axis_contribution and
    axis_share (score name -> contribution, and contribution / d^2), dfm_top (list of {packet, channel, nll,
    contribution}; empty without a discrete head)."""
    from nidsflow.deploy.scoring import Detector
    from nidsflow.store import Store

    table = ScoreTable.load(phase1_scores)
    rows, d2 = rank_test_flows(table, aggregator_path, k)
    if len(rows) == 0:
        log.warning("%s: no test flows to explain", phase1_scores)
        return []
    ids = table.flow_id[rows]
    store = Store(store_root)
    det = Detector(model_path, aggregator_path, extract_cfg or {}, janus_cfg, device)
    cfg = det.scorer.model.cfg
    frame = store.flows.iloc[ids].reset_index(drop=True)
    feats = store.flow_features.iloc[ids]
    channels = lengths = None
    if cfg.use_packets:
        channels, lengths = store.packets(ids)
    out = det.score(frame, feats, channels, lengths, source=str(store.root), explain=True, flow_ids=ids)
    records = []
    for i, r in out.iterrows():
        contrib = {n: _num(r[f"contrib_{n}"]) for n in JANUS_SCORE_NAMES}
        total = float(r["deployable_score"])
        records.append({
            "rank": i + 1, "flow_id": int(ids[i]), "flow": flow_text(r), "n_packets": int(r["n_packets"]),
            "category": str(r["attack_class"]), "label": str(r["label"]), "d2": float(d2[i]),
            "d2_rescored": total, "alert": bool(r["alert"]), "threshold": float(det.threshold),
            "axis_contribution": contrib,
            "axis_share": {n: (v / total if v is not None and np.isfinite(total) and total != 0 else None)
                           for n, v in contrib.items()},
            "dfm_top": list(r["dfm_top"] or []),
        })
    log.info("%s: explained the %d highest-scoring test flows (%s)", phase1_scores, len(records),
             ", ".join(f"{a['category']} d2={a['d2']:.3g}" for a in records))
    return records


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def write_alerts(records: list[dict], out_json: str | Path, dataset: str, run: str = "") -> None:
    """The records as JSON, with the dataset and the run they come from."""
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps({"dataset": dataset, "run": run, "flows": records}, indent=1))


def read_alerts(path: str | Path | None) -> dict:
    """The JSON of :func:`write_alerts`; {"flows": []} when there is none."""
    if path is None or not Path(path).exists():
        return {"dataset": None, "run": "", "flows": []}
    return json.loads(Path(path).read_text())
