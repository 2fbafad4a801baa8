"""Label join: flows <- labelled CICFlowMeter-format CSV rows, plus the clock-offset diagnostic.

A flow takes the label of the CSV row with the same canonical (direction-insensitive) 5-tuple whose
start time is nearest to the flow's first packet, within ``tolerance`` seconds:

    match(f) = argmin_r |(t_r - offset) - t_f|  over rows r with key(r) = key(f),
               kept if that minimum <= tolerance,

where ``offset`` = CSV clock minus capture clock (``time_offset_s``; CIC CSVs are in local time).
With ``time_offset_s: auto`` the offset is measured: every candidate in whole and half hours within
+-14 h is tried on a sample of flows and the one matching most flows wins; the median residual
of its matches is logged too. Flows that match nothing are labelled ``UNMATCHED`` (never benign);
CSV rows that match no flow are counted and logged.
"""

from __future__ import annotations

import csv
import ipaddress
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.capture.drivers import Driver
from nidsflow.store import BENIGN, UNMATCHED

log = logging.getLogger(__name__)

DROPPED = "__DROPPED__"
KEY_ROLES = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "timestamp", "label")


class LabelError(ValueError):
    """A label table cannot be used; the message names the file and the problem."""


@dataclass
class CsvReadStats:
    rows: int = 0
    kept: int = 0
    dropped_nan_inf: int = 0
    dropped_bad_timestamp: int = 0
    dropped_by_label: int = 0
    timestamp_formats: dict[str, int] = field(default_factory=dict)


#: Columns a label manifest must have (the ../shared/data manifest.tsv layout; other columns are ignored).
MANIFEST_COLUMNS = ("file", "category")


def read_label_manifest(path: str | Path) -> dict[str, str]:
    """Capture path -> category of a tab-separated manifest with a header naming ``file`` and ``category``.

    ``file`` is relative to the manifest's folder (or absolute); the keys are ``os.path.normpath`` of the
    resolved paths. A row whose file does not exist, an empty file or category, or a file listed twice
    with two categories is a :class:`LabelError` naming the manifest, the row (line) and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label manifest not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows:
        raise LabelError(f"{path}: empty label manifest (no header)")
    header = [_norm(h) for h in rows[0]]
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise LabelError(f"{path}: label manifest lacks column(s) {missing} (tab-separated header {rows[0]})")
    i_file, i_cat = header.index("file"), header.index("category")
    out: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(i_file, i_cat) or not row[i_file].strip() or not row[i_cat].strip():
            raise LabelError(f"{path}: line {line}: empty file or category in row {row}")
        f = os.path.normpath(path.parent / row[i_file].strip())
        cat = row[i_cat].strip()
        if not os.path.isfile(f):
            raise LabelError(f"{path}: line {line}: file {row[i_file].strip()!r} does not exist ({f})")
        if out.get(f, cat) != cat:
            raise LabelError(f"{path}: line {line}: {row[i_file].strip()!r} listed again with another category "
                             f"({out[f]!r}, then {cat!r})")
        out[f] = cat
    if not out:
        raise LabelError(f"{path}: label manifest has no rows")
    return out


def _norm(name: str) -> str:
    return name.replace("\ufeff", "").strip().lower()


def read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            raise LabelError(f"{path}: empty CSV file (no header)") from None


def resolve_columns(path: Path, header: list[str], aliases: dict, roles=KEY_ROLES) -> dict[str, str]:
    """Role -> the header's own column name; a missing role is a LabelError naming file and column."""
    by_norm = {_norm(h): h for h in header}
    found = {}
    for role in roles:
        for alias in aliases[role]:
            if _norm(alias) in by_norm:
                found[role] = by_norm[_norm(alias)]
                break
        else:
            raise LabelError(f"{path}: missing column {aliases[role][0]!r} (role {role}; also accepted: "
                             f"{list(aliases[role][1:])}); header has {[h.strip() for h in header][:12]}...")
    return found


