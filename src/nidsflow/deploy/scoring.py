"""Score flows of captures never seen before with a deployed model: the core of score-capture and watch.

Given a trained JANUS model (``model.pt``), its fitted deployable aggregator and alert threshold
(``aggregator.json``, written by rule ``fit_aggregator`` from the model's benign val scores) and the
flow meter / scoring settings (``deploy.yaml`` or a workflow config; see :mod:`.model_dir`), a
:class:`Detector` takes finished flows of the extraction library's flow meter, computes the same flow
statistics, normalises them with the model's own normaliser (benign train statistics of the training
dataset), computes the 10 JANUS scores, the deployable score d^2, the alert flag (d^2 > threshold,
the threshold chosen on benign val for ``evaluate.fpr_target``) and the explanation of d^2
(:mod:`.explain`). No labels are involved.

:func:`score_capture` writes one CSV row per flow of one capture (``nidsflow score-capture``); the
capture is read in streaming fashion, flows scored chunk by chunk as the flow meter finishes them.

Command line::

    nidsflow score-capture --model-dir results/demo_a/janus/full/seed42 --capture new.pcap --out new.csv
    nidsflow score-capture --model .../model.pt --aggregator .../aggregator.json --config config/config.yaml \\
        --capture new.pcap --out new.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.capture.pcap import CaptureError
from nidsflow.deploy.explain import ExplainingScorer, axis_contributions, top_cells
from nidsflow.deploy.model_dir import ModelDir, add_model_arguments, model_from_args
from nidsflow.scores import JANUS_SCORE_NAMES

log = logging.getLogger(__name__)

#: How many (packet, channel) cells of the DFM explanation are reported per flow.
TOP_POSITIONS = 3
FLOW_COLUMNS: tuple[str, ...] = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_ts", "last_ts",
                                 "n_packets")
CONTRIB_COLUMNS: tuple[str, ...] = tuple(f"contrib_{n}" for n in JANUS_SCORE_NAMES)
TOP_COLUMNS: tuple[str, ...] = tuple(f"dfm_top{j}_{f}" for j in range(1, TOP_POSITIONS + 1)
                                     for f in ("packet", "channel", "nll", "contribution"))
#: Columns of the per-flow CSV, in order.
CSV_COLUMNS: tuple[str, ...] = (
    "flow_index", *FLOW_COLUMNS, *JANUS_SCORE_NAMES, "deployable_score", "alert", *CONTRIB_COLUMNS, *TOP_COLUMNS,
)


class NewCaptureError(ValueError):
    """The capture, model or aggregator cannot be used together."""


def _deploy_errors() -> tuple[type, ...]:
    from nidsflow.deploy.model_dir import ModelDirError
    from nidsflow.evaluate.aggregators import AggregatorError
    from nidsflow.janus.train import ModelFileError

    return NewCaptureError, ModelDirError, AggregatorError, ModelFileError


#: What a bad model directory, model file, aggregator or capture raises: each message names the file.
DEPLOY_ERRORS: tuple[type, ...] = _deploy_errors()


def iter_capture_flows(capture: str | Path, extract_cfg: dict):
    """Yield (frame, features, channels, lengths) per chunk of finished flows of one capture, without labels.

    frame: 5-tuple, times and packet count (forward = first packet's sender); features: the
    CICFlowMeter-style statistics (``capture.features.FEATURE_NAMES``); channels [n, T, 9] and the
    true lengths. Uses the extraction library's reader, flow meter and feature code directly.
    """
    from nidsflow.capture.flows import FlowConfig, meter_capture

    capture = Path(capture)
    if not capture.exists():
        raise NewCaptureError(f"{capture}: capture file not found")
    stats: dict = {}
    for chunk in meter_capture(capture, FlowConfig.from_extract_config(extract_cfg), extract_cfg, stats):
        if len(chunk):
            yield chunk.frame(), chunk_features(chunk), chunk.channels, chunk.lengths
    log.info("%s: reader %s; flow meter %s", capture, stats.get("reader"), stats.get("meter"))


def chunk_features(chunk) -> pd.DataFrame:
    """The flow statistics of a :class:`capture.flows.FlowChunk`, with its host-level context columns
    (``first_*`` / ``last_*``, as context_features.parquet) appended when the meter computed them; a model's
    normaliser reads the columns it was trained on."""
    from nidsflow.capture.context import context_frame
    from nidsflow.capture.features import features_from_state

    feats = features_from_state(chunk.state)
    if chunk.context is None:
        return feats
    return pd.concat([feats.reset_index(drop=True), context_frame(chunk.context)], axis=1)


def unmodelled_scores(model) -> set[str]:
    """Score columns a JANUS model leaves NaN (janus.score: no CFM head: terminal_*; no DFM head: disc_nll_*;
    no FLOW token: terminal_flow; no packet sequence: terminal_packet)."""
    cfg = model.cfg
    out = set()
    if not cfg.cont_head:
        out |= {n for n in JANUS_SCORE_NAMES if n.startswith("terminal_")}
    if not cfg.disc_head:
        out |= {n for n in JANUS_SCORE_NAMES if n.startswith("disc_nll_")}
    if not model.models_flow:
        out.add("terminal_flow")
    if not cfg.use_packets:
        out.add("terminal_packet")
    return out


def _check_columns(scorer, columns, model_path, aggregator_path) -> None:
    """Every score column of the aggregator must be one the model computes (else d^2 is +inf for every flow)."""
    from nidsflow.deploy.model_dir import ModelDirError

    bad = [c for c in columns if c not in scorer.score_names or c in unmodelled_scores(scorer.model)]
    if bad:
        raise ModelDirError(f"{aggregator_path}: uses score columns {bad} that the model {model_path} does not "
                            "compute (an aggregator fitted for another variant); use the model directory's own")


class Detector:
    """A deployed model: finished flows in, scores + d^2 + alert flag + explanation out."""

    def __init__(self, model: str | Path, aggregator: str | Path, extract_cfg: dict, janus_cfg: dict,
                 device: str | None = None, settings_model: dict | None = None, settings_source: str | None = None):
        """``settings_model``: the model fingerprint recorded with the settings (deploy.yaml), checked like the
        aggregator's (:mod:`.model_dir`, "Checks before scoring")."""
        from nidsflow.deploy.model_dir import check_fingerprint, load_aggregator, model_fingerprint
        from nidsflow.janus.score import scorer_for

        self.agg, self.threshold, self.artifact = load_aggregator(aggregator)
        scorer, self.norm, self.meta = scorer_for(model, janus_cfg, device, progress=False)
        self.fingerprint = model_fingerprint(self.meta)
        check_fingerprint(self.fingerprint, self.artifact.get("model"), model, aggregator)
        if settings_model is not None:
            check_fingerprint(self.fingerprint, settings_model, model, settings_source)
        _check_columns(scorer, self.agg.columns, model, aggregator)
        self.scorer = ExplainingScorer.from_scorer(scorer)
        self.extract_cfg, self.janus_cfg = dict(extract_cfg), dict(janus_cfg)
        # the host-level context is computed when the model reads it (the context variant), and only then
        self.extract_cfg.pop("context", None)
        if self.norm.reads_context:
            self.extract_cfg["context"] = True
        self.model_path, self.aggregator_path = str(model), str(aggregator)
        cfg = self.scorer.model.cfg
        if cfg.use_packets and int(extract_cfg.get("T", self.norm.T)) < self.norm.T:
            log.warning("extract.T=%s is below the model's T=%s: later packets are zero padded",
                        extract_cfg.get("T"), self.norm.T)

    @classmethod
    def from_model_dir(cls, md: ModelDir, device: str | None = None) -> "Detector":
        return cls(md.model, md.aggregator, md.extract, md.janus, device, md.settings_model, md.settings_source)

    def score(self, frame: pd.DataFrame, features: pd.DataFrame, channels: np.ndarray, lengths: np.ndarray,
              source: str = "capture", explain: bool | str = True,
              flow_ids: np.ndarray | None = None) -> pd.DataFrame:
        """One row per flow: ``frame``'s columns, the 10 scores, ``deployable_score``, ``alert``, the axis
        contributions (``contrib_*``) and ``dfm_top`` (list of dicts, see :func:`.explain.top_positions`) for
        every flow (``explain=True``), none (False) or the alerted ones only (``"alerts"``; None elsewhere).
        ``flow_ids`` seed each flow's fixed corruption draws; by default the flow's own key
        (:func:`janus.data.flow_keys` of its 5-tuple and first time), so a flow's score depends neither on
        the flows scored with it nor on its position in the capture or stream (issue 26 item 8)."""
        if len(frame) == 0:
            return self.finish(frame, None, None, None, explain, source)
        if flow_ids is None:
            from nidsflow.janus.data import flow_keys
            flow_ids = flow_keys(frame)
        data = self.normalise(features, channels, lengths, len(frame), source)
        S = self.scorer.score(data, desc=f"scoring {source}", flow_ids=flow_ids, raw=(features, channels, lengths))
        return self.finish(frame, S, self.scorer.pos_nll_sum, self.scorer.pos_count, explain, source)

    def normalise(self, features: pd.DataFrame, channels: np.ndarray, lengths: np.ndarray, n: int,
                  source: str = "capture"):
        """The model's input (:class:`janus.data.JanusBatch`) of ``n`` flows, with the model's own normaliser."""
        cfg = self.scorer.model.cfg
        return self.norm.transform(features if cfg.flow_token else None, channels if cfg.use_packets else None,
                                   lengths if cfg.use_packets else None, n, source=source)

    def finish(self, frame: pd.DataFrame, S: np.ndarray | None, pos_nll_sum: np.ndarray | None,
               pos_count: np.ndarray | None, explain: bool | str = True, source: str = "capture") -> pd.DataFrame:
        """:meth:`score`'s table from the scorer's output: ``S`` [n, k] in ``scorer.score_names`` order and the
        DFM cells recorded with it (``ExplainingScorer.pos_nll_sum`` / ``pos_count``; from this process's
        scorer or from a worker of :mod:`.parallel`)."""
        n = len(frame)
        out = frame.reset_index(drop=True).copy()
        if n == 0:
            for c in (*JANUS_SCORE_NAMES, "deployable_score", "alert", *CONTRIB_COLUMNS, "dfm_top"):
                out[c] = pd.Series(dtype=object if c == "dfm_top" else float)
            return out
        names = self.scorer.score_names  # the 10-d vector, then enabled score options (cnf_nll)
        # a length-aware aggregator (A1L) compares each flow with benign val flows of its own packet count
        n_packets = frame["n_packets"].to_numpy() if self.agg.needs_lengths else None
        d2 = self.agg.score(S, names, n_packets)
        for j, name in enumerate(JANUS_SCORE_NAMES):
            out[name] = S[:, j]
        out["deployable_score"] = d2
        out["alert"] = d2 > self.threshold
        C = axis_contributions(self.agg, S, names, n_packets)[:, :len(JANUS_SCORE_NAMES)]
        for j, name in enumerate(CONTRIB_COLUMNS):
            out[name] = C[:, j]
        want = out["alert"].to_numpy() if isinstance(explain, str) and explain == "alerts" else \
            np.full(n, bool(explain))
        rows = np.nonzero(want)[0]
        top: list = [None] * n
        cells = top_cells(pos_nll_sum, pos_count, rows, TOP_POSITIONS) \
            if self.scorer.model.cfg.disc_head and pos_count is not None else [[] for _ in rows]
        for r, t in zip(rows, cells):
            top[r] = t
        out["dfm_top"] = top
        n_bad = int((~np.isfinite(d2)).sum())
        if n_bad:
            log.warning("%s: %d flows had non-finite scores; they are alerted (score +inf)", source, n_bad)
        return out


def flatten_top(top: pd.Series) -> pd.DataFrame:
    """``dfm_top`` lists -> the TOP_COLUMNS (empty cells where a flow has fewer cells or no DFM head)."""
    rows = []
    for t in top:
        row: dict = {}
        for j, cell in enumerate((t or [])[:TOP_POSITIONS], start=1):
            for f in ("packet", "channel", "nll", "contribution"):
                row[f"dfm_top{j}_{f}"] = cell[f]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TOP_COLUMNS), index=top.index)


