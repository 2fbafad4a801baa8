"""Host-level context of every packet: Kitsune's damped incremental statistics (AfterImage), streaming.

Mirsky et al., NDSS 2018 ("Kitsune: An Ensemble of Autoencoders for Online Network Intrusion Detection",
section IV-B and Table I); feature set and order as the authors' reference code (ymirsky/Kitsune-py,
``netStat.getNetStatHeaders`` with the source-host group enabled, which gives the paper's 115 features).
The equations are in :mod:`._context_kernels`. Per packet and per decay rate lambda (``LAMBDAS``, 1/s):

* ``MI``     source MAC-IP stream, packet sizes: weight, mean, std
* ``H``      source IP stream, packet sizes: weight, mean, std
* ``HH``     channel src IP -> dst IP, packet sizes: weight, mean, std, and against the reverse channel
  radius, magnitude, covariance, correlation (pcc)
* ``HH_jit`` channel src IP -> dst IP, inter-arrival times (s): weight, mean, std
* ``HpHp``   socket src IP:port -> dst IP:port (and protocol), packet sizes: as ``HH``

and two groups that are not Kitsune's, appended after them:

* ``D``      destination IP stream (packets it receives), packet sizes: weight, mean, std
* ``Dnew``   destination IP: the damped share of the packets it receives that open a channel (a sender it
  never received from before in this capture): the damped mean of 1 (new sender) / 0

Kitsune keys every stream by the sender, so thousands of one-packet responses converging on a victim from
as many reflectors look like as many fresh hosts; the victim's received stream shows them (its weight at
lambda = 5 is the damped packet rate into the host).

Feature names are ``{group}_{lambda}_{stat}``; the vector is group-major (all lambdas of MI, then of H, ...),
27 values per lambda, 135 with the five default rates; its first 115 (``KITSUNE_FEATURE_NAMES``) are
Kitsune's.

Differences from the reference code, on purpose: (1) a channel's and a socket's 1-D statistics are those
of the directed channel / socket, as the paper's Table I defines them (the reference keys them by the
source IP and by the source IP:port alone); (2) ``std`` is the standard deviation (the reference's
``allstats_1D`` returns the variance under that name); (3) the reader reports no MAC address, so the MI
stream is keyed by the source IP alone and equals H until it does; (4) sizes are the IP packet lengths
(the reference uses the frame length). Streams are never purged (the reference caps its tables).
"""

from __future__ import annotations

import numpy as np

from nidsflow.capture import _context_kernels as CK
from nidsflow.capture._flow_kernels import EMPTY

#: Decay rates (1/s) of the paper: half-lives 0.2 s, 0.33 s, 1 s, 10 s, 100 s.
LAMBDAS: tuple[float, ...] = (5.0, 3.0, 1.0, 0.1, 0.01)

_GROUPS = (("MI", ("weight", "mean", "std")), ("H", ("weight", "mean", "std")),
           ("HH", ("weight", "mean", "std", "radius", "magnitude", "cov", "pcc")),
           ("HH_jit", ("weight", "mean", "std")),
           ("HpHp", ("weight", "mean", "std", "radius", "magnitude", "cov", "pcc")),
           ("D", ("weight", "mean", "std")), ("Dnew", ("share",)))
_KITSUNE_GROUPS = 5


def feature_names(lambdas=LAMBDAS, kitsune_only: bool = False) -> tuple[str, ...]:
    """Names of the per-packet context vector, in kernel order (group, then lambda, then statistic);
    ``kitsune_only``: Kitsune's 23 per lambda, the vector's first columns."""
    groups = _GROUPS[:_KITSUNE_GROUPS] if kitsune_only else _GROUPS
    return tuple(f"{g}_{lam:g}_{s}" for g, stats in groups for lam in lambdas for s in stats)


FEATURE_NAMES = feature_names()
KITSUNE_FEATURE_NAMES = feature_names(kitsune_only=True)


def _pow2(n: int) -> int:
    return 1 << max(4, int(np.ceil(np.log2(max(n, 16)))))