def parse_timestamps(values: pd.Series, formats: tuple[str, ...], path: Path, stats: CsvReadStats) -> np.ndarray:
    """Epoch seconds (the CSV's clock read as if UTC) of each value, NaN where no format parses it.

    Each value takes the first format that parses it (files mix "%H:%M" and "%H:%M:%S" rows). If
    fewer than half the values parse, the format is unknown: LabelError with an example value.
    """
    text = values.astype(str).str.strip()
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for fmt in formats:
        todo = out.isna()
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        ok = parsed.notna()
        if ok.any():
            out.loc[parsed.index[ok]] = parsed[ok]
            stats.timestamp_formats[fmt] = stats.timestamp_formats.get(fmt, 0) + int(ok.sum())
    bad = out.isna()
    if len(out) and bad.mean() > 0.5:
        example = text[bad].iloc[0]
        raise LabelError(f"{path}: unknown timestamp format, e.g. {example!r} (column Timestamp); "
                         f"tried {list(formats)}")
    epoch = (out.astype("int64") / 1e9).to_numpy(dtype=np.float64, copy=True)
    epoch[bad.to_numpy()] = np.nan
    return epoch


def read_label_csv(path: str | Path, driver: Driver) -> tuple[pd.DataFrame, CsvReadStats]:
    """The key columns of one label CSV as src_ip, src_port, dst_ip, dst_port, protocol, csv_ts, label.

    Rows with NaN/Inf or non-numeric ports/protocol, or an unparsable timestamp, are counted and
    dropped; labels the driver drops are kept as ``__DROPPED__`` so their flows can be removed.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: label file not found")
    header = read_header(path)
    cols = resolve_columns(path, header, driver.columns)
    stats = CsvReadStats()
    try:
        raw = pd.read_csv(path, usecols=list(cols.values()), dtype=str, encoding="utf-8-sig",
                          encoding_errors="replace", keep_default_na=False)
    except (pd.errors.ParserError, UnicodeError) as exc:
        raise LabelError(f"{path}: unreadable CSV: {exc}") from exc
    stats.rows = len(raw)
    df = pd.DataFrame({role: raw[name].str.strip() for role, name in cols.items()})
    nums = {r: pd.to_numeric(df[r], errors="coerce") for r in ("src_port", "dst_port", "protocol")}
    bad = np.zeros(len(df), bool)
    for r, v in nums.items():
        bad |= ~np.isfinite(v.to_numpy(dtype=np.float64))
    for r in ("src_ip", "dst_ip", "label", "timestamp"):
        bad |= df[r].str.lower().isin(["", "nan", "inf", "-inf", "infinity", "-infinity", "none"]).to_numpy()
    stats.dropped_nan_inf = int(bad.sum())
    ts = np.full(len(df), np.nan)
    ts[~bad] = parse_timestamps(df["timestamp"][~bad], driver.timestamp_formats, path, stats)
    bad_ts = np.isnan(ts) & ~bad
    stats.dropped_bad_timestamp = int(bad_ts.sum())
    keep = ~(bad | bad_ts)
    out = pd.DataFrame({
        "src_ip": df["src_ip"].to_numpy()[keep], "src_port": nums["src_port"].to_numpy()[keep].astype(np.int64),
        "dst_ip": df["dst_ip"].to_numpy()[keep], "dst_port": nums["dst_port"].to_numpy()[keep].astype(np.int64),
        "protocol": nums["protocol"].to_numpy()[keep].astype(np.int64), "csv_ts": ts[keep],
        "label": df["label"].to_numpy()[keep], "row": np.nonzero(keep)[0],
    })
    dropped = out["label"].map(driver.is_dropped).to_numpy(dtype=bool)
    stats.dropped_by_label = int(dropped.sum())
    out.loc[dropped, "label"] = DROPPED
    stats.kept = len(out)
    if stats.dropped_nan_inf or stats.dropped_bad_timestamp:
        log.warning("%s: dropped %d rows with NaN/Inf/empty key fields and %d with an unparsable timestamp "
                    "(of %d)", path, stats.dropped_nan_inf, stats.dropped_bad_timestamp, stats.rows)
    if stats.dropped_by_label:
        log.info("%s: %d rows carry labels the driver drops (their flows will be dropped)", path,
                 stats.dropped_by_label)
    if stats.kept == 0:
        raise LabelError(f"{path}: no usable label rows ({stats.rows} rows read)")
    return out, stats


def _norm_ips(values) -> np.ndarray:
    """Address text, stripped; IPv6 in its compressed form so CSV and capture spell it alike."""
    text = pd.Series(values, dtype=object).astype(str).str.strip().str.lower()
    v6 = text.str.contains(":", regex=False)
    if v6.any():
        def compress(x: str) -> str:
            try:
                return ipaddress.ip_address(x).compressed
            except ValueError:
                return x
        uniq = text[v6].unique()
        text[v6] = text[v6].map(dict(zip(uniq, map(compress, uniq))))
    return text.to_numpy(dtype=object)


def canonical_key(src_ip, src_port, dst_ip, dst_port, protocol) -> np.ndarray:
    """Direction-insensitive key text 'ipA|portA|ipB|portB|proto' with (ipA, portA) <= (ipB, portB)."""
    a = _norm_ips(src_ip)
    b = _norm_ips(dst_ip)
    pa = np.asarray(src_port, dtype=np.int64).astype(str)
    pb = np.asarray(dst_port, dtype=np.int64).astype(str)
    ea = np.char.add(np.char.add(a.astype(str), "|"), pa)
    eb = np.char.add(np.char.add(b.astype(str), "|"), pb)
    lo = np.where(ea <= eb, ea, eb)
    hi = np.where(ea <= eb, eb, ea)
    proto = np.asarray(protocol, dtype=np.int64).astype(str)
    return np.char.add(np.char.add(np.char.add(np.char.add(lo, "|"), hi), "|"), proto).astype(object)


def _match(flow_key, flow_ts, rows_key, rows_ts, offset, tolerance):
    """Index (into rows) of each flow's nearest same-key row within tolerance, -1 if none."""
    left = pd.DataFrame({"key": flow_key, "t": flow_ts, "i": np.arange(len(flow_ts))}).sort_values("t")
    right = pd.DataFrame({"key": rows_key, "t": rows_ts - offset, "r": np.arange(len(rows_ts))}).sort_values("t")
    m = pd.merge_asof(left, right, on="t", by="key", direction="nearest", tolerance=float(tolerance))
    out = np.full(len(flow_ts), -1, np.int64)
    r = m["r"].to_numpy(dtype=np.float64)
    ok = ~np.isnan(r)
    out[m["i"].to_numpy()[ok]] = r[ok].astype(np.int64)
    return out


