"""Extraction of one dataset: captures -> flows -> features -> labels -> flow store.

``extract_dataset(name, ds_cfg, extract_cfg, out_dir)`` reads each capture in bounded memory
(reader -> :class:`~nidsflow.capture.flows.FlowMeter`), writes each capture's packet channels to
temporary shards, joins the labels once all flows are known, then streams the temporary shards
into the store (dropping the flows of rows the driver drops) and writes ``flows.parquet``,
``flow_features.parquet`` and ``extract_report.json``. A capture that cannot be parsed is logged,
counted and listed in the report; the others still go through. All captures failing, or no benign
flow at all, is an :class:`ExtractError`.
"""

from __future__ import annotations

import glob
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from nidsflow.capture.drivers import Driver, get_driver
from nidsflow.capture.features import FEATURE_NAMES, canonical_feature_name, features_from_state
from nidsflow.capture.flows import FlowChunk, FlowConfig, FlowMeter, meter_capture
from nidsflow.capture.labels import (DROPPED, LabelError, join_labels, read_header, read_label_csv,
                                     resolve_columns)
from nidsflow.capture.pcap import CaptureError
from nidsflow.capture.store import BENIGN, UNMATCHED, StoreWriter

log = logging.getLogger(__name__)

REPORT = "extract_report.json"


class ExtractError(ValueError):
    """A dataset cannot be extracted (all captures failed, no benign flow, bad configuration)."""


def _expand(patterns) -> list[Path]:
    files: list[Path] = []
    for p in patterns:
        p = str(p)
        matches = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not matches:
            raise ExtractError(f"pattern {p!r} matches no file")
        files += [Path(m) for m in matches]
    return files


def capture_files(ds_cfg: dict) -> list[Path]:
    """The dataset's capture files (config globs expanded, in order)."""
    return _expand(ds_cfg.get("captures", []))


def label_files(ds_cfg: dict) -> list[Path]:
    labels = ds_cfg.get("labels", [])
    pats = list(labels) if not isinstance(labels, dict) else []
    if ds_cfg.get("label_files_glob"):
        pats.append(ds_cfg["label_files_glob"])
    return _expand(pats)


def _shard_sizes(n: int, shard_flows: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + shard_flows)) for i in range(0, n, shard_flows)] or []


def extract_dataset(name: str, ds_cfg: dict, extract_cfg: dict, out_dir: str | Path) -> dict:
    """Build the flow store of dataset ``name`` in ``out_dir``; returns (and writes) the report dict."""
    out_dir = Path(out_dir)
    driver = get_driver(ds_cfg.get("driver", name))
    t0 = time.time()
    if driver.kind == "flow_table":
        report = build_flow_table_store(name, ds_cfg, extract_cfg, out_dir, driver)
    else:
        report = _extract_captures(name, ds_cfg, extract_cfg, out_dir, driver)
    report["seconds"] = round(time.time() - t0, 3)
    (out_dir / REPORT).write_text(json.dumps(report, indent=1, default=str))
    return report