class ContextTracker:
    """Damped statistics of every stream seen so far; ``update(batch)`` returns each packet's context.

    Feed packets in capture order: the state of a stream carries over from one batch to the next, so
    one call over a whole capture and calls over consecutive pieces of it give the same vectors.
    """

    def __init__(self, lambdas=LAMBDAS, initial_ids: int = 1 << 12):
        self.lambdas = np.asarray(lambdas, dtype=np.float64)
        if self.lambdas.ndim != 1 or len(self.lambdas) == 0 or not (self.lambdas > 0).all():
            raise ValueError(f"context lambdas must be a non-empty list of rates > 0, got {lambdas!r}")
        self.names = feature_names(tuple(self.lambdas.tolist()))
        L = len(self.lambdas)
        # streams (1-D statistics) and pairs of streams (2-D statistics): keys, hash table, state, seen flags
        self._tables = {}
        for kind, width in (("stream", 4), ("pair", 5)):
            cap = _pow2(initial_ids)
            self._tables[kind] = {"keys": np.zeros((cap, 6), np.uint64), "table": np.full(2 * cap, EMPTY, np.int64),
                                  "state": np.zeros((cap, L, width), np.float64), "seen": np.zeros(cap, np.uint8),
                                  "counter": np.zeros(1, np.int64)}
        self._ckeys = np.zeros((1 << 16, 7), np.uint64)  # ids of recent directed 5-tuples
        self._cvals = np.zeros((1 << 16, CK.N_ID_COLS), np.int64)

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def n_streams(self) -> int:
        """Streams and pairs of streams tracked so far."""
        return int(self._tables["stream"]["counter"][0] + self._tables["pair"]["counter"][0])

    @property
    def nbytes(self) -> int:
        """Memory held by the tracker's tables."""
        return int(sum(a.nbytes for t in self._tables.values() for a in t.values())
                   + self._ckeys.nbytes + self._cvals.nbytes)

    def _reserve(self, n_packets: int) -> None:
        for kind, per_packet in (("stream", CK.N_NEW_STREAMS), ("pair", CK.N_NEW_PAIRS)):
            t = self._tables[kind]
            used = int(t["counter"][0])
            need = used + per_packet * n_packets
            if need > t["keys"].shape[0]:
                new = _pow2(need)
                for name in ("keys", "state", "seen"):
                    fresh = np.zeros((new,) + t[name].shape[1:], t[name].dtype)  # zeros: pages mapped lazily
                    fresh[:used] = t[name][:used]
                    t[name] = fresh
            if 2 * need > t["table"].shape[0]:
                t["table"] = np.full(_pow2(2 * need), EMPTY, np.int64)
                CK.rehash(t["table"], t["keys"], used)

    def update_arrays(self, ts, src, dst, sport, dport, proto, size, src_mac=None, dtype=np.float64) -> np.ndarray:
        """Context [n, n_features] of packets given as arrays (src/dst: uint8 [n, 16] addresses); computed in
        float64 and written as ``dtype`` (float32: the same values as float64 output cast, without the copy)."""
        n = len(ts)
        out = np.empty((n, self.n_features), dtype)  # the kernel writes every value of every packet
        if n == 0:
            return out
        s64 = np.ascontiguousarray(src, dtype=np.uint8).view(np.uint64).reshape(n, 2)
        d64 = np.ascontiguousarray(dst, dtype=np.uint8).view(np.uint64).reshape(n, 2)
        mac = np.zeros(n, np.uint64) if src_mac is None else np.asarray(src_mac, np.uint64)
        self._reserve(n)
        ids = np.zeros((n, CK.N_ID_COLS), np.int64)
        st, pa = self._tables["stream"], self._tables["pair"]
        CK.assign_ids(s64, d64, np.asarray(sport), np.asarray(dport), np.asarray(proto), mac,
                      st["table"], st["keys"], st["counter"], pa["table"], pa["keys"], pa["counter"], ids,
                      self._ckeys, self._cvals)
        CK.update_stats(np.asarray(ts, np.float64), np.asarray(size, np.float64), ids, self.lambdas,
                        st["state"], st["seen"], pa["state"], pa["seen"], out)
        return out

    # ---- persistence (nidsflow.deploy.watch carries the context across capture files and restarts) ----
    def snapshot(self, prefix: str = "context_") -> dict[str, np.ndarray]:
        """The statistics of every stream and pair so far, as plain arrays (names start with ``prefix``)."""
        out = {f"{prefix}lambdas": self.lambdas.copy()}
        for kind, t in self._tables.items():
            used = int(t["counter"][0])
            for name in ("keys", "state", "seen"):
                out[f"{prefix}{kind}_{name}"] = t[name][:used].copy()
        return out

    @classmethod
    def from_snapshot(cls, snap: dict[str, np.ndarray], prefix: str = "context_") -> "ContextTracker":
        """A tracker holding the statistics of ``snapshot()``: fed the next packets, it gives the same context
        as one tracker that never stopped (its cache of recent ids starts empty; ids never change)."""
        used = {kind: len(snap[f"{prefix}{kind}_keys"]) for kind in ("stream", "pair")}
        tracker = cls(tuple(np.asarray(snap[f"{prefix}lambdas"], np.float64).tolist()),
                      initial_ids=max(16, max(used.values())))
        for kind, t in tracker._tables.items():
            n = used[kind]
            for name in ("keys", "state", "seen"):
                a = np.asarray(snap[f"{prefix}{kind}_{name}"])
                if a.shape[1:] != t[name].shape[1:] or len(a) != n:
                    raise ValueError(f"context snapshot: {kind}_{name} of shape {a.shape}, expected ({n}, "
                                     f"{', '.join(map(str, t[name].shape[1:]))})")
                if n > t[name].shape[0]:
                    t[name] = np.zeros((_pow2(n),) + t[name].shape[1:], t[name].dtype)
                t[name][:n] = a
            t["counter"][0] = n
            if 2 * n > t["table"].shape[0]:
                t["table"] = np.full(_pow2(2 * n), EMPTY, np.int64)
            CK.rehash(t["table"], t["keys"], n)
        return tracker

    def update(self, batch, dtype=np.float64) -> np.ndarray:
        """Context of every packet of a :class:`~nidsflow.capture.pcap.PacketBatch` (sizes: IP length)."""
        return self.update_arrays(batch.ts, batch.src, batch.dst, batch.sport, batch.dport, batch.proto,
                                  batch.ip_len, dtype=dtype)


def context_columns(names=FEATURE_NAMES) -> list[str]:
    """Columns of ``context_features.parquet``: every context value at the flow's first, then last packet."""
    return [f"first_{c}" for c in names] + [f"last_{c}" for c in names]


def context_frame(ctx: np.ndarray, names=FEATURE_NAMES):
    """float32 [n, 2, F] (a FlowChunk's ``context``) -> the table of ``context_columns`` (float32)."""
    import pandas as pd

    ctx = np.asarray(ctx, np.float32)
    if ctx.ndim != 3 or ctx.shape[1] != 2 or ctx.shape[2] != len(names):
        raise ValueError(f"context of shape {ctx.shape}, expected (n, 2, {len(names)})")
    return pd.DataFrame(ctx.reshape(len(ctx), 2 * len(names)), columns=context_columns(names))
