"""Why a flow is alerted: the share of each score axis in d^2, and the packets the DFM head found least likely.

**Score axes.** For the Mahalanobis aggregators (A1-A4), with location mu, precision P = Sigma^-1 and
centred score z = s - mu,

    d^2 = z^T P z = sum_i z_i (P z)_i,      contribution_i = z_i (P z)_i,

an exact additive decomposition of d^2 over the used axes (a contribution can be negative when
axes are correlated: a large z_i that its correlated partners "explain" lowers d^2). For A7 (mean of
z-values) contribution_i = z_i / k; for A5/A6 (one score) the one axis carries the whole score. For the
length-aware A1L the same decomposition holds on the referenced scores r = reference(s, n_packets) about
the bands' medians: contribution_i = r_i (P r)_i. Axes the aggregator does not use (NaN for variants
without a head) get NaN.

**DFM positions.** ``disc_nll_total`` of ``nidsflow.janus.score`` is sum_{t,i,c corrupted} NLL /
#{corrupted}. :class:`ExplainingScorer` records, per flow, packet position i and binary channel c,
the NLL summed over the corruption times S_ic and the count of corrupted draws C_ic, so

    contribution_ic = S_ic / sum_{j,d} C_jd   sums exactly to disc_nll_total,
    nll_ic          = S_ic / C_ic             the mean -log p(true bit) at (i, c).

It recomputes nothing: it records what ``JanusScorer.disc_positions`` returns for each batch (the
per-position NLL and corruption mask that ``disc_nll`` averages), so the explanation belongs to the
very draws that gave the score.
"""

from __future__ import annotations

import numpy as np

from nidsflow.evaluate.aggregators import Aggregator, MeanZ, _Identity, _LengthReferenced, _Mahalanobis, _SingleScore
from nidsflow.janus.data import JanusBatch
from nidsflow.janus.score import JanusScorer
from nidsflow.store import BINARY_CHANNELS


def axis_contributions(agg: Aggregator, S: np.ndarray, score_names, n_packets=None) -> np.ndarray:
    """[n, len(score_names)] contribution of each axis to the aggregate score (NaN for unused axes);
    ``n_packets``: each row's packet count, for the length-aware aggregators.

    Rows whose used scores are not all finite (aggregate +inf) get NaN contributions.
    """
    names = list(score_names)
    idx = [names.index(c) for c in agg.columns]
    X = np.asarray(S, dtype=np.float64)[:, idx]
    out = np.full((len(X), len(names)), np.nan)
    ok = np.all(np.isfinite(X), axis=1)
    Xo = X[ok]
    if isinstance(agg, _LengthReferenced):  # the inner aggregator's decomposition on the referenced scores
        Xo = agg.referenced(Xo, agg._lengths(n_packets, len(X))[ok])
        agg = agg.inner
    if isinstance(agg, _Mahalanobis):
        z = Xo - agg.location_
        c = z * (z @ agg.precision_.T)       # z_i (P z)_i
    elif isinstance(agg, MeanZ):
        c = agg.z(Xo) / len(idx)
    elif isinstance(agg, _SingleScore):
        c = (Xo - agg.mean_) / agg.std_
    elif isinstance(agg, _Identity):
        c = Xo
    else:
        raise TypeError(f"no decomposition for aggregator {agg.name} ({type(agg).__name__})")
    sub = out[ok]
    sub[:, idx] = c
    out[ok] = sub
    return out


class _RecordingBatch(JanusBatch):
    """A JanusBatch that remembers the rows of its last ``index`` call (the scorer's current batch)."""

    def index(self, idx) -> JanusBatch:
        self.last_rows = np.asarray(idx)
        return super().index(idx)


class ExplainingScorer(JanusScorer):
    """A JanusScorer whose ``score`` also fills ``pos_nll_sum`` / ``pos_count`` [n, T, 6] (see module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rec: _RecordingBatch | None = None
        self.pos_nll_sum: np.ndarray | None = None
        self.pos_count: np.ndarray | None = None

    @classmethod
    def from_scorer(cls, s: JanusScorer) -> "ExplainingScorer":
        return cls(s.model, s.s, s.device, s.dpath.source, s.dpath.kappa_power, s.progress,
                   normaliser=s.normaliser, length_model=s.length_model)

    def score(self, data: JanusBatch, desc: str = "janus scoring", flow_ids: np.ndarray | None = None,
              raw: tuple | None = None) -> np.ndarray:
        n, T = len(data), data.valid.shape[1]
        self.pos_nll_sum = np.zeros((n, T, len(BINARY_CHANNELS)), np.float64)
        self.pos_count = np.zeros((n, T, len(BINARY_CHANNELS)), np.float64)
        self._rec = _RecordingBatch(data.flow, data.pkt, data.bits, data.valid)
        self._rec.last_rows = None
        try:
            return super().score(self._rec, desc, flow_ids, raw)
        finally:
            self._rec = None

    def disc_positions(self, b: JanusBatch, flow_ids: np.ndarray, batch_index: int = 0):
        nll, w = super().disc_positions(b, flow_ids, batch_index)
        if self._rec is not None and self._rec.last_rows is not None:
            rows, L = self._rec.last_rows, b.valid.shape[1]
            self.pos_nll_sum[rows, :L] = (nll * w).sum(0).cpu().numpy()
            self.pos_count[rows, :L] = w.sum(0).cpu().numpy()
        return nll, w

    def position_contributions(self) -> np.ndarray:
        """[n, T, 6] contribution of each (packet, channel) to disc_nll_total (rows sum to it)."""
        total = self.pos_count.sum(axis=(1, 2))
        return self.pos_nll_sum / np.maximum(total, 1.0)[:, None, None]


def top_positions(scorer: ExplainingScorer, rows: np.ndarray | None = None, k: int = 3) -> list[list[dict]]:
    """Per flow (``rows`` of the last ``score`` call; default all) the ``k`` (packet, channel) cells with the
    largest contribution to disc_nll_total: ``packet`` (1 = the flow's first packet), ``channel``,
    ``nll`` (mean -log p of the true bit there) and ``contribution``. Empty without a DFM head."""
    if scorer.pos_count is None or not scorer.model.cfg.disc_head:
        n = len(rows) if rows is not None else 0
        return [[] for _ in range(n)]
    return top_cells(scorer.pos_nll_sum, scorer.pos_count, rows, k)


def top_cells(pos_nll_sum: np.ndarray, pos_count: np.ndarray, rows: np.ndarray | None = None,
              k: int = 3) -> list[list[dict]]:
    """:func:`top_positions` from the recorded arrays (``pos_nll_sum`` / ``pos_count`` [n, T, 6] of
    :class:`ExplainingScorer`, e.g. sent back by a scoring worker of :mod:`.parallel`)."""
    total = pos_count.sum(axis=(1, 2))
    contrib = pos_nll_sum / np.maximum(total, 1.0)[:, None, None]  # = ExplainingScorer.position_contributions
    rows = np.arange(len(contrib)) if rows is None else np.asarray(rows)
    out = []
    for r in rows:
        c, cnt, s = contrib[r].ravel(), pos_count[r].ravel(), pos_nll_sum[r].ravel()
        cand = np.nonzero(cnt > 0)[0]
        best = cand[np.argsort(-c[cand], kind="stable")[:k]]
        out.append([{"packet": int(j // len(BINARY_CHANNELS)) + 1, "channel": BINARY_CHANNELS[j % len(BINARY_CHANNELS)],
                     "nll": float(s[j] / cnt[j]), "contribution": float(c[j])} for j in best])
    return out