def _extract_captures(name, ds_cfg, extract_cfg, out_dir: Path, driver: Driver) -> dict:
    from tqdm import tqdm

    cfg = FlowConfig.from_extract_config(extract_cfg)
    shard_flows = int(extract_cfg.get("shard_flows", 200000))
    captures = capture_files(ds_cfg)
    if not captures:
        raise ExtractError(f"dataset {name}: no captures configured (datasets.{name}.captures)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "packets" / "_tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    frames, tmp_shards, failed, per_capture = [], [], [], []
    totals = {"packets": 0, "records": 0, "non_ip": 0, "truncated": 0, "malformed": 0,
              "skipped_nonfirst_fragments": 0}
    skipped_by_reason: dict[str, int] = {}
    total_bytes = sum(p.stat().st_size for p in captures if p.exists())
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"extract {name}", mininterval=5,
              disable=None) as bar:
        for ci, path in enumerate(captures):
            info: dict = {}
            n_cap = 0
            error = None
            try:
                for chunk in meter_capture(path, cfg, extract_cfg, info, bar):
                    # statistics now, channels spilled to disk: only the flows table stays in memory
                    f = tmp / f"tmp_{len(tmp_shards):06d}.npy"
                    np.save(f, chunk.channels)
                    np.save(f.with_suffix(".feat.npy"), features_from_state(chunk.state).to_numpy(np.float64))
                    tmp_shards.append((f, len(chunk), ci))
                    fr = chunk.frame()
                    fr["source_file"] = str(path)
                    frames.append(fr)
                    n_cap += len(chunk)
            except CaptureError as exc:
                error = str(exc)
                log.error("capture %s failed: %s (%d flows kept from the part read)", path, exc, n_cap)
            rs, ms = info.get("reader", {}), info.get("meter")
            if error is not None:
                failed.append({"file": str(path), "error": error})
            for k in ("records", "non_ip", "truncated", "malformed"):
                totals[k] += int(rs.get(k, 0))
            if ms is not None:
                totals["packets"] += ms.packets
                totals["skipped_nonfirst_fragments"] += ms.skipped_nonfirst_fragments
            for k, v in rs.get("skipped_by_reason", {}).items():
                skipped_by_reason[k] = skipped_by_reason.get(k, 0) + int(v)
            per_capture.append({"file": str(path), "flows": n_cap, "error": error,
                                "packets": ms.packets if ms else 0, "reader": rs,
                                "ended_by": dict(ms.ended_by) if ms else {},
                                "max_alive_flows": ms.max_alive_flows if ms else 0})
            log.info("%s: %d packets -> %d flows%s", path, ms.packets if ms else 0, n_cap,
                     f" (FAILED: {error})" if error else "")
    if len(failed) == len(captures):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExtractError(f"dataset {name}: every capture failed: " + "; ".join(f"{f['file']}: {f['error']}"
                                                                              for f in failed))
    if skipped_by_reason:
        log.warning("dataset %s: skipped records by reason: %s", name, skipped_by_reason)
    if totals["skipped_nonfirst_fragments"]:
        log.warning("dataset %s: %d non-first IP fragments of TCP/UDP/SCTP skipped (no ports)", name,
                    totals["skipped_nonfirst_fragments"])
    if not frames:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExtractError(f"dataset {name}: the captures hold no IP flow at all ({totals})")
    flows = pd.concat(frames, ignore_index=True)
    label_report = _label(name, ds_cfg, extract_cfg, driver, flows)
    keep = flows["label"].to_numpy() != DROPPED
    n_dropped = int((~keep).sum())
    if n_dropped:
        log.info("dataset %s: %d flows dropped (they match label rows the driver drops)", name, n_dropped)
    n_packets = flows["n_packets"].to_numpy()
    flows = flows[keep].drop(columns=["end_reason"]).reset_index(drop=True) if n_dropped else \
        flows.drop(columns=["end_reason"])
    flows.insert(0, "flow_id", np.arange(len(flows), dtype=np.int64))
    _check_benign(name, flows)
    writer = StoreWriter(out_dir, cfg.T)
    _assemble_shards(writer, tmp_shards, keep, n_packets, shard_flows)
    writer.finish_parts(flows, _feature_parts(tmp_shards, keep), has_packets=True)
    shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "dataset": name, "driver": driver.name, "captures": len(captures), "failed_captures": failed,
        **totals, "skipped_by_reason": skipped_by_reason,
        "flows": int(len(flows)), "dropped_flows": n_dropped, **label_report,
        "flow_config": cfg.__dict__, "per_capture": per_capture,
    }
    log.info("dataset %s: %d flows written to %s", name, len(flows), out_dir)
    return report


def _feature_parts(pieces, keep: np.ndarray):
    """The spilled per-chunk feature blocks, rows not kept left out, in flow order."""
    offset = 0
    for f, n, _ in pieces:
        ff = f.with_suffix(".feat.npy")
        block = np.load(ff)[keep[offset:offset + n]]
        ff.unlink()
        offset += n
        yield pd.DataFrame(block, columns=list(FEATURE_NAMES))


