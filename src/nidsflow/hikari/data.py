"""Flow tables for the HIKARI branch: loading, label detection, binary mapping, feature selection.

Three sources give one table of numeric flow features plus a binary label ``y`` (1 = attack):

* the HIKARI-2021 CSV (``ALLFLOWMETER_HIKARI2021.csv``: two index columns, uid, originh/originp/
  responh/responp, 80 flow features, traffic_category, Label 0/1);
* CICFlowMeter-format CSVs (one file, a folder or a glob; ``Label`` holds BENIGN or an attack name);
* a flow store (``nidsflow.store.Store``): ``flow_features`` joined with ``flows.label/is_attack``.

SPEC "HIKARI meta-ensemble", preprocessing: numeric columns only; ID-like columns dropped by name;
+-Inf -> NaN -> median; constant columns dropped. Medians and the constant mask are fitted on the
training split only (``Imputer``), so no test row informs preprocessing.
"""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Label-column names, in order of preference (compared case-insensitively, spaces stripped).
LABEL_CANDIDATES: tuple[str, ...] = ("label", "is_attack", "class", "attack", "attack_cat", "traffic_category", "category")
#: Label values read as normal traffic (case-insensitive) when the label is a string.
BENIGN_ALIASES: tuple[str, ...] = ("benign", "normal", "background", "0", "false", "legitimate")
#: Default name tokens of ID-like / endpoint / label columns (SPEC: label/ip/port/time/mac/src/dst/address/id/flow/uid).
DEFAULT_ID_TOKENS: tuple[str, ...] = (
    "label", "ip", "port", "time", "timestamp", "mac", "src", "dst", "address", "addr", "id", "uid",
    "unnamed", "index", "category", "originh", "originp", "responh", "responp",
)
#: Whole (separator-free) names that are IDs. "flow" is matched only as "flow id": a bare "flow" token
#: would drop the flow statistics themselves (flow_duration, flow_iat.*, ...).
DEFAULT_ID_NAMES: tuple[str, ...] = (
    "flowid", "srcip", "dstip", "srcport", "dstport", "sourceip", "destinationip", "sourceport",
    "destinationport", "srcmac", "dstmac", "",
)


class HikariDataError(ValueError):
    """A flow table cannot be used: missing file, no label column, no benign or no attack rows, ..."""


@dataclass
class FlowTable:
    """Numeric candidate features, binary labels and the original label strings of one table."""

    features: pd.DataFrame
    y: np.ndarray                 # int8, 1 = attack
    labels: np.ndarray            # the original label values as strings (attack class names)
    label_column: str
    dropped_columns: dict[str, str] = field(default_factory=dict)   # column -> reason
    source: str = ""


def expand_csv_paths(spec: str | Path) -> list[Path]:
    """A CSV file, a folder (every ``*.csv`` in it) or a glob -> sorted list of files."""
    spec = str(spec)
    if Path(spec).is_dir():
        files = sorted(Path(spec).glob("*.csv"))
    elif glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec))
    else:
        files = [Path(spec)]
    if not files:
        raise HikariDataError(f"{spec}: no CSV files found")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise HikariDataError(f"{spec}: file(s) not found: {', '.join(missing)}")
    return files


def read_csvs(spec: str | Path) -> pd.DataFrame:
    """Read and concatenate the CSVs of ``spec``; header whitespace is stripped (CIC headers have it)."""
    frames = []
    for f in expand_csv_paths(spec):
        try:
            df = pd.read_csv(f, low_memory=False)
        except Exception as exc:  # pandas raises several types; name the file
            raise HikariDataError(f"{f}: cannot be read as CSV ({exc})") from exc
        df.columns = [str(c).strip() for c in df.columns]
        if len(df) == 0:
            log.warning("%s: no rows; skipped", f)
            continue
        frames.append(df)
    if not frames:
        raise HikariDataError(f"{spec}: every CSV is empty")
    cols = list(frames[0].columns)
    for f_df in frames[1:]:
        if list(f_df.columns) != cols:
            raise HikariDataError(f"{spec}: CSV files have different columns; they cannot be stacked")
    return pd.concat(frames, ignore_index=True)


def detect_label_column(df: pd.DataFrame, source: str = "") -> str:
    """The label column: the first of ``LABEL_CANDIDATES`` present (case-insensitive).

    HIKARI-2021 has both ``traffic_category`` (string) and ``Label`` (0/1): ``Label`` wins.
    """
    by_norm = {re.sub(r"\s+", "_", str(c).strip().lower()): c for c in df.columns}
    for cand in LABEL_CANDIDATES:
        if cand in by_norm:
            return by_norm[cand]
    raise HikariDataError(f"{source}: no label column found (looked for {', '.join(LABEL_CANDIDATES)}); "
                          f"columns are {list(df.columns)[:12]}...")


def to_binary(values: pd.Series | np.ndarray, source: str = "") -> np.ndarray:
    """Binary attack indicator: numeric/bool labels -> (value != 0); strings -> not a benign alias.

    Missing labels are an error (never silently benign).
    """
    s = pd.Series(values)
    if s.isna().any():
        raise HikariDataError(f"{source}: {int(s.isna().sum())} rows have no label")
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return (s.to_numpy() != 0).astype(np.int8)
    norm = s.astype(str).str.strip().str.lower()
    return (~norm.isin(BENIGN_ALIASES)).to_numpy().astype(np.int8)


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", str(name).lower()) if t]