def measure_offset(flow_key, flow_ts, rows_key, rows_ts, tolerance: float, seed: int = 0,
                   max_flows: int = 20000, span_h: float = 14.0) -> tuple[float, dict]:
    """CSV clock minus capture clock: the whole/half-hour candidate in +-span_h matching most flows.

    Returns (offset, info) with info = candidate match counts (non-zero ones), the median residual of
    the winner's matches (median over matched flows of (t_row - t_flow)), and its match count.
    """
    flow_key, flow_ts = np.asarray(flow_key), np.asarray(flow_ts, dtype=np.float64)
    if len(flow_ts) > max_flows:
        pick = np.sort(np.random.default_rng(seed).choice(len(flow_ts), max_flows, replace=False))
        flow_key, flow_ts = flow_key[pick], flow_ts[pick]
    rows_key, rows_ts = np.asarray(rows_key), np.asarray(rows_ts, dtype=np.float64)
    useful = np.isin(rows_key, flow_key)  # only rows that share a key with a sampled flow can match
    rows_key, rows_ts = rows_key[useful], rows_ts[useful]
    candidates = np.arange(-span_h * 3600, span_h * 3600 + 1, 1800.0)
    counts = np.array([(_match(flow_key, flow_ts, rows_key, rows_ts, c, tolerance) >= 0).sum() for c in candidates])
    best = int(np.argmax(counts - 1e-9 * np.abs(candidates)))  # ties: the smallest |offset|
    offset = float(candidates[best])
    m = _match(flow_key, flow_ts, rows_key, rows_ts, offset, tolerance)
    resid = rows_ts[m[m >= 0]] - flow_ts[m >= 0]
    info = {"candidates": {float(c): int(n) for c, n in zip(candidates, counts) if n},
            "matched_sample": int(counts[best]), "sample_flows": int(len(flow_ts)),
            "median_residual_s": float(np.median(resid)) if len(resid) else None}
    return offset, info