def _assemble_shards(writer: StoreWriter, pieces, keep: np.ndarray, n_packets: np.ndarray, shard_flows: int) -> None:
    """Temporary per-chunk channel files -> store shards of at most shard_flows flows, never spanning
    two captures; flows not kept are left out. Holds at most one shard in memory."""
    buf, lens, held, offset, current = [], [], 0, 0, None

    def emit():
        nonlocal buf, lens, held
        if held:
            x, n = np.concatenate(buf), np.concatenate(lens)
            for lo in range(0, len(x), shard_flows):
                writer.add_shard(x[lo:lo + shard_flows], n[lo:lo + shard_flows])
        buf, lens, held = [], [], 0

    for f, n, capture in pieces:
        if capture != current:
            emit()
            current = capture
        k = keep[offset:offset + n]
        if k.any():
            buf.append(np.load(f)[k])
            lens.append(n_packets[offset:offset + n][k].astype(np.int32))
            held += int(k.sum())
        f.unlink()
        offset += n
        while held >= shard_flows:
            x, ln = np.concatenate(buf), np.concatenate(lens)
            writer.add_shard(x[:shard_flows], ln[:shard_flows])
            buf, lens, held = [x[shard_flows:]], [ln[shard_flows:]], len(x) - shard_flows
    emit()


def _check_benign(name: str, flows: pd.DataFrame) -> None:
    if not (flows["label"] == BENIGN).any():
        counts = flows["label"].value_counts().to_dict()
        raise ExtractError(f"dataset {name}: no benign flow after labelling (labels: {counts}); the models "
                           "are trained on benign traffic only: check the label files, the benign "
                           "aliases of the driver and time_offset_s")


def _finish_labels(flows: pd.DataFrame, driver: Driver) -> None:
    labels = flows["label"].astype(str)
    flows["label"] = labels
    cls = {lab: ("unmatched" if lab == UNMATCHED else "dropped" if lab == DROPPED else driver.attack_class(lab))
           for lab in labels.unique()}
    flows["attack_class"] = labels.map(cls)
    flows["is_attack"] = ~labels.isin([BENIGN, UNMATCHED, DROPPED])


def _label(name, ds_cfg, extract_cfg, driver: Driver, flows: pd.DataFrame) -> dict:
    if driver.kind == "per_file" or isinstance(ds_cfg.get("labels"), dict):
        mapping = ds_cfg.get("labels")
        if not isinstance(mapping, dict):
            raise ExtractError(f"dataset {name}: driver {driver.name} needs labels as a mapping capture file -> label")
        table = {}
        for pattern, lab in mapping.items():
            for p in _expand([pattern]):
                table[str(p)] = str(lab)
        labs = flows["source_file"].map(table)
        missing = sorted(set(flows.loc[labs.isna(), "source_file"]))
        if missing:
            raise ExtractError(f"dataset {name}: captures without a label in datasets.{name}.labels: {missing}")
        labs = labs.where(~labs.isin(driver.benign_labels), BENIGN)
        flows["label"] = labs.to_numpy()
        _finish_labels(flows, driver)
        per = flows["label"].value_counts().to_dict()
        for k, v in sorted(per.items()):
            log.info("dataset %s: label %s: %d flows (per-file labels)", name, k, v)
        return {"label_mode": "per_file", "matched_per_label": {str(k): int(v) for k, v in per.items()},
                "unmatched_flows": 0, "unmatched_rows": 0}
    files = label_files(ds_cfg)
    if not files:
        raise ExtractError(f"dataset {name}: no label files configured (datasets.{name}.labels)")
    rows, read_stats = [], {}
    for f in files:
        r, st = read_label_csv(f, driver)
        rows.append(r)
        read_stats[str(f)] = st.__dict__
    rows = pd.concat(rows, ignore_index=True)
    res = join_labels(flows, rows, driver, float(extract_cfg.get("label_tolerance_s", 2.0)),
                      ds_cfg.get("time_offset_s", extract_cfg.get("time_offset_s", "auto")),
                      seed=int(extract_cfg.get("seed", 0)), source=f"dataset {name}")
    flows["label"] = res.label
    _finish_labels(flows, driver)
    return {"label_mode": "csv_join", "time_offset_s": res.offset_s, "offset_measurement": res.measured,
            "matched_per_label": res.matched_per_label, "unmatched_flows": res.unmatched_flows,
            "label_rows": res.rows, "unmatched_rows": res.unmatched_rows, "label_files": read_stats}


# ------------------------------------------------------------------------------------- flow table