def score_capture(capture: str | Path, model_path: str | Path, aggregator_path: str | Path, out_csv: str | Path,
                  extract_cfg: dict, janus_cfg: dict, device: str | None = None, settings_model: dict | None = None,
                  settings_source: str | None = None) -> dict:
    """Write the per-flow CSV (``CSV_COLUMNS``) of ``capture``; returns a summary (flows, alerts, threshold).
    ``settings_model``: see :class:`Detector`."""
    out_csv = Path(out_csv)
    if out_csv.resolve() == Path(capture).resolve():  # resolve(): also through links and ../
        raise NewCaptureError(f"{out_csv}: the output CSV would replace the capture {capture}; give another --out")
    det = Detector(model_path, aggregator_path, extract_cfg, janus_cfg, device, settings_model, settings_source)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    n_flows, n_alerts, first, error = 0, 0, True, None
    fh = open(tmp, "w")
    try:
        try:
            for frame, feats, channels, lengths in iter_capture_flows(capture, extract_cfg):
                n = len(frame)
                out = det.score(frame[list(FLOW_COLUMNS)], feats, channels, lengths, source=str(capture))
                out.insert(0, "flow_index", np.arange(n_flows, n_flows + n))
                out = pd.concat([out.drop(columns="dfm_top"), flatten_top(out["dfm_top"])], axis=1)
                out[list(CSV_COLUMNS)].to_csv(fh, index=False, header=first)
                first = False
                n_flows += n
                n_alerts += int(out["alert"].sum())
        except CaptureError as e:  # a corrupt record: the flows before it are scored and kept, as extraction does
            error = str(e)
            log.error("%s (the %d flows before it are scored and written)", error, n_flows)
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
    summary = {"capture": str(capture), "model": str(model_path), "variant": det.meta.get("variant"),
               "aggregator": det.artifact["aggregator"], "threshold": det.threshold,
               "fpr_target": det.artifact.get("fpr_target"),
               "flows": n_flows, "alerts": n_alerts, "alert_rate": n_alerts / n_flows if n_flows else None,
               "status": "error" if error else "ok", "error": error}
    log.info("new capture scored: %s", json.dumps(summary))
    return summary


def main(argv=None) -> int:
    from nidsflow.logs import setup_logging

    ap = argparse.ArgumentParser(prog="nidsflow score-capture", description=__doc__.split("\n\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--capture", required=True, help="pcap or pcapng file to score")
    ap.add_argument("--out", required=True, help="per-flow CSV to write")
    ap.add_argument("--log", default=None, help="also write the log to this file")
    a = ap.parse_args(argv)
    md = model_from_args(ap, a)
    if not Path(a.capture).is_file():
        ap.error(f"--capture {a.capture}: file not found")
    if Path(a.out).resolve() == Path(a.capture).resolve():
        ap.error(f"--out {a.out} is the capture itself (it would be replaced by the CSV); give another --out")
    setup_logging(a.log)
    try:
        s = score_capture(a.capture, md.model, md.aggregator, a.out, md.extract, md.janus, a.device,
                          md.settings_model, md.settings_source)
    except DEPLOY_ERRORS as e:  # each names its file: a message, not a traceback
        print(f"nidsflow score-capture: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(s, indent=1))
    if s["error"]:
        print(f"nidsflow score-capture: error: {s['error']} (the {s['flows']} flows read before it are in {a.out})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

