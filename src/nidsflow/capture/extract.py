"""Extraction of one dataset: captures -> flows -> features -> labels -> flow store, in parts.

A dataset's captures are planned into **parts** (:func:`plan_parts`, a deterministic function of the
config: contiguous runs of captures in config order, one capture per part or several small ones up to
``extract.part_target_bytes``, never two days of a CSV-labelled dataset in one part). Each part is
extracted on its own (:func:`extract_part`, one Snakemake job each: rule ``extract_part``) into a part
directory: ``flows.parquet`` and ``flow_features.parquet`` (flow_id counted within the part), packet shards and
``part.json``. Per-file labels are applied chunk by chunk, so a part streams: its memory is one
reader batch, the live flows of the meter and one shard, whatever the number of flows. A CSV-labelled
part joins its flows with the CSVs of its own day (the driver's day -> pcap map) and holds the flows
table of its own captures for that join (not the dataset's). :func:`gather_store` (rule ``extract``)
then links their shards in order and writes the store with ``flow_id = arange(N)``, the same tables as one
job over every capture would write: a dataset of one part is linked as it is (its flow_ids are already the
store's), several parts are concatenated row group by row group with their flow_ids offset.

A capture that cannot be parsed is logged, counted and listed in the report; the others still go
through. All captures failing, or no benign flow at all, is an :class:`ExtractError`.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.capture.drivers import Driver, get_driver
from nidsflow.capture.features import FEATURE_NAMES, canonical_feature_name, features_from_state
from nidsflow.capture.context import LAMBDAS as CONTEXT_LAMBDAS, context_columns, context_frame
from nidsflow.capture.flows import FlowChunk, FlowConfig, meter_capture
from nidsflow.capture.labels import (DROPPED, LabelError, join_labels, read_header, read_label_csv,
                                     read_label_manifest, resolve_columns)
from nidsflow.capture.pcap import CaptureError
from nidsflow.store import BENIGN, CONTEXT_FILE, STORE_PARQUET, UNMATCHED, StoreWriter, write_parquet_tables

log = logging.getLogger(__name__)

REPORT = "extract_report.json"
PART_REPORT = "part.json"
#: Default size of a part: small captures are grouped up to this many bytes per job.
DEFAULT_PART_TARGET_BYTES = 1 << 30
#: Rows buffered before a row group is written to a part's parquet files (32 768: peak 379 MiB at 5 M packets
#: against 417 with 65 536, at the same speed; docs/benchmarks.md).
ROW_GROUP_FLOWS = 32768
#: Flows per chunk handed to the part writer at least (fewer at a capture's end): see _coalesced.
COALESCE_FLOWS = 8192


class ExtractError(ValueError):
    """A dataset cannot be extracted (all captures failed, no benign flow, bad configuration)."""


def _expand(patterns, strict: bool = True) -> list[Path]:
    files: list[Path] = []
    for p in patterns:
        p = str(p)
        matches = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not matches:
            if strict:
                raise ExtractError(f"pattern {p!r} matches no file")
            matches = [p]
        files += [Path(m) for m in matches]
    return files


def capture_files(ds_cfg: dict, strict: bool = True) -> list[Path]:
    """The dataset's capture files (config globs expanded, in order)."""
    return _expand(ds_cfg.get("captures", []), strict)


def manifest_files(ds_cfg: dict) -> list[str]:
    """The dataset's label manifests (``manifest:``, one path or a list; per-file labels file -> category)."""
    m = ds_cfg.get("manifest") or []
    return [str(m)] if isinstance(m, (str, os.PathLike)) else [str(x) for x in m]


def label_files(ds_cfg: dict, strict: bool = True) -> list[Path]:
    labels = ds_cfg.get("labels", [])
    pats = list(labels) if not isinstance(labels, dict) else []
    if ds_cfg.get("label_files_glob"):
        pats.append(ds_cfg["label_files_glob"])
    return _expand(pats, strict)


# ------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ExtractPart:
    """One extraction job: a contiguous run of the dataset's captures (and the label CSVs it joins, or the
    label manifests of a per-file dataset)."""

    name: str
    captures: tuple[str, ...]
    labels: tuple[str, ...] = ()
    day: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "captures": list(self.captures), "labels": list(self.labels), "day": self.day}

    @classmethod
    def from_dict(cls, d: dict) -> "ExtractPart":
        return cls(str(d["name"]), tuple(map(str, d.get("captures", ()))), tuple(map(str, d.get("labels", ()))),
                   d.get("day"))


def _day_of_capture(driver: Driver, path: str) -> str | None:
    base = os.path.basename(path).lower()
    for day, patterns in driver.day_pcaps.items():
        if any(fnmatch.fnmatchcase(base, str(p).lower()) for p in patterns):
            return str(day)
    return None