def id_like_reason(name: str, id_tokens=DEFAULT_ID_TOKENS, id_names=DEFAULT_ID_NAMES) -> str | None:
    """Why a column name is ID-like (a token or the whole compact name matches), else None."""
    compact = "".join(_tokens(name))
    if compact in set(id_names):
        return f"id name '{compact}'"
    hit = [t for t in _tokens(name) if t in set(id_tokens)]
    return f"id token '{hit[0]}'" if hit else None


def select_numeric_features(df: pd.DataFrame, label_column: str, id_tokens=DEFAULT_ID_TOKENS,
                            id_names=DEFAULT_ID_NAMES, drop_columns=()) -> tuple[pd.DataFrame, dict[str, str]]:
    """Numeric, non-ID columns as float64 (+-Inf -> NaN). Returns the table and {dropped: reason}."""
    dropped: dict[str, str] = {label_column: "label"}
    keep = []
    for c in df.columns:
        if c == label_column:
            continue
        if c in set(drop_columns):
            dropped[c] = "configured drop"
            continue
        reason = id_like_reason(c, id_tokens, id_names)
        if reason:
            dropped[c] = reason
            continue
        col = df[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            dropped[c] = f"non-numeric ({col.dtype})"
            continue
        keep.append(c)
    if not keep:
        raise HikariDataError("no numeric feature columns left after dropping ID-like and non-numeric columns")
    X = df[keep].astype(np.float64).replace([np.inf, -np.inf], np.nan)
    return X, dropped


def load_flow_table(source: dict, id_tokens=DEFAULT_ID_TOKENS, id_names=DEFAULT_ID_NAMES,
                    drop_columns=()) -> FlowTable:
    """Load one configured source: ``{"csv": file|folder|glob}`` or ``{"store": store folder}``."""
    if "csv" in source:
        spec = str(source["csv"])
        df = read_csvs(spec)
        label_column = source.get("label_column") or detect_label_column(df, spec)
        if label_column not in df.columns:
            raise HikariDataError(f"{spec}: configured label column '{label_column}' is absent")
        y = to_binary(df[label_column], spec)
        labels = df[label_column].astype(str).str.strip().to_numpy()
        # HIKARI's label is 0/1; its traffic_category names the class: use it for per-class reporting.
        cat = next((c for c in df.columns if c.lower() == "traffic_category"), None)
        if cat is not None and cat != label_column:
            labels = df[cat].astype(str).to_numpy()
        X, dropped = select_numeric_features(df, label_column, id_tokens, id_names, drop_columns)
    elif "store" in source:
        from nidsflow.store import UNMATCHED, Store

        spec = str(source["store"])
        store = Store(spec)
        flows = store.flows
        feats = store.flow_features
        keep = (flows["label"] != UNMATCHED).to_numpy()
        if (~keep).any():
            log.warning("%s: %d UNMATCHED flows (no label) skipped", spec, int((~keep).sum()))
        y = flows["is_attack"].to_numpy()[keep].astype(np.int8)
        labels = flows["label"].astype(str).to_numpy()[keep]
        label_column = "is_attack"
        X, dropped = select_numeric_features(feats.reset_index(drop=True)[keep].reset_index(drop=True), "__none__",
                                             id_tokens, id_names, drop_columns)
        dropped.pop("__none__", None)
    else:
        raise HikariDataError(f"hikari dataset source {source!r} needs a 'csv' or a 'store' key")
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_neg == 0 or n_pos == 0:
        raise HikariDataError(f"{spec}: needs both normal and attack rows (normal {n_neg}, attack {n_pos})")
    log.info("%s: %d rows (%d normal, %d attack), label column '%s', %d numeric features, %d columns dropped",
             spec, len(y), n_neg, n_pos, label_column, X.shape[1], len(dropped))
    for c, why in dropped.items():
        log.info("  dropped column %r: %s", c, why)
    return FlowTable(X.reset_index(drop=True), y, labels, label_column, dropped, spec)


@dataclass
class Imputer:
    """+-Inf -> NaN -> median, then constant columns removed; fitted on training rows only."""

    medians: np.ndarray
    keep: np.ndarray              # bool mask over the input columns
    names: list[str]

    @classmethod
    def fit(cls, X: pd.DataFrame) -> Imputer:
        arr = X.to_numpy(np.float64)
        med = np.nanmedian(np.where(np.isfinite(arr), arr, np.nan), axis=0) if len(arr) else np.zeros(arr.shape[1])
        med = np.where(np.isfinite(med), med, 0.0)           # all-NaN column -> 0 (then constant)
        filled = np.where(np.isfinite(arr), arr, med)
        keep = filled.max(axis=0) > filled.min(axis=0)
        if not keep.any():
            raise HikariDataError("every feature is constant on the training split")
        names = [n for n, k in zip(X.columns, keep) if k]
        const = [n for n, k in zip(X.columns, keep) if not k]
        if const:
            log.info("dropped %d constant columns on the training split: %s", len(const), const)
        return cls(med, keep, names)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        arr = X.to_numpy(np.float64)
        n_bad = int((~np.isfinite(arr)).sum())
        if n_bad:
            log.info("imputed %d non-finite values with training medians", n_bad)
        arr = np.where(np.isfinite(arr), arr, self.medians)
        return arr[:, self.keep].astype(np.float32)
