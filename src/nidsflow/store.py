"""The flow store: one directory per dataset, row-aligned by ``flow_id = arange(N)``.

Layout::

    store/
      flows.parquet          flow_id, 5-tuple, times, label, attack_class, is_attack, source_file
      flow_features.parquet  flow_id + CICFlowMeter-style statistics (float64)
      context_features.parquet  (extract.context only) flow_id + Kitsune context at the first/last packet
      packets/
        manifest.json        T, channel names, shards [{file, lengths, first_flow_id, n_flows}]
        shard_0000.npy       float32 [n, T, C] channels (memory-mappable), zero padded
        shard_0000.len.npy   int32   [n] true packet count of each flow (may exceed T)

A store built from a flow table alone (no captures) has a manifest with no shards:
``Store.has_packets`` is then False and only flow-level models run on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: Per-packet channels, in array order. Continuous first, then binary.
CHANNELS: tuple[str, ...] = ("size", "iat", "win", "dir", "syn", "fin", "rst", "psh", "ack")
CONTINUOUS_CHANNELS: tuple[str, ...] = CHANNELS[:3]
BINARY_CHANNELS: tuple[str, ...] = CHANNELS[3:]

#: Columns every flows.parquet carries.
FLOW_COLUMNS: tuple[str, ...] = (
    "flow_id", "src_ip", "src_port", "dst_ip", "dst_port", "protocol",
    "first_ts", "last_ts", "n_packets", "label", "attack_class", "is_attack", "source_file",
)

#: Label given to a flow that matched no row of the label table (never silently benign).
UNMATCHED = "UNMATCHED"
BENIGN = "BENIGN"

MANIFEST = "manifest.json"
#: Optional table (``extract.context``): host-level context of each flow at its first and last packet.
CONTEXT_FILE = "context_features.parquet"
#: Parquet options of the store's tables as extraction writes them: dictionaries only for the few-valued text
#: columns (on float features they cost 2x the write time, 4x on the context's 270 columns, for no smaller file).
STORE_PARQUET = {"flows.parquet": {"use_dictionary": ["source_file", "label", "attack_class"]},
                 "flow_features.parquet": {"use_dictionary": False}, CONTEXT_FILE: {"use_dictionary": False}}


class StoreError(ValueError):
    """A store on disk is missing, inconsistent or unreadable."""


@dataclass(frozen=True)
class Shard:
    file: str
    lengths_file: str
    first_flow_id: int
    n_flows: int


class Store:
    """Read access to a flow store; packet shards are memory-mapped, never loaded whole."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "flows.parquet").exists():
            raise StoreError(f"{self.root}: not a flow store (no flows.parquet); run the extract rule first")
        manifest_path = self.root / "packets" / MANIFEST
        if not manifest_path.exists():
            raise StoreError(f"{manifest_path}: missing packet manifest; the store was not written completely")
        self.manifest = json.loads(manifest_path.read_text())
        self.T = int(self.manifest["T"])
        self.channels = tuple(self.manifest["channels"])
        self.shards = [Shard(**s) for s in self.manifest["shards"]]
        self._flows: pd.DataFrame | None = None
        self._features: pd.DataFrame | None = None
        self._maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def flows(self) -> pd.DataFrame:
        if self._flows is None:
            self._flows = pd.read_parquet(self.root / "flows.parquet")
            if not np.array_equal(self._flows["flow_id"].to_numpy(), np.arange(len(self._flows))):
                raise StoreError(f"{self.root}/flows.parquet: flow_id is not arange(N)")
        return self._flows

    @property
    def flow_features(self) -> pd.DataFrame:
        """Flow statistics indexed by flow_id (the flow_id column removed)."""
        if self._features is None:
            df = pd.read_parquet(self.root / "flow_features.parquet")
            if len(df) != len(self.flows):
                raise StoreError(
                    f"{self.root}/flow_features.parquet has {len(df)} rows, flows.parquet {len(self.flows)}; "
                    "regenerate the features for this store")
            self._features = df.set_index("flow_id")
        return self._features

    def read_flows(self, columns=None, rows=None) -> pd.DataFrame:
        """Chosen columns (None: all) of the chosen flows (flow_ids, None: all) of flows.parquet, reading
        only those columns and the row groups that hold the rows; index = flow_id of each row."""
        return read_rows(self.root / "flows.parquet", columns, rows)

    def read_features(self, columns=None, rows=None) -> pd.DataFrame:
        """Like :meth:`read_flows` for flow_features.parquet (index = flow_id, the column itself left out)."""
        return read_rows(self.root / "flow_features.parquet", columns, rows)

    @property
    def n_flows(self) -> int:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(self.root / "flows.parquet").metadata.num_rows)

    @property
    def has_packets(self) -> bool:
        return bool(self.shards)

    @property
    def has_context(self) -> bool:
        """True when extraction recorded the host-level context (``extract.context``)."""
        return "context" in self.manifest and (self.root / CONTEXT_FILE).exists()

    def read_context(self, columns=None, rows=None) -> pd.DataFrame:
        """Like :meth:`read_flows` for context_features.parquet (``first_*`` / ``last_*`` columns)."""
        if not self.has_context:
            raise StoreError(f"{self.root}: no host-level context in this store; extract it with extract.context: true")
        return read_rows(self.root / CONTEXT_FILE, columns, rows)

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self._maps:
            s = self.shards[k]
            x = np.load(self.root / "packets" / s.file, mmap_mode="r")
            n = np.load(self.root / "packets" / s.lengths_file, mmap_mode="r")
            self._maps[k] = (x, n)
        return self._maps[k]

    def packets(self, flow_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Channels float32 [n, T, C] and true lengths int32 [n] of the given flows, in the given order."""
        if not self.has_packets:
            raise StoreError(f"{self.root}: this store has no packet sequences (built from a flow table)")
        flow_ids = np.asarray(flow_ids, dtype=np.int64)
        starts = np.array([s.first_flow_id for s in self.shards], dtype=np.int64)
        which = np.searchsorted(starts, flow_ids, side="right") - 1
        x = np.zeros((len(flow_ids), self.T, len(self.channels)), dtype=np.float32)
        n = np.zeros(len(flow_ids), dtype=np.int32)
        for k in np.unique(which):
            sel = np.nonzero(which == k)[0]
            xs, ns = self._shard(int(k))
            local = flow_ids[sel] - self.shards[k].first_flow_id
            if local.min() < 0 or local.max() >= self.shards[k].n_flows:
                raise StoreError(f"{self.root}: flow_id out of range for shard {self.shards[k].file}")
            x[sel] = xs[local]
            n[sel] = ns[local]
        return x, n


class StoreWriter:
    """Writes a store shard by shard, so a capture larger than RAM never has to be held at once."""

    def __init__(self, root: str | Path, T: int):
        self.root = Path(root)
        (self.root / "packets").mkdir(parents=True, exist_ok=True)
        self.T = T
        self.shards: list[Shard] = []
        self.n_flows = 0

    def add_shard(self, channels: np.ndarray, lengths: np.ndarray) -> None:
        channels = np.ascontiguousarray(channels, dtype=np.float32)
        lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        if channels.ndim != 3 or channels.shape[1:] != (self.T, len(CHANNELS)) or len(lengths) != len(channels):
            raise StoreError(f"shard of shape {channels.shape} / {lengths.shape} does not fit T={self.T}, C={len(CHANNELS)}")
        k = len(self.shards)
        name = f"shard_{k:04d}.npy"
        np.save(self.root / "packets" / name, channels)
        np.save(self.root / "packets" / f"shard_{k:04d}.len.npy", lengths)
        self.shards.append(Shard(name, f"shard_{k:04d}.len.npy", self.n_flows, len(channels)))
        self.n_flows += len(channels)

    def link_shard(self, channels_file: str | Path, lengths_file: str | Path, n_flows: int) -> None:
        """Add an already written shard (a part's) as the next one: hard-linked when the file system
        allows it (no copy, no memory), else copied in blocks."""
        import os
        import shutil

        k = len(self.shards)
        name, lname = f"shard_{k:04d}.npy", f"shard_{k:04d}.len.npy"
        for src, dst in ((channels_file, name), (lengths_file, lname)):
            dst = self.root / "packets" / dst
            if dst.exists():
                dst.unlink()
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        x = np.load(self.root / "packets" / name, mmap_mode="r")
        if x.shape != (n_flows, self.T, len(CHANNELS)):
            raise StoreError(f"{channels_file}: shard of shape {x.shape}, expected ({n_flows}, {self.T}, {len(CHANNELS)})")
        self.shards.append(Shard(name, lname, self.n_flows, int(n_flows)))
        self.n_flows += int(n_flows)

    def write_manifest(self, n: int, has_packets: bool = True, context: dict | None = None) -> None:
        """The manifest, written last (a store without one is not taken as done); ``context`` describes
        the store's context_features.parquet when it has one."""
        if has_packets and self.n_flows != n:
            raise StoreError(f"packet shards hold {self.n_flows} flows but the flows table has {n}")
        manifest = {"T": self.T, "channels": list(CHANNELS), "n_flows": n,
                    "shards": [s.__dict__ for s in self.shards] if has_packets else []}
        if context is not None:
            manifest["context"] = context
        (self.root / "packets" / MANIFEST).write_text(json.dumps(manifest, indent=1))

    def finish(self, flows: pd.DataFrame, flow_features: pd.DataFrame, has_packets: bool = True) -> None:
        """Write flows/flow_features (row-aligned) and the manifest last, so a partial store is never taken as done."""
        self.finish_parts(flows, [flow_features], has_packets)

    def finish_parts(self, flows: pd.DataFrame, feature_parts, has_packets: bool = True) -> None:
        """Like :meth:`finish`, but flow_features comes as an iterable of row blocks (in flow order),
        written to the parquet file block by block so the whole feature table is never in memory."""
        import pyarrow as pa

        missing = [c for c in FLOW_COLUMNS if c not in flows.columns]
        if missing:
            raise StoreError(f"flows table lacks columns {missing}")
        n = len(flows)
        if has_packets and self.n_flows != n:
            raise StoreError(f"packet shards hold {self.n_flows} flows but the flows table has {n}")
        flows = flows.copy()
        flows["flow_id"] = np.arange(n, dtype=np.int64)

        def numbered():
            start = 0
            for part in feature_parts:
                part = part.reset_index(drop=True).drop(columns=["flow_id"], errors="ignore")
                part.insert(0, "flow_id", np.arange(start, start + len(part), dtype=np.int64))
                start += len(part)
                yield pa.Table.from_pandas(part, preserve_index=False)

        written = write_parquet_tables(self.root / "flow_features.parquet", numbered())
        if written != n:
            raise StoreError(f"flow_features has {written} rows, flows {n}")
        flows.to_parquet(self.root / "flows.parquet", index=False)
        self.write_manifest(n, has_packets)


def write_parquet_tables(path: str | Path, tables, **options) -> int:
    """Write arrow ``tables`` (one schema) one after the other into the parquet file ``path``, so only one
    of them is in memory at a time; returns the number of rows written (no file when there is no table).
    ``options`` go to ``pyarrow.parquet.ParquetWriter``."""
    import pyarrow.parquet as pq

    writer, written = None, 0
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, **options)
            writer.write_table(table)
            written += len(table)
    finally:
        if writer is not None:
            writer.close()
    return written


def read_rows(path: str | Path, columns=None, rows=None) -> pd.DataFrame:
    """Column- and row-pruned read of a store table (rows = flow_ids = row positions, any order, may repeat).

    Only the requested columns are decoded, and only the row groups holding a requested row are read,
    so a loader of 10 000 flows out of 50 M reads a few row groups, not the table. The result is in the
    order of ``rows`` and indexed by flow_id.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: missing; run the extract rule first")
    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    cols = [c for c in names if c != "flow_id"] if columns is None else list(columns)
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise StoreError(f"{path}: no column(s) {unknown}; it has {names}")
    cols = [c for c in cols if c != "flow_id"]
    n = f.metadata.num_rows
    if rows is None:
        df = f.read(columns=cols).to_pandas()
        df.index = pd.RangeIndex(n, name="flow_id")
        return df
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise StoreError(f"{path}: flow_id out of range [0, {n}) in the rows asked for")
    sizes = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1) if len(rows) else np.zeros(0, np.int64)
    import pyarrow as pa

    if len(groups):
        table = f.read_row_groups([int(g) for g in groups], columns=cols)
    else:
        table = pa.table({c: pa.array([], type=f.schema_arrow.field(c).type) for c in cols})
    # position of each wanted row inside the concatenation of the groups read
    local_start = np.full(len(starts), -1, np.int64)
    local_start[groups] = np.concatenate([[0], np.cumsum([sizes[g] for g in groups])[:-1]]).astype(np.int64) \
        if len(groups) else np.zeros(0, np.int64)
    g_of = np.searchsorted(starts, rows, side="right") - 1
    df = table.take(pa.array(local_start[g_of] + rows - starts[g_of])).to_pandas()
    df.index = pd.Index(rows, name="flow_id")
    return df


def open_store(root: str | Path) -> Store:
    return Store(root)