def build_flow_table_store(name, ds_cfg, extract_cfg, out_dir: Path, driver: Driver) -> dict:
    """A store from CIC-format flow CSVs alone: flows + flow_features (the CSV's own features), no packets."""
    files = label_files(ds_cfg)
    if not files:
        raise ExtractError(f"dataset {name}: no flow-table CSVs configured (datasets.{name}.labels)")
    flows_parts, feat_parts, per_file = [], [], {}
    offset = ds_cfg.get("time_offset_s", 0)
    offset = 0.0 if isinstance(offset, str) else float(offset)
    for f in files:
        rows, st = read_label_csv(f, driver)
        header = read_header(f)
        cols = resolve_columns(f, header, driver.columns)
        wanted = {h: canonical_feature_name(h) for h in header if canonical_feature_name(h) in FEATURE_NAMES}
        raw = pd.read_csv(f, usecols=list(wanted) + [cols["timestamp"], cols["label"]], encoding="utf-8-sig",
                          encoding_errors="replace", low_memory=False)
        feats = raw[list(wanted)].rename(columns=wanted)
        feats = feats.loc[:, ~feats.columns.duplicated()].apply(pd.to_numeric, errors="coerce")
        feats = feats.iloc[rows["row"].to_numpy()].reset_index(drop=True)  # rows read_label_csv kept
        finite = np.isfinite(feats.to_numpy(dtype=np.float64)).all(axis=1)
        n_bad = int((~finite).sum())
        if n_bad:
            log.warning("%s: %d rows with NaN/Inf features dropped (of %d)", f, n_bad, len(feats))
        keep = finite & (rows["label"].to_numpy() != DROPPED)
        rows, feats = rows[keep].reset_index(drop=True), feats[keep].reset_index(drop=True)
        first = rows["csv_ts"].to_numpy() - offset
        dur = feats["Flow Duration"].to_numpy() / 1e6 if "Flow Duration" in feats else np.zeros(len(rows))
        npk = np.zeros(len(rows), np.int64)
        for c in ("Total Fwd Packets", "Total Backward Packets"):
            if c in feats:
                npk += feats[c].to_numpy().astype(np.int64)
        flows_parts.append(pd.DataFrame({
            "src_ip": rows["src_ip"], "src_port": rows["src_port"], "dst_ip": rows["dst_ip"],
            "dst_port": rows["dst_port"], "protocol": rows["protocol"], "first_ts": first,
            "last_ts": first + dur, "n_packets": npk, "label": rows["label"], "source_file": str(f)}))
        feat_parts.append(feats)
        per_file[str(f)] = {**st.__dict__, "dropped_nan_inf_features": n_bad, "flows": len(rows)}
    flows = pd.concat(flows_parts, ignore_index=True)
    feats = pd.concat(feat_parts, ignore_index=True)
    missing = [c for c in FEATURE_NAMES if c not in feats.columns]
    if missing:
        log.warning("dataset %s: the CSVs lack %d of the %d features: %s", name, len(missing),
                    len(FEATURE_NAMES), missing)
    feats = feats[[c for c in FEATURE_NAMES if c in feats.columns]]
    flows["label"] = np.where(flows["label"].isin(driver.benign_labels), BENIGN, flows["label"])
    _finish_labels(flows, driver)
    flows.insert(0, "flow_id", np.arange(len(flows)))
    _check_benign(name, flows)
    writer = StoreWriter(out_dir, int(extract_cfg.get("T", 16)))
    writer.finish(flows, feats, has_packets=False)
    per = flows["label"].value_counts().to_dict()
    for k, v in sorted(per.items()):
        log.info("dataset %s: label %s: %d flows (flow table)", name, k, v)
    return {"dataset": name, "driver": driver.name, "label_mode": "flow_table", "has_packets": False,
            "flows": int(len(flows)), "packets": 0, "matched_per_label": {str(k): int(v) for k, v in per.items()},
            "unmatched_flows": 0, "missing_features": missing, "label_files": per_file,
            "dropped_flows": int(sum(v["dropped_nan_inf_features"] + v["dropped_by_label"] for v in per_file.values()))}


__all__ = ["extract_dataset", "build_flow_table_store", "capture_files", "label_files", "ExtractError",
           "LabelError"]