def _day_of_label_file(driver: Driver, path: str) -> str | None:
    text = str(path).lower()
    hits = [str(day) for day in driver.day_pcaps if str(day).lower() in text]
    return hits[0] if len(hits) == 1 else None


def _size(path: str, target: int) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # not there yet (a generated demo capture): a part of its own
        return target


def plan_parts(name: str, ds_cfg: dict, extract_cfg: dict, strict: bool = True) -> list[ExtractPart]:
    """The dataset's extraction jobs, a deterministic function of the config (and the captures' sizes).

    Captures keep their config order; a part is a contiguous run of them, closed when the next capture
    would bring it above ``extract.part_target_bytes`` (a larger capture is a part alone) or belongs to
    another day. For a CSV-labelled driver with a day -> pcap map, a capture of day D joins the label
    files whose path names D (e.g. ``Monday`` in CIC-IDS2017's CSV names, ``01-12`` in CIC-DDoS2019's
    folders); a capture of no known day, or of a day no label file names, joins every label file (as one
    job over the whole dataset would). A flow-table dataset is one part over its CSVs. ``strict=False``
    (the workflow, before generated inputs exist) keeps a pattern that matches nothing as it is.
    """
    driver = get_driver(ds_cfg.get("driver", name))
    target = int(extract_cfg.get("part_target_bytes", DEFAULT_PART_TARGET_BYTES))
    if target < 1:
        raise ExtractError(f"extract.part_target_bytes must be >= 1, got {target}")
    if driver.kind == "flow_table":
        return [ExtractPart("p0000", (), tuple(map(str, label_files(ds_cfg, strict))))]
    captures = [str(p) for p in capture_files(ds_cfg, strict)]
    if not captures:
        raise ExtractError(f"dataset {name}: no captures configured (datasets.{name}.captures)")
    csv_mode = driver.kind == "csv" and not isinstance(ds_cfg.get("labels"), dict) and not ds_cfg.get("manifest")
    # per-file labels: the manifests are every part's label inputs (a changed manifest re-extracts)
    all_labels = tuple(map(str, label_files(ds_cfg, strict))) if csv_mode else tuple(manifest_files(ds_cfg))
    by_day: dict[str, list[str]] = {}
    if csv_mode:
        for f in all_labels:
            day = _day_of_label_file(driver, f)
            if day is not None:
                by_day.setdefault(day, []).append(f)
    groups: list[tuple[str | None, list[str]]] = []
    held = 0
    for c in captures:
        day = _day_of_capture(driver, c) if csv_mode else None
        if csv_mode and day not in by_day:
            day = None
        size = _size(c, target)
        if not groups or groups[-1][0] != day or held + size > target:
            groups.append((day, []))
            held = 0
        groups[-1][1].append(c)
        held += size
    width = max(4, len(str(len(groups) - 1)))
    return [ExtractPart(f"p{i:0{width}d}", tuple(cs), tuple(by_day[day]) if day is not None else all_labels, day)
            for i, (day, cs) in enumerate(groups)]


# ------------------------------------------------------------------------------------- whole dataset


def extract_dataset(name: str, ds_cfg: dict, extract_cfg: dict, out_dir: str | Path) -> dict:
    """Build the flow store of dataset ``name`` in ``out_dir``: every part in turn, then the gather (the
    same code the workflow runs as one job per part); returns (and writes) the report dict."""
    out_dir = Path(out_dir)
    t0 = time.time()
    parts_root = out_dir / "_parts"
    if parts_root.exists():
        shutil.rmtree(parts_root)
    part_dirs = []
    for part in plan_parts(name, ds_cfg, extract_cfg):
        d = parts_root / part.name
        extract_part(name, ds_cfg, extract_cfg, part, d)
        part_dirs.append(d)
    try:
        report = gather_store(name, ds_cfg, extract_cfg, part_dirs, out_dir, started=t0)
    finally:
        shutil.rmtree(parts_root, ignore_errors=True)
    return report


# ------------------------------------------------------------------------------------- one part


