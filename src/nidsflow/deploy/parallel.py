"""Score flows in worker processes: ``nidsflow watch --workers N`` (:class:`ScoringPool`).

Nearly all of the watch's CPU time is the JANUS forward passes (10 per flow with the demo settings), on
small matrices where a second torch thread buys little. N worker processes with one torch thread each
(``threads``) use N cores instead; each loads the model once (the pool's initializer), with the deployed
``janus:`` settings.

**Identical scores.** The work unit is one *score batch* of :meth:`janus.score.JanusScorer.score`: the
flows of one ``Detector.score`` call are ordered by packet count (stable) and cut into
``score_batch_size`` batches by the in-process scorer's own rule (:func:`janus.score.score_batches`); a worker scores
one such batch (its rows are already length-ordered, so its scorer keeps them as one batch, cut after the
same longest flow). The corruption draws are seeded per flow by (score_seed, flow id), so every flow
sees the same draws, the same batch and the same kernels (one thread) as in one process with one torch
thread: the scores and the DFM cells of the explanation are bit-identical (tests/test_watch.py checks
it). The parent normalises the flows, merges the batches back in flow order and computes d^2, the alert
flags and the explanations itself.

Workers ignore SIGINT / SIGTERM: the watch (the parent) decides when to stop, and shuts the pool down.
They are started with the ``spawn`` method (a fork of a process whose torch thread pools already ran is
not safe). A worker dies with its parent: a watchdog thread ends it within ``PARENT_CHECK_S`` once the
parent is gone (kill -9, out of memory: the worker is then re-parented and its parent pid changes), so no
worker outlives the watch holding a copy of the model.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

_SCORER = None  # the worker's ExplainingScorer (set by _init_worker)
#: Seconds between a worker's checks that its parent is alive.
PARENT_CHECK_S = 0.5


def _die_with_parent(parent_pid: int) -> None:
    """A daemon thread ending this process (``os._exit``) as soon as ``parent_pid`` is no longer its parent."""
    import os
    import threading
    import time

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="nidsflow-parent-watchdog", daemon=True).start()


def _init_worker(model_path: str, janus_cfg: dict, device: str, threads: int, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    torch.set_num_threads(int(threads))
    from nidsflow.deploy.explain import ExplainingScorer
    from nidsflow.janus.score import scorer_for

    # the parent logs the counts of forced / packetless flows, summed over the batches
    logging.getLogger("nidsflow.janus.score").setLevel(logging.ERROR)
    global _SCORER
    scorer, _, _ = scorer_for(model_path, janus_cfg, device, progress=False)
    _SCORER = ExplainingScorer.from_scorer(scorer)


def _score_batch(flow: np.ndarray, pkt: np.ndarray, bits: np.ndarray, valid: np.ndarray, flow_ids: np.ndarray,
                 raw: tuple | None = None):
    """(S, pos_nll_sum, pos_count, n_forced, n_no_packet) of one score batch, in the worker; ``raw``: the batch's
    raw (features, packets, lengths), for flow_nll's density of raw values."""
    import torch

    from nidsflow.janus.data import JanusBatch

    b = JanusBatch(torch.from_numpy(flow), torch.from_numpy(pkt), torch.from_numpy(bits), torch.from_numpy(valid))
    S = _SCORER.score(b, flow_ids=flow_ids, raw=raw)
    return S, _SCORER.pos_nll_sum, _SCORER.pos_count, _SCORER.n_forced, _SCORER.n_no_packet


@dataclass
class PendingScores:
    """The batches of one submitted ``Detector.score`` call, in the workers."""

    n: int
    T: int
    n_scores: int
    n_bin: int
    parts: list[tuple[np.ndarray, Future]] = field(default_factory=list)

    def done(self) -> bool:
        return all(f.done() for _, f in self.parts)

    def cancel(self) -> None:
        for _, f in self.parts:
            f.cancel()

    def result(self, should_stop=None, poll_s: float = 0.1):
        """(S [n, k], pos_nll_sum [n, T, 6], pos_count [n, T, 6], n_forced, n_no_packet), rows in the order
        of the submitted flows. ``should_stop()`` is asked every ``poll_s`` while waiting: when it is true,
        the batches not started are cancelled and None is returned."""
        futs = [f for _, f in self.parts]
        while True:
            done, todo = wait(futs, timeout=poll_s, return_when=FIRST_EXCEPTION)
            if not todo or any(f.exception() is not None for f in done if not f.cancelled()):
                break
            if should_stop is not None and should_stop():
                self.cancel()
                return None
        S = np.full((self.n, self.n_scores), np.nan)
        pos_sum = np.zeros((self.n, self.T, self.n_bin))
        pos_cnt = np.zeros((self.n, self.T, self.n_bin))
        forced = no_packet = 0
        for rows, f in self.parts:
            s, ps, pc, nf, nn = f.result()  # re-raises a worker's exception
            S[rows], pos_sum[rows], pos_cnt[rows] = s, ps, pc
            forced, no_packet = forced + nf, no_packet + nn
        return S, pos_sum, pos_cnt, forced, no_packet


class ScoringPool:
    """``workers`` processes, each with the detector's model (``threads`` torch threads), scoring batches."""

    def __init__(self, detector, workers: int, threads: int = 1):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if threads < 1:
            raise ValueError(f"threads per worker must be >= 1, got {threads}")
        self.workers, self.threads = int(workers), int(threads)
        scorer = detector.scorer
        self.batch_size = int(scorer.s.score_batch_size)
        self.score_names = scorer.score_names
        self.disc_head = bool(scorer.model.cfg.disc_head)
        self._ex = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(str(detector.model_path), dict(detector.janus_cfg), str(scorer.device), self.threads,
                      os.getpid()))
        log.info("scoring in %d worker processes (%d torch thread(s) each)", self.workers, self.threads)

    def warm_up(self) -> None:
        """Start every worker and load its model now (the pool starts them on demand otherwise)."""
        import time

        futs = [self._ex.submit(time.sleep, 0.2) for _ in range(self.workers)]
        for f in futs:
            f.result()

    def submit(self, data, flow_ids: np.ndarray, raw: tuple | None = None) -> PendingScores:
        """Queue the score batches of ``data`` (a JanusBatch, as ``Detector.normalise`` makes it); ``raw`` = the
        same flows' (features, packets, lengths), sent along only when the scores need them (flow_nll)."""
        from nidsflow.janus.data import N_BIN
        from nidsflow.janus.score import score_batches

        flow_ids = np.asarray(flow_ids, dtype=np.int64)
        if len(flow_ids) != len(data):
            raise ValueError(f"{len(flow_ids)} flow ids for {len(data)} flows")
        flow, pkt, bits, valid = (t.numpy() for t in (data.flow, data.pkt, data.bits, data.valid))
        pend = PendingScores(len(data), valid.shape[1], len(self.score_names), N_BIN)
        for rows in (idx.numpy() for idx in score_batches(data, self.batch_size)):
            part = None if raw is None else (None if raw[0] is None else raw[0].iloc[rows].reset_index(drop=True),
                                             None if raw[1] is None else raw[1][rows],
                                             None if raw[2] is None else np.asarray(raw[2])[rows])
            pend.parts.append((rows, self._ex.submit(_score_batch, flow[rows], pkt[rows], bits[rows], valid[rows],
                                                     flow_ids[rows], part)))
        return pend

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