@dataclass
class JoinResult:
    label: np.ndarray          # per flow: label string, BENIGN, UNMATCHED or DROPPED
    offset_s: float
    measured: dict
    matched_per_label: dict
    unmatched_flows: int
    unmatched_rows: int
    rows: int
    used: np.ndarray | None = None   # per CSV row: did some flow match it


def join_labels(flows: pd.DataFrame, rows: pd.DataFrame, driver: Driver, tolerance_s: float,
                time_offset_s="auto", seed: int = 0, source: str = "") -> JoinResult:
    """Label each flow (src_ip, src_port, dst_ip, dst_port, protocol, first_ts) from the CSV rows."""
    tol = float(tolerance_s) + float(driver.timestamp_resolution_s)
    fkey = canonical_key(flows["src_ip"], flows["src_port"], flows["dst_ip"], flows["dst_port"], flows["protocol"])
    rkey = canonical_key(rows["src_ip"], rows["src_port"], rows["dst_ip"], rows["dst_port"], rows["protocol"])
    fts = flows["first_ts"].to_numpy(dtype=np.float64)
    rts = rows["csv_ts"].to_numpy(dtype=np.float64)
    measured: dict = {}
    if isinstance(time_offset_s, str):
        if time_offset_s != "auto":
            raise ValueError(f"time_offset_s must be a number or 'auto', got {time_offset_s!r}")
        offset, measured = measure_offset(fkey, fts, rkey, rts, tol, seed=seed)
        if measured["matched_sample"] == 0:
            log.warning("%s: no flow matches any CSV row at any offset in +-14 h: wrong CSV for these "
                        "captures? using offset 0", source)
            offset = 0.0
        log.info("measured clock offset %g s; set time_offset_s: %g in config (median residual %s s, "
                 "%d of %d sampled flows matched)", offset, offset, measured["median_residual_s"],
                 measured["matched_sample"], measured["sample_flows"])
    else:
        offset = float(time_offset_s)
    m = _match(fkey, fts, rkey, rts, offset, tol)
    raw = rows["label"].to_numpy(dtype=object)
    label = np.full(len(flows), UNMATCHED, dtype=object)
    hit = m >= 0
    matched = raw[m[hit]]
    benign = np.isin(matched, list(driver.benign_labels) + [BENIGN])
    label[hit] = np.where(benign, BENIGN, matched)
    used = np.zeros(len(rows), bool)
    used[m[hit]] = True
    per_label = pd.Series(label).value_counts().to_dict()
    res = JoinResult(label=label, offset_s=offset, measured=measured,
                     matched_per_label={str(k): int(v) for k, v in per_label.items() if k != UNMATCHED},
                     unmatched_flows=int((~hit).sum()), unmatched_rows=int((~used).sum()), rows=len(rows),
                     used=used)
    for k, v in sorted(res.matched_per_label.items()):
        log.info("%s: label %s: %d flows", source, k, v)
    log.info("%s: %d of %d flows matched a CSV row (offset %g s, tolerance %g s); %d flows UNMATCHED; "
             "%d of %d CSV rows matched no flow", source, int(hit.sum()), len(flows), offset, tol,
             res.unmatched_flows, res.unmatched_rows, len(rows))
    return res