class _PartWriter:
    """Streams labelled flow blocks of one part to its parquet files and packet shards.

    Shards hold at most ``shard_flows`` flows and never span two captures (as the store's shards); each
    block's packets go to the open shard file at once. Parquet row groups are written every
    ``ROW_GROUP_FLOWS`` rows, so memory is bounded by one row group, whatever the part's number of flows.
    """

    def __init__(self, out_dir: Path, T: int, shard_flows: int):
        import pyarrow.parquet as pq  # noqa: F401 (fail early)

        self.dir = Path(out_dir)
        (self.dir / "packets").mkdir(parents=True, exist_ok=True)
        self.T, self.shard_flows = T, shard_flows
        self.shards: list[dict] = []
        self.n = 0
        self.labels: dict[str, int] = {}
        self._writers: dict[str, object] = {}
        self._rows: dict[str, list[pd.DataFrame]] = {"flows": [], "flow_features": [], "context_features": []}
        self._held_rows = 0
        self._rows_written = 0
        self._shard_files: tuple[_NpyAppender, _NpyAppender] | None = None
        self._capture = None

    def add(self, frame: pd.DataFrame, features: pd.DataFrame, channels: np.ndarray, lengths: np.ndarray,
            capture: int, context: np.ndarray | None = None) -> None:
        if capture != self._capture:
            self._end_shard()
            self._capture = capture
        n = len(frame)
        if n == 0:
            return
        for lab, c in frame["label"].value_counts().items():
            self.labels[str(lab)] = self.labels.get(str(lab), 0) + int(c)
        self._rows["flows"].append(frame.reset_index(drop=True))
        self._rows["flow_features"].append(features.reset_index(drop=True))
        if context is not None:
            self._rows["context_features"].append(context_frame(context))
        self._held_rows += n
        if self._held_rows >= ROW_GROUP_FLOWS:
            self._write_rows()
        channels, lengths = np.asarray(channels, np.float32), np.asarray(lengths, np.int32)
        done = 0
        while done < n:
            if self._shard_files is None:
                k = len(self.shards)
                self._shard_files = (_NpyAppender(self.dir / "packets" / f"shard_{k:04d}.npy", channels.dtype,
                                                  channels.shape[1:]),
                                     _NpyAppender(self.dir / "packets" / f"shard_{k:04d}.len.npy", lengths.dtype, ()))
            ch, ln = self._shard_files
            take = min(n - done, self.shard_flows - ch.rows)
            ch.append(channels[done:done + take])
            ln.append(lengths[done:done + take])
            done += take
            if ch.rows == self.shard_flows:
                self._end_shard()
        self.n += n

    def _write_rows(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = 0
        for key, blocks in self._rows.items():
            if not blocks:
                continue
            table = pa.Table.from_pandas(pd.concat(blocks, ignore_index=True), preserve_index=False)
            n = len(table)
            table = table.replace_schema_metadata(None).add_column(0, "flow_id", pa.array(
                np.arange(self._rows_written, self._rows_written + n, dtype=np.int64)))
            if key not in self._writers:
                self._writers[key] = pq.ParquetWriter(self.dir / f"{key}.parquet", table.schema,
                                                      **STORE_PARQUET[f"{key}.parquet"])
            self._writers[key].write_table(table)
        self._rows = {"flows": [], "flow_features": [], "context_features": []}
        self._held_rows = 0
        self._rows_written += n

    def _end_shard(self) -> None:
        """Close the open shard (its header then holds its number of flows) and list it."""
        if self._shard_files is None:
            return
        ch, ln = self._shard_files
        ch.close()
        ln.close()
        self.shards.append({"file": ch.path.name, "lengths_file": ln.path.name, "n_flows": int(ch.rows)})
        self._shard_files = None

    def close(self) -> None:
        self._end_shard()
        self._write_rows()
        for w in self._writers.values():
            w.close()


class _NpyAppender:
    """A .npy file written row block by row block: the same bytes as ``np.save`` of the blocks' concatenation,
    without holding it. The header is written first for 0 rows and rewritten on close with the count; numpy
    pads a header so that the first axis can grow without changing its length."""

    def __init__(self, path: Path, dtype, row_shape: tuple):
        self.path, self.rows = Path(path), 0
        self._header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
        self._row_shape = tuple(row_shape)
        self._fh = open(self.path, "wb")
        np.lib.format.write_array_header_1_0(self._fh, {**self._header, "shape": (0,) + self._row_shape})
        self._data_at = self._fh.tell()

    def append(self, block: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(block).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self._fh.seek(0)
        np.lib.format.write_array_header_1_0(self._fh, {**self._header, "shape": (self.rows,) + self._row_shape})
        if self._fh.tell() != self._data_at:
            raise ExtractError(f"{self.path}: the .npy header changed length with the row count")
        self._fh.close()


def extract_part(name: str, ds_cfg: dict, extract_cfg: dict, part: ExtractPart | dict,
                 out_dir: str | Path) -> dict:
    """Extract one part of dataset ``name`` into ``out_dir`` (parquet parts, shards, ``part.json``)."""
    part = ExtractPart.from_dict(part) if isinstance(part, dict) else part
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    driver = get_driver(ds_cfg.get("driver", name))
    t0 = time.time()
    if driver.kind == "flow_table":
        report = _flow_table_part(name, ds_cfg, extract_cfg, part, out_dir, driver)
    else:
        report = _captures_part(name, ds_cfg, extract_cfg, part, out_dir, driver)
    report["part"] = part.as_dict()
    report["seconds"] = round(time.time() - t0, 3)
    (out_dir / PART_REPORT).write_text(json.dumps(report, indent=1, default=str))  # last: the part is done
    return report


def _per_file_table(name: str, ds_cfg: dict, driver: Driver, captures) -> dict[str, str]:
    """Normalised capture path -> label, from ``labels`` (mapping glob -> label) and ``manifest`` (TSVs file ->
    category); a file both give two different labels, or a capture neither covers, is an ExtractError."""
    mapping = ds_cfg.get("labels") or {}
    manifests = manifest_files(ds_cfg)
    if not isinstance(mapping, dict) or not (mapping or manifests):
        raise ExtractError(f"dataset {name}: driver {driver.name} needs labels as a mapping capture file -> label "
                           f"and/or a manifest (datasets.{name}.manifest)")
    table, origin = {}, {}
    for pattern, lab in mapping.items():
        for p in _expand([pattern]):
            table[os.path.normpath(p)] = str(lab)
            origin[os.path.normpath(p)] = f"labels {pattern!r}"
    for m in manifests:
        for f, cat in read_label_manifest(m).items():
            if f in table and table[f] != cat:
                raise ExtractError(f"dataset {name}: {f} is {table[f]!r} in {origin[f]} but {cat!r} in manifest {m}")
            table[f], origin[f] = cat, f"manifest {m}"
    missing = [str(c) for c in captures if os.path.normpath(c) not in table]
    if missing:
        raise ExtractError(f"dataset {name}: captures without a label in datasets.{name}.labels or its manifest: "
                           f"{sorted(missing)}")
    return {k: (BENIGN if v in driver.benign_labels else v) for k, v in table.items()}


def _slices(chunks, n: int | None = None):
    """Chunks of at most ``n`` flows (the flush at the end of a capture may hand over every live flow at
    once): the frame and feature temporaries stay the size of a row group, whatever the flood."""
    n = n or ROW_GROUP_FLOWS
    for c in chunks:
        if len(c) <= n:
            yield c
            continue
        for lo in range(0, len(c), n):
            yield c[lo:lo + n]


def _coalesced(chunks, T: int, n: int | None = None):
    """Consecutive chunks joined until they hold at least ``n`` flows (the rest at the end), in order.
    The meter hands over the flows that ended in one reader batch, a few hundred on a typical capture, and
    building a frame, the features and the parquet blocks costs a fixed overhead per chunk."""
    n = n or COALESCE_FLOWS
    held, count = [], 0
    try:
        for c in chunks:
            held.append(c)
            count += len(c)
            if count >= n:
                yield held[0] if len(held) == 1 else FlowChunk.concat(held, T)
                held, count = [], 0
    except Exception:  # a capture that fails part-way keeps the flows read before the error, as uncoalesced
        if held:
            yield held[0] if len(held) == 1 else FlowChunk.concat(held, T)
        raise
    if held:
        yield held[0] if len(held) == 1 else FlowChunk.concat(held, T)


def _captures_part(name, ds_cfg, extract_cfg, part: ExtractPart, out_dir: Path, driver: Driver) -> dict:
    from tqdm import tqdm

    cfg = FlowConfig.from_extract_config(extract_cfg)
    shard_flows = int(extract_cfg.get("shard_flows", 200000))
    captures = [Path(c) for c in part.captures]
    per_file = driver.kind == "per_file" or isinstance(ds_cfg.get("labels"), dict) or bool(ds_cfg.get("manifest"))
    file_labels = _per_file_table(name, ds_cfg, driver, captures) if per_file else None
    writer = _PartWriter(out_dir, cfg.T, shard_flows)
    tmp = out_dir / "_tmp"
    tmp.mkdir()
    frames, tmp_shards, failed, per_capture = [], [], [], []
    totals = {"packets": 0, "records": 0, "non_ip": 0, "truncated": 0, "malformed": 0,
              "skipped_nonfirst_fragments": 0}
    skipped_by_reason: dict[str, int] = {}
    total_bytes = sum(p.stat().st_size for p in captures if p.exists())
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"extract {name} {part.name}", mininterval=5,
              disable=None) as bar:
        for ci, path in enumerate(captures):
            info: dict = {}
            n_cap = 0
            error = None
            try:
                for chunk in _slices(_coalesced(meter_capture(path, cfg, extract_cfg, info, bar), cfg.T)):
                    fr = chunk.frame()
                    fr["source_file"] = str(path)
                    feats = features_from_state(chunk.state)
                    if per_file:  # label known now: stream the chunk out
                        fr["label"] = file_labels[os.path.normpath(path)]
                        _finish_labels(fr, driver)
                        writer.add(fr.drop(columns=["end_reason"]), feats, chunk.channels,
                                   fr["n_packets"].to_numpy().astype(np.int32), ci, chunk.context)
                    else:  # the join needs every flow of the part: spill channels and features
                        f = tmp / f"tmp_{len(tmp_shards):06d}.npy"
                        np.save(f, chunk.channels)
                        np.save(f.with_suffix(".feat.npy"), feats.to_numpy(np.float64))
                        if chunk.context is not None:
                            np.save(f.with_suffix(".ctx.npy"), chunk.context)
                        tmp_shards.append((f, len(chunk), ci))
                        frames.append(fr)
                    n_cap += len(chunk)
            except CaptureError as exc:
                error = str(exc)
                log.error("capture %s failed: %s (%d flows kept from the part read)", path, exc, n_cap)
            except OSError as exc:  # this capture unreadable (permissions, I/O): counted like a corrupt one
                if exc.filename is None or os.fspath(exc.filename) != os.fspath(path):
                    raise  # not the capture's own problem (e.g. the output disk)
                error = f"cannot read: {exc.strerror or exc}"
                log.error("capture %s failed: %s (%d flows kept from the part read)", path, error, n_cap)
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
                                "max_alive_flows": ms.max_alive_flows if ms else 0,
                                "ts_backwards": ms.ts_backwards if ms else 0})
            log.info("%s: %d packets -> %d flows%s", path, ms.packets if ms else 0, n_cap,
                     f" (FAILED: {error})" if error else "")
    n_dropped = 0
    if per_file:
        per = dict(writer.labels)
        for k, v in sorted(per.items()):
            log.info("dataset %s %s: label %s: %d flows (per-file labels)", name, part.name, k, v)
        label_report = {"label_mode": "per_file", "matched_per_label": per, "unmatched_flows": 0,
                        "unmatched_rows": 0}
    elif frames:
        flows = pd.concat(frames, ignore_index=True)
        label_report = _label_csv(name, part, ds_cfg, extract_cfg, driver, flows, out_dir)
        keep = flows["label"].to_numpy() != DROPPED
        n_dropped = int((~keep).sum())
        if n_dropped:
            log.info("dataset %s %s: %d flows dropped (they match label rows the driver drops)", name, part.name,
                     n_dropped)
        flows = flows.drop(columns=["end_reason"])
        offset = 0
        for f, n, ci in tmp_shards:
            k = keep[offset:offset + n]
            ff, fc = f.with_suffix(".feat.npy"), f.with_suffix(".ctx.npy")
            if k.any():
                block = flows.iloc[offset:offset + n][k]
                writer.add(block, pd.DataFrame(np.load(ff)[k], columns=list(FEATURE_NAMES)), np.load(f)[k],
                           block["n_packets"].to_numpy().astype(np.int32), ci,
                           np.load(fc)[k] if fc.exists() else None)
            f.unlink()
            ff.unlink()
            fc.unlink(missing_ok=True)
            offset += n
        del flows
    else:
        label_report = {"label_mode": "csv_join", "matched_per_label": {}, "unmatched_flows": 0,
                        "label_files": {}, "label_rows": 0, "unmatched_rows": None}
    writer.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"dataset": name, "driver": driver.name, "has_packets": True, "captures": len(captures),
            "failed_captures": failed, **totals, "skipped_by_reason": skipped_by_reason, "flows": writer.n,
            "dropped_flows": n_dropped, "labels": writer.labels, **label_report, "flow_config": cfg.__dict__,
            "per_capture": per_capture, "shards": writer.shards}


