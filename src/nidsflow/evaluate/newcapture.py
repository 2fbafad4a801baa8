"""Score a capture never seen before: what a SOC analyst runs next.

Given a trained JANUS model (``model.pt``), its fitted deployable aggregator and alert threshold
(``aggregator.json``, written by rule ``fit_aggregator`` from the model's benign val scores) and a
pcap/pcapng file, this module assembles the capture's flows with the same flow meter and settings as
extraction (``extract:`` config), computes the same flow statistics, normalises them with the
model's own normaliser (benign train statistics of the training dataset), computes the 10 JANUS
scores, the deployable score d^2 and the alert flag (d^2 > threshold, the threshold chosen on benign
val for ``evaluate.fpr_target``), and writes one CSV row per flow.

The capture is read in streaming fashion: flows are scored chunk by chunk as the flow meter
finishes them, so memory stays bounded for large captures. No labels are involved.

Command line::

    python -m nidsflow.evaluate.newcapture --model results/demo/demo_a/janus/full/seed42/model.pt \\
        --aggregator results/demo/demo_a/janus/full/seed42/aggregator.json --capture new.pcap \\
        --out new_scores.csv [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.evaluate.aggregators import load_artifact
from nidsflow.scores import JANUS_SCORE_NAMES

log = logging.getLogger(__name__)

#: Columns of the per-flow CSV, in order.
CSV_COLUMNS: tuple[str, ...] = (
    "flow_index", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_ts", "last_ts", "n_packets",
    *JANUS_SCORE_NAMES, "deployable_score", "alert",
)


class NewCaptureError(ValueError):
    """The capture, model or aggregator cannot be used together."""


def iter_capture_flows(capture: str | Path, extract_cfg: dict):
    """Yield (frame, features, channels, lengths) per chunk of finished flows of one capture, without labels.

    frame: 5-tuple, times and packet count (forward = first packet's sender); features: the
    CICFlowMeter-style statistics (``capture.features.FEATURE_NAMES``); channels [n, T, 9] and the
    true lengths. Uses the extraction library's reader, flow meter and feature code directly.
    """
    from nidsflow.capture.features import features_from_state
    from nidsflow.capture.flows import FlowConfig, meter_capture

    capture = Path(capture)
    if not capture.exists():
        raise NewCaptureError(f"{capture}: capture file not found")
    stats: dict = {}
    for chunk in meter_capture(capture, FlowConfig.from_extract_config(extract_cfg), extract_cfg, stats):
        if len(chunk):
            yield chunk.frame(), features_from_state(chunk.state), chunk.channels, chunk.lengths
    log.info("%s: reader %s; flow meter %s", capture, stats.get("reader"), stats.get("meter"))


def score_capture(capture: str | Path, model_path: str | Path, aggregator_path: str | Path, out_csv: str | Path,
                  extract_cfg: dict, janus_cfg: dict, device: str | None = None) -> dict:
    """Write the per-flow CSV (``CSV_COLUMNS``) of ``capture``; returns a summary (flows, alerts, threshold)."""
    from nidsflow.janus.score import scorer_for

    agg, threshold, art = load_artifact(aggregator_path)
    scorer, norm, meta = scorer_for(model_path, janus_cfg, device, progress=False)
    cfg = scorer.model.cfg
    if cfg.use_packets and int(extract_cfg.get("T", norm.T)) < norm.T:
        log.warning("extract.T=%s is below the model's T=%s: later packets are zero padded",
                    extract_cfg.get("T"), norm.T)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    n_flows, n_alerts, n_unscorable, first = 0, 0, 0, True
    fh = open(tmp, "w")
    try:
        for frame, feats, channels, lengths in iter_capture_flows(capture, extract_cfg):
            n = len(frame)
            data = norm.transform(feats if cfg.flow_token else None,
                                  channels if cfg.use_packets else None,
                                  lengths if cfg.use_packets else None, n, source=str(capture))
            S = scorer.score(data, desc=f"scoring {Path(capture).name}", flow_ids=np.arange(n_flows, n_flows + n))
            d2 = agg.score(S, scorer.score_names)
            alert = d2 > threshold
            n_unscorable += int((~np.isfinite(d2)).sum())
            out = frame[["src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_ts", "last_ts",
                         "n_packets"]].reset_index(drop=True)
            out.insert(0, "flow_index", np.arange(n_flows, n_flows + n))
            for j, name in enumerate(JANUS_SCORE_NAMES):
                out[name] = S[:, j]
            out["deployable_score"] = d2
            out["alert"] = alert
            out[list(CSV_COLUMNS)].to_csv(fh, index=False, header=first)
            first = False
            n_flows += n
            n_alerts += int(alert.sum())
        if first:  # no flow at all: still a valid (empty) CSV
            pd.DataFrame(columns=list(CSV_COLUMNS)).to_csv(fh, index=False)
        fh.close()
    except BaseException:
        fh.close()
        tmp.unlink(missing_ok=True)  # never leave a partial CSV behind
        raise
    tmp.replace(out_csv)
    if n_flows == 0:
        log.warning("%s: no flows could be assembled from the capture; the CSV is empty", capture)
    if n_unscorable:
        log.warning("%s: %d flows had non-finite scores; they are alerted (score +inf)", capture, n_unscorable)
    summary = {"capture": str(capture), "model": str(model_path), "variant": meta.get("variant"),
               "aggregator": art["aggregator"], "threshold": threshold, "fpr_target": art.get("fpr_target"),
               "flows": n_flows, "alerts": n_alerts, "alert_rate": n_alerts / n_flows if n_flows else None}
    log.info("new capture scored: %s", json.dumps(summary))
    return summary


def main(argv=None) -> int:
    import yaml

    from nidsflow.logs import setup_logging

    ap = argparse.ArgumentParser(prog="python -m nidsflow.evaluate.newcapture", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="trained JANUS model.pt")
    ap.add_argument("--aggregator", required=True, help="aggregator.json (rule fit_aggregator)")
    ap.add_argument("--capture", required=True, help="pcap or pcapng file to score")
    ap.add_argument("--out", required=True, help="per-flow CSV to write")
    ap.add_argument("--config", default="config/config.yaml", help="config with the extract: and janus: sections")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--log", default=None, help="also write the log to this file")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    cfg = yaml.safe_load(Path(a.config).read_text())
    s = score_capture(a.capture, a.model, a.aggregator, a.out, cfg["extract"], cfg["janus"], a.device)
    print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
