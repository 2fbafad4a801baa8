"""Bidirectional flow assembly from :class:`~nidsflow.capture.pcap.PacketBatch` es, streaming.

A flow is keyed by the canonical 5-tuple {(addr A, port A), (addr B, port B), protocol}, with A the
smaller endpoint, so both directions land in the same flow; the sender of the flow's first packet is
the *forward* direction. The per-packet work runs in numba (:mod:`._flow_kernels`): an
open-addressing hash table maps keys to slots of struct-of-arrays accumulators, so memory is
bounded by the number of flows alive at once, never by the capture size.

A flow ends (rules in this order, checked when its next packet arrives and, for the timeouts, by a
sweep after every batch):

1. **idle timeout**: the packet arrives more than ``idle_timeout_s`` after the flow's last packet
   (the packet opens a new flow);
2. **active timeout**: the packet arrives more than ``active_timeout_s`` after the flow's first
   packet (the packet opens a new flow);
3. **TCP termination** (``tcp_close``, CICFlowMeter-like): a packet with RST ends the flow (the RST
   is part of it); once both directions have sent a FIN, the flow is *closing*: the next packet
   without SYN and without payload (the last ACK) or with RST is added and ends the flow, any other
   packet (a SYN reusing the ports, data) ends the flow and opens a new one; a closing flow that
   sees nothing more ends at the idle sweep (reason ``fin``).
4. end of capture: the flows still alive are ended (reason ``end_of_capture``); flows never span
   two capture files.

Fragments: the reader reports the ports of a first fragment and 0 for the others. A non-first
fragment of TCP/UDP/SCTP (``is_fragment`` with both ports 0) cannot be attributed to its flow
without reassembly, so it is **counted and skipped** (``skipped_nonfirst_fragments``); fragments of
other protocols (ICMP, ...) carry no ports anyway and are folded into their flow.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd

from nidsflow.capture import _flow_kernels as K
from nidsflow.capture.pcap import DEFAULT_BATCH_PACKETS, CaptureError, CaptureReader
from nidsflow.store import CHANNELS

log = logging.getLogger(__name__)

_L4_WITH_PORTS = (6, 17, 132)


@dataclass(frozen=True)
class FlowConfig:
    """Flow meter settings (seconds)."""

    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0
    tcp_close: bool = True
    T: int = 64                       # the schema's extract.T (tests/test_config_schema.py checks they agree)
    activity_timeout_s: float = 5.0   # CICFlowMeter's active/idle threshold
    subflow_gap_s: float = 1.0        # CICFlowMeter's subflow gap
    bulk_gap_s: float = 1.0           # CICFlowMeter's bulk gap
    initial_slots: int = 1 << 14

    def __post_init__(self):
        for name in ("idle_timeout_s", "active_timeout_s", "activity_timeout_s", "subflow_gap_s", "bulk_gap_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"FlowConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if int(self.T) < 1:
            raise ValueError(f"FlowConfig.T must be >= 1, got {self.T!r}")

    @classmethod
    def from_extract_config(cls, cfg: dict) -> "FlowConfig":
        """Build from the ``extract:`` config section (keys idle_timeout_s, active_timeout_s, T, tcp_close, ...)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: cfg[k] for k in names if k in cfg})


@dataclass
class FlowChunk:
    """Finished flows: canonical keys, accumulator rows (``_flow_kernels.STATE_COLUMNS``), channels."""

    keys: np.ndarray      # uint64 [n, 6]
    state: np.ndarray     # float64 [n, N_STATE]
    channels: np.ndarray  # float32 [n, T, 9]
    #: float32 [n, 2, F]: host-level context at the flow's first and last packet (None: context off)
    context: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return (self.state[:, K.FWD_LEN] + self.state[:, K.BWD_LEN]).astype(np.int32)

    def __getitem__(self, idx) -> "FlowChunk":
        """The chosen flows (a slice or index array) as a chunk."""
        return FlowChunk(self.keys[idx], self.state[idx], self.channels[idx],
                         None if self.context is None else self.context[idx])

    @classmethod
    def concat(cls, chunks: list["FlowChunk"], T: int) -> "FlowChunk":
        if not chunks:
            return cls(np.zeros((0, 6), np.uint64), np.zeros((0, K.N_STATE)), np.zeros((0, T, len(CHANNELS)), np.float32))
        ctx = None if chunks[0].context is None else np.concatenate([c.context for c in chunks])
        return cls(np.concatenate([c.keys for c in chunks]), np.concatenate([c.state for c in chunks]),
                   np.concatenate([c.channels for c in chunks]), ctx)

    def frame(self) -> pd.DataFrame:
        """5-tuple (forward orientation), times and counts of each flow."""
        fwd_is_a = self.state[:, K.FWD_IS_A] == 1.0
        a = self.keys[:, 0:2]
        b = self.keys[:, 2:4]
        pa = (self.keys[:, 4] >> np.uint64(16)).astype(np.int32)
        pb = (self.keys[:, 4] & np.uint64(0xFFFF)).astype(np.int32)
        src = np.where(fwd_is_a[:, None], a, b)
        dst = np.where(fwd_is_a[:, None], b, a)
        reasons = np.asarray(K.END_REASONS + ("alive",))
        return pd.DataFrame({
            "src_ip": addresses_to_str(src),
            "src_port": np.where(fwd_is_a, pa, pb),
            "dst_ip": addresses_to_str(dst),
            "dst_port": np.where(fwd_is_a, pb, pa),
            "protocol": self.keys[:, 5].astype(np.int32),
            "first_ts": self.state[:, K.FIRST_TS],
            "last_ts": self.state[:, K.LAST_TS],
            "n_packets": self.lengths.astype(np.int64),
            "end_reason": reasons[self.state[:, K.END_REASON].astype(np.int64)],
        })