def _finish_labels(flows: pd.DataFrame, driver: Driver) -> None:
    labels = flows["label"].astype(str)
    flows["label"] = labels
    cls = {lab: ("unmatched" if lab == UNMATCHED else "dropped" if lab == DROPPED else driver.attack_class(lab))
           for lab in labels.unique()}
    flows["attack_class"] = labels.map(cls)
    flows["is_attack"] = ~labels.isin([BENIGN, UNMATCHED, DROPPED])


def _label_csv(name, part: ExtractPart, ds_cfg, extract_cfg, driver: Driver, flows: pd.DataFrame, out_dir: Path) -> dict:
    """Join the part's flows with its day's label CSVs; the rows used go to ``label_rows_used/`` so the
    gather can count the dataset's unmatched rows exactly when parts share a CSV."""
    files = [Path(f) for f in part.labels]
    if not files:
        raise ExtractError(f"dataset {name}: no label files configured (datasets.{name}.labels)")
    rows, read_stats = [], {}
    for f in files:
        r, st = read_label_csv(f, driver)
        rows.append(r)
        read_stats[str(f)] = st.__dict__
    sizes = [len(r) for r in rows]
    rows = pd.concat(rows, ignore_index=True)
    res = join_labels(flows, rows, driver, float(extract_cfg.get("label_tolerance_s", 2.0)),
                      ds_cfg.get("time_offset_s", extract_cfg.get("time_offset_s", "auto")),
                      seed=int(extract_cfg.get("seed", 0)), source=f"dataset {name}")
    flows["label"] = res.label
    _finish_labels(flows, driver)
    used_dir = out_dir / "label_rows_used"
    used_dir.mkdir()
    used_files = {}
    for i, (f, lo) in enumerate(zip(files, np.cumsum([0] + sizes[:-1]))):
        np.save(used_dir / f"{i:04d}.npy", np.packbits(res.used[lo:lo + sizes[i]]))
        used_files[str(f)] = {"file": f"{i:04d}.npy", "rows": sizes[i]}
    return {"label_mode": "csv_join", "time_offset_s": res.offset_s, "offset_measurement": res.measured,
            "matched_per_label": res.matched_per_label, "unmatched_flows": res.unmatched_flows,
            "label_rows": res.rows, "unmatched_rows": res.unmatched_rows, "label_files": read_stats,
            "label_rows_used": used_files}