def addresses_to_str(words: np.ndarray) -> np.ndarray:
    """uint64 [n, 2] address words (the reader's 16 bytes viewed as two native uint64) -> text;
    IPv4-mapped addresses are written as dotted quads (vectorised), others in IPv6 notation."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    n = len(words)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    raw = words.view(np.uint8).reshape(n, 16)
    v4 = (raw[:, :10] == 0).all(axis=1) & (raw[:, 10] == 255) & (raw[:, 11] == 255)
    if v4.any():
        as_int = raw[v4, 12:].astype(np.uint32)
        as_int = (as_int[:, 0] << 24) | (as_int[:, 1] << 16) | (as_int[:, 2] << 8) | as_int[:, 3]
        uniq, inverse = np.unique(as_int, return_inverse=True)  # format each address once
        text = np.asarray([f"{u >> 24}.{(u >> 16) & 255}.{(u >> 8) & 255}.{u & 255}" for u in uniq.tolist()],
                          dtype=object)
        out[v4] = text[inverse]
    if (~v4).any():
        idx = np.nonzero(~v4)[0]
        uniq, inverse = np.unique(raw[idx], axis=0, return_inverse=True)
        text = np.asarray([str(ipaddress.IPv6Address(bytes(r))) for r in uniq], dtype=object)
        out[idx] = text[inverse.reshape(-1)]
    return out


@dataclass
class MeterStats:
    packets: int = 0
    skipped_nonfirst_fragments: int = 0
    flows: int = 0
    ended_by: dict[str, int] = field(default_factory=dict)
    max_alive_flows: int = 0
    #: packets whose timestamp is earlier than the packet before them (a clock step back, a merged capture):
    #: metered as they come (a flow may get a negative duration), counted and warned about
    ts_backwards: int = 0


class FlowMeter:
    """Streaming bidirectional flow meter: ``add_batch`` returns the flows that ended, ``flush`` the rest."""

    def __init__(self, cfg: FlowConfig | None = None, context=None):
        """``context``: a :class:`~nidsflow.capture.context.ContextTracker` fed every packet; each flow then
        carries the context of its first and its last packet (``FlowChunk.context``)."""
        self.cfg = cfg or FlowConfig()
        cap = int(self.cfg.initial_slots)
        self.T = int(self.cfg.T)
        self.context = context
        self._state = np.zeros((cap, K.N_STATE), np.float64)
        self._keys = np.zeros((cap, 6), np.uint64)
        self._chan = np.zeros((cap, self.T, len(CHANNELS)), np.float32)
        self._ctx = np.zeros((cap, 2, context.n_features if context is not None else 0), np.float32)
        self._table = np.full(_pow2(4 * cap), K.EMPTY, np.int64)
        self._free = np.zeros(cap, np.int64)
        self._out = np.zeros(max(1024, cap), np.int64)
        # n_free, next_fresh_slot, n_out, tombstones, table_used
        self._counters = np.zeros(5, np.int64)
        self.stats = MeterStats()
        self._last_ts = -np.inf
        self._prev_ts = np.nan  # the last packet's timestamp (for MeterStats.ts_backwards)

    # ---- capacity ---------------------------------------------------------------------------
    def _grow_slots(self) -> None:
        cap = self._state.shape[0]
        live = int(self._counters[4])
        if self._counters[1] >= cap and self._counters[0] == 0:
            new = 2 * cap
            self._state = _grow(self._state, new)
            self._keys = _grow(self._keys, new)
            self._chan = _grow(self._chan, new)
            self._ctx = _grow(self._ctx, new)
            self._free = _grow(self._free, new)
        size = self._table.shape[0]
        while (live + 1) * 4 > size:
            size *= 2
        self._table = np.full(size, K.EMPTY, np.int64)
        self._counters[4] = K.table_rebuild(self._table, self._keys, self._state, int(self._counters[1]))
        self._counters[3] = 0

    def _drain(self) -> FlowChunk | None:
        n = int(self._counters[2])
        if n == 0:
            return None
        slots = self._out[:n].copy()
        chunk = FlowChunk(self._keys[slots], self._state[slots], self._chan[slots],  # fancy indexing copies
                          self._ctx[slots] if self.context is not None else None)
        nf = int(self._counters[0])
        self._free[nf:nf + n] = slots
        self._counters[0] = nf + n
        self._counters[2] = 0
        self.stats.flows += n
        for r, c in zip(*np.unique(chunk.state[:, K.END_REASON].astype(np.int64), return_counts=True)):
            name = K.END_REASONS[r]
            self.stats.ended_by[name] = self.stats.ended_by.get(name, 0) + int(c)
        return chunk

    # ---- feeding ----------------------------------------------------------------------------
    def add_batch(self, batch) -> list[FlowChunk]:
        """Add one PacketBatch (time-ordered as in the file); returns the flows that ended."""
        n = len(batch)
        out: list[FlowChunk] = []
        if n == 0:
            return out
        skip = batch.is_fragment & (batch.sport == 0) & (batch.dport == 0) & np.isin(batch.proto, _L4_WITH_PORTS)
        n_skip = int(skip.sum())
        ts = np.asarray(batch.ts)
        self.stats.ts_backwards += int((ts[1:] < ts[:-1]).sum()) + int(ts[0] < self._prev_ts)
        self._prev_ts = float(ts[-1])
        self.stats.skipped_nonfirst_fragments += n_skip
        self.stats.packets += n - n_skip
        s64 = np.ascontiguousarray(batch.src).view(np.uint64).reshape(n, 2)
        d64 = np.ascontiguousarray(batch.dst).view(np.uint64).reshape(n, 2)
        hdr = batch.l4_header_len
        cfg = self.cfg
        # the context sees every IP packet of the link (skipped fragments too): it is host-level traffic
        ctx = (self.context.update(batch, np.float32) if self.context is not None
               else np.zeros((n, 0), np.float32))
        pos = 0
        while True:
            pos, status = K.process_packets(
                pos, batch.ts, s64, d64, batch.sport, batch.dport, batch.proto, batch.ip_len, hdr,
                batch.payload_len, batch.tcp_flags, batch.tcp_win, skip,
                self._state, self._keys, self._chan, self._table, self._free, self._counters, self._out,
                float(cfg.idle_timeout_s), float(cfg.active_timeout_s), bool(cfg.tcp_close),
                float(cfg.activity_timeout_s), float(cfg.subflow_gap_s), float(cfg.bulk_gap_s), ctx, self._ctx)
            if status == K.ST_DONE:
                break
            if status == K.ST_NEED_OUT:
                chunk = self._drain()
                if chunk is not None:
                    out.append(chunk)
            else:
                chunk = self._drain()  # finished slots become free before growing
                if chunk is not None:
                    out.append(chunk)
                self._grow_slots()
        self.stats.max_alive_flows = max(self.stats.max_alive_flows, int(self._counters[4]))
        now = float(batch.ts[-1]) if n else self._last_ts
        self._last_ts = max(self._last_ts, now)
        out += self._expire(self._last_ts, flush_all=False)
        return [c for c in out if len(c)]

    def _expire(self, now: float, flush_all: bool) -> list[FlowChunk]:
        out = []
        while True:
            ok = K.expire(now, self._state, self._keys, self._table, self._counters, self._out,
                          float(self.cfg.idle_timeout_s), float(self.cfg.active_timeout_s), flush_all)
            chunk = self._drain()
            if chunk is not None:
                out.append(chunk)
            if ok:
                return out

    def flush(self) -> list[FlowChunk]:
        """End every flow still alive (end of capture)."""
        return self._expire(self._last_ts, flush_all=True)

    @property
    def clock(self) -> float:
        """Timestamp of the latest packet fed (-inf before any): the time the timeouts are measured at."""
        return self._last_ts

    @property
    def n_alive(self) -> int:
        return int(self._counters[4])

    # ---- persistence (nidsflow.deploy.watch keeps flows open across capture files and restarts) ----
    def snapshot(self) -> dict[str, np.ndarray]:
        """The flows still alive (keys, accumulators, channels) and the meter's clock, as plain arrays; with a
        context tracker, also the alive flows' context (``flow_context``) and the tracker's statistics
        (``context_*``)."""
        live = np.nonzero(self._state[: int(self._counters[1]), K.ALIVE] == 1.0)[0]
        snap = {"keys": self._keys[live], "state": self._state[live], "channels": self._chan[live],
                "last_ts": np.float64(self._last_ts)}
        if self.context is not None:
            snap["flow_context"] = self._ctx[live]
            snap.update(self.context.snapshot())
        return snap

    @classmethod
    def from_snapshot(cls, cfg: FlowConfig | None, snap: dict[str, np.ndarray]) -> "FlowMeter":
        """A meter whose alive flows are those of ``snapshot()``: feeding it the next packets gives the same
        flows (and context) as one meter that never stopped (slot numbers, hence the order of ended flows, may
        differ)."""
        context = None
        if "flow_context" in snap:
            from nidsflow.capture.context import ContextTracker
            context = ContextTracker.from_snapshot(snap)
        meter = cls(cfg, context)
        keys, state, chan = snap["keys"], snap["state"], snap["channels"]
        n = len(keys)
        if chan.shape[1:] != meter._chan.shape[1:]:
            raise ValueError(f"flow meter snapshot has channels {chan.shape[1:]}, the meter {meter._chan.shape[1:]} "
                             "(extract.T changed?)")
        if n > meter._state.shape[0]:
            cap = _pow2(n)
            meter._state, meter._keys = _grow(meter._state, cap), _grow(meter._keys, cap)
            meter._chan, meter._free = _grow(meter._chan, cap), _grow(meter._free, cap)
            meter._ctx = _grow(meter._ctx, cap)
            meter._out = np.zeros(max(1024, cap), np.int64)
        meter._keys[:n], meter._state[:n], meter._chan[:n] = keys, state, chan
        if context is not None:
            meter._ctx[:n] = snap["flow_context"]
        meter._counters[1] = n
        meter._counters[4] = n
        meter._grow_slots()  # sizes the hash table for the live flows and inserts them
        meter._last_ts = float(snap["last_ts"])
        return meter


def _pow2(n: int) -> int:
    return 1 << max(4, int(np.ceil(np.log2(max(n, 16)))))


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    b = np.zeros((n,) + a.shape[1:], a.dtype)
    b[: a.shape[0]] = a
    return b


def meter_capture(path, cfg: FlowConfig | None, extract_cfg: dict | None = None, meter_out: dict | None = None,
                   progress=None) -> Iterator[FlowChunk]:
    """Flows of one capture as chunks (the one path from a capture to flows); reader and meter stats go
    to ``meter_out``. A corrupt record mid-file keeps the flows read before it, then re-raises."""
    extract_cfg = extract_cfg or {}
    reader = CaptureReader(path, batch_packets=int(extract_cfg.get("batch_packets", DEFAULT_BATCH_PACKETS)))
    meter = FlowMeter(cfg, context_tracker(extract_cfg))
    seen = 0
    error = None
    try:
        for batch in reader:
            yield from meter.add_batch(batch)
            if progress is not None:
                progress.update(reader.stats.file_bytes_read - seen)
                seen = reader.stats.file_bytes_read
    except CaptureError as exc:  # a corrupt record mid-file: keep the flows of the part read
        error = exc
    finally:
        if meter.stats.ts_backwards:
            log.warning("%s: %d packets have a timestamp earlier than the packet before them; they are metered as "
                        "they come (a flow may get a negative duration)", path, meter.stats.ts_backwards)
        if meter_out is not None:
            meter_out["reader"] = reader.stats.as_dict()
            meter_out["reader_stats"] = reader.stats
            meter_out["meter"] = meter.stats
    yield from meter.flush()
    if error is not None:
        raise error


def context_tracker(extract_cfg: dict | None):
    """A fresh context tracker when ``extract.context`` is on, else None. In extraction its state starts with
    each capture file, as the flow meter's (flows never span two files); ``watch`` carries both across the
    files of a rotation (:meth:`FlowMeter.snapshot`)."""
    if not (extract_cfg or {}).get("context", False):
        return None
    from nidsflow.capture.context import ContextTracker

    return ContextTracker()


def flows_of_capture(path, cfg: FlowConfig | None = None, batch_packets: int = DEFAULT_BATCH_PACKETS,
                     context: bool = False):
    """All flows of one capture file at once (small files, tests): (FlowChunk, MeterStats, ReadStats)."""
    stats: dict = {}
    cfg = cfg or FlowConfig()
    chunks = list(meter_capture(path, cfg, {"batch_packets": batch_packets, "context": context}, stats))
    return FlowChunk.concat(chunks, cfg.T), stats["meter"], stats["reader_stats"]