# ------------------------------------------------------------------------------------- gather


def _check_benign(name: str, counts: dict) -> None:
    if not counts.get(BENIGN):
        raise ExtractError(f"dataset {name}: no benign flow after labelling (labels: {counts}); the models "
                           "are trained on benign traffic only: check the label files, the benign "
                           "aliases of the driver and time_offset_s")


def _sum_into(acc: dict, d: dict) -> None:
    for k, v in d.items():
        acc[str(k)] = acc.get(str(k), 0) + int(v)


def _gather_table(parts: list[Path], out: Path, n_expected: int, options: dict | None = None) -> None:
    """The store's table from the parts' tables: the one part's file itself, hard-linked (its flow_ids
    are the store's: nothing decoded or written), or the parts concatenated with offset flow_ids."""
    import pyarrow.parquet as pq

    if len(parts) == 1 and parts[0].exists():
        part = pq.ParquetFile(parts[0])
        if part.schema_arrow.names[:1] == ["flow_id"] and part.metadata.num_rows == n_expected:
            tmp = out.with_name(out.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(parts[0], tmp)
            except OSError:  # another file system: copied
                shutil.copyfile(parts[0], tmp)
            tmp.replace(out)
            return
    _concat_parquet(parts, out, n_expected, options)


def _concat_parquet(parts: list[Path], out: Path, n_expected: int, options: dict | None = None) -> None:
    """The parts' tables one after the other with flow_id = arange(N) first (replacing the parts' own
    counts), batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def numbered():
        start = 0
        for p in parts:
            if not p.exists():
                continue
            for batch in pq.ParquetFile(p).iter_batches(batch_size=ROW_GROUP_FLOWS):
                table = pa.Table.from_batches([batch]).replace_schema_metadata(None)
                ids = pa.array(np.arange(start, start + len(table), dtype=np.int64))
                if "flow_id" in table.column_names:
                    yield table.set_column(table.column_names.index("flow_id"), "flow_id", ids)
                else:  # a part written before parts counted their flows
                    yield table.add_column(0, "flow_id", ids)
                start += len(table)

    tmp = out.with_name(out.name + ".tmp")
    written = write_parquet_tables(tmp, numbered(), **(options or {}))
    if written != n_expected:
        raise ExtractError(f"{out}: the parts hold {written} rows, their reports {n_expected}")
    tmp.replace(out)


def gather_store(name: str, ds_cfg: dict, extract_cfg: dict, part_dirs, out_dir: str | Path,
                 started: float | None = None) -> dict:
    """Concatenate the extracted parts (in plan order) into the dataset's store; returns (and writes) the report."""
    t0 = time.time() if started is None else started
    out_dir = Path(out_dir)
    part_dirs = [Path(d) for d in part_dirs]
    reports = []
    for d in part_dirs:
        f = d / PART_REPORT
        if not f.exists():
            raise ExtractError(f"{d}: not an extracted part (no {PART_REPORT}); run rule extract_part for it")
        reports.append(json.loads(f.read_text()))
    if not reports:
        raise ExtractError(f"dataset {name}: no parts to gather")
    driver = get_driver(ds_cfg.get("driver", name))
    n = sum(int(r["flows"]) for r in reports)
    labels: dict[str, int] = {}
    for r in reports:
        _sum_into(labels, r["labels"])
    if reports[0].get("has_packets", True):
        report = _gather_capture_reports(name, driver, reports, part_dirs)
    else:
        report = {k: v for k, v in reports[0].items() if k not in ("labels", "part", "seconds")}
    _check_benign(name, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    T = int(reports[0].get("flow_config", {}).get("T", extract_cfg.get("T", FlowConfig.T)))
    writer = StoreWriter(out_dir, T)
    for table in ("flow_features.parquet", "flows.parquet"):
        _gather_table([d / table for d in part_dirs], out_dir / table, n, STORE_PARQUET[table])
    context = bool(extract_cfg.get("context", False)) and bool(reports[0].get("has_packets", True))
    ctx_out = out_dir / CONTEXT_FILE
    if context:
        _gather_table([d / CONTEXT_FILE for d in part_dirs], ctx_out, n, STORE_PARQUET[CONTEXT_FILE])
    elif ctx_out.exists():
        ctx_out.unlink()  # a store re-extracted without context keeps no stale table
    has_packets = bool(reports[0].get("has_packets", True))
    if has_packets:
        for d, r in zip(part_dirs, reports):
            for s in r["shards"]:
                writer.link_shard(d / "packets" / s["file"], d / "packets" / s["lengths_file"], int(s["n_flows"]))
    writer.write_manifest(n, has_packets, context=_context_entry() if context else None)
    report["seconds"] = round(time.time() - t0, 3)
    (out_dir / REPORT).write_text(json.dumps(report, indent=1, default=str))
    log.info("dataset %s: %d flows from %d parts written to %s", name, n, len(reports), out_dir)
    return report


def _context_entry() -> dict:
    """The manifest's description of context_features.parquet."""
    return {"file": CONTEXT_FILE, "lambdas": list(CONTEXT_LAMBDAS), "columns": len(context_columns()),
            "at": ["first packet", "last packet"], "source": "nidsflow.capture.context (Kitsune AfterImage)"}


def _gather_capture_reports(name: str, driver: Driver, reports: list[dict], part_dirs: list[Path]) -> dict:
    n_captures = sum(int(r["captures"]) for r in reports)
    failed = [f for r in reports for f in r["failed_captures"]]
    if len(failed) == n_captures:
        raise ExtractError(f"dataset {name}: every capture failed: " + "; ".join(f"{f['file']}: {f['error']}"
                                                                              for f in failed))
    totals = {k: sum(int(r[k]) for r in reports) for k in
              ("packets", "records", "non_ip", "truncated", "malformed", "skipped_nonfirst_fragments")}
    skipped: dict[str, int] = {}
    for r in reports:
        _sum_into(skipped, r["skipped_by_reason"])
    if skipped:
        log.warning("dataset %s: skipped records by reason: %s", name, skipped)
    if totals["skipped_nonfirst_fragments"]:
        log.warning("dataset %s: %d non-first IP fragments of TCP/UDP/SCTP skipped (no ports)", name,
                    totals["skipped_nonfirst_fragments"])
    n = sum(int(r["flows"]) for r in reports)
    dropped = sum(int(r["dropped_flows"]) for r in reports)
    if n + dropped == 0:
        raise ExtractError(f"dataset {name}: the captures hold no IP flow at all ({totals})")
    matched: dict[str, int] = {}
    for r in reports:
        _sum_into(matched, r["matched_per_label"])
    report = {"dataset": name, "driver": driver.name, "captures": n_captures, "failed_captures": failed, **totals,
              "skipped_by_reason": skipped, "flows": n, "dropped_flows": dropped,
              "label_mode": reports[0]["label_mode"], "matched_per_label": matched,
              "unmatched_flows": sum(int(r["unmatched_flows"]) for r in reports), "unmatched_rows": 0}
    if reports[0]["label_mode"] == "csv_join":
        report.update(_gather_csv_labels(reports, part_dirs))
    report["flow_config"] = reports[0]["flow_config"]
    report["per_capture"] = [c for r in reports for c in r["per_capture"]]
    report["parts"] = [{**r["part"], "flows": r["flows"], "seconds": r.get("seconds")} for r in reports]
    return report


def _gather_csv_labels(reports: list[dict], part_dirs: list[Path]) -> dict:
    """Offsets, label-file stats and unmatched CSV rows over parts; a row is unmatched when no part's
    flows matched it (the parts that read one CSV OR their used-row masks)."""
    with_rows = [(r, d) for r, d in zip(reports, part_dirs) if r.get("label_rows_used")]
    offsets = {r["part"]["name"]: r.get("time_offset_s") for r, _ in with_rows}
    measured = {r["part"]["name"]: r.get("offset_measurement") for r, _ in with_rows}
    single = len(set(map(str, offsets.values()))) == 1
    if with_rows and not single:
        log.warning("the parts measured different clock offsets: %s", offsets)
    files: dict[str, dict] = {}
    used: dict[str, np.ndarray] = {}
    for r, d in with_rows:
        files.update(r["label_files"])
        for f, info in r["label_rows_used"].items():
            mask = np.unpackbits(np.load(d / "label_rows_used" / info["file"]), count=int(info["rows"])).astype(bool)
            used[f] = mask if f not in used else used[f] | mask
    rows = sum(len(m) for m in used.values())
    unmatched_rows = int(sum((~m).sum() for m in used.values()))
    if with_rows:
        log.info("%d of %d CSV rows matched no flow", unmatched_rows, rows)
    return {"time_offset_s": next(iter(offsets.values())) if single else offsets,
            "offset_measurement": next(iter(measured.values())) if single else measured,
            "label_rows": rows, "unmatched_rows": unmatched_rows, "label_files": files}


# ------------------------------------------------------------------------------------- flow table


def _flow_table_part(name, ds_cfg, extract_cfg, part: ExtractPart, out_dir: Path, driver: Driver) -> dict:
    """A part from CIC-format flow CSVs alone: flows + flow_features (the CSV's own features), no packets."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [Path(f) for f in part.labels]
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
    ids = pa.array(np.arange(len(flows), dtype=np.int64))
    for table, fname in ((flows, "flows.parquet"), (feats, "flow_features.parquet")):
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata(None)
                       .add_column(0, "flow_id", ids), out_dir / fname, **STORE_PARQUET[fname])
    per = {str(k): int(v) for k, v in flows["label"].value_counts().items()}
    for k, v in sorted(per.items()):
        log.info("dataset %s: label %s: %d flows (flow table)", name, k, v)
    return {"dataset": name, "driver": driver.name, "label_mode": "flow_table", "has_packets": False,
            "flows": int(len(flows)), "packets": 0, "matched_per_label": per, "labels": per,
            "unmatched_flows": 0, "missing_features": missing, "label_files": per_file,
            "dropped_flows": int(sum(v["dropped_nan_inf_features"] + v["dropped_by_label"] for v in per_file.values()))}


# ------------------------------------------------------------------------------------- re-read features


def regenerate_features(store_dir: str | Path, ds_cfg: dict, extract_cfg: dict,
                        out_path: str | Path | None = None) -> Path:
    """Re-read the store's captures and rewrite ``flow_features.parquet`` aligned with ``flows.parquet``
    (or write the result to ``out_path`` instead, leaving the store as it is).

    The flows are re-assembled with the same settings; each new flow is matched to the stored one by
    (source_file, forward 5-tuple, first_ts). A stored flow that cannot be found again is an error
    (the captures or the settings changed: re-run the extract rule instead).
    """
    store_dir = Path(store_dir)
    if get_driver(ds_cfg.get("driver", "")).kind == "flow_table":
        raise ValueError(f"{store_dir}: a flow-table store has no captures to re-read; its features are the CSV's")
    flows = pd.read_parquet(store_dir / "flows.parquet")
    cfg = FlowConfig.from_extract_config(extract_cfg)
    parts = []
    for path in capture_files(ds_cfg):
        frame_parts, feat_parts = [], []
        for chunk in meter_capture(path, cfg, extract_cfg):
            frame_parts.append(chunk.frame())
            feat_parts.append(features_from_state(chunk.state))
        if frame_parts:
            fr = pd.concat(frame_parts, ignore_index=True)
            fr["source_file"] = str(path)
            parts.append(pd.concat([fr, pd.concat(feat_parts, ignore_index=True)], axis=1))
    if not parts:
        raise ValueError(f"{store_dir}: no flows could be re-read from the captures of this dataset")
    new = pd.concat(parts, ignore_index=True)
    key = ["source_file", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_ts"]
    merged = flows[["flow_id"] + key].merge(new.drop_duplicates(key), on=key, how="left", validate="one_to_one")
    lost = int(merged[FEATURE_NAMES[0]].isna().sum())
    if lost:
        raise ValueError(f"{store_dir}: {lost} of {len(flows)} stored flows were not found again in the "
                         "captures (captures or extract settings changed); re-run the extract rule")
    out = merged.sort_values("flow_id")[["flow_id", *FEATURE_NAMES]].reset_index(drop=True)
    target = Path(out_path) if out_path is not None else store_dir / "flow_features.parquet"
    tmp = target.with_name(target.name + ".tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(target)
    log.info("%s: regenerated flow statistics of %d flows -> %s", store_dir, len(out), target)
    return target


__all__ = ["extract_dataset", "extract_part", "gather_store", "plan_parts", "regenerate_features", "ExtractPart",
           "capture_files", "label_files", "ExtractError", "LabelError"]
