"""``nidsflow watch DIR``: score the capture files of a directory as they are written, alert as JSON lines.

**Which files, when.** Capture files are the names matching ``--pattern`` (default ``*.pcap*`` and
``*.cap``: tcpdump's ``-w x.pcap -C`` rotation writes ``x.pcap``, ``x.pcap1``, ...; ``-G`` names by
strftime), except hidden names and ``*.tmp`` / ``*.part``. A file is *complete* when another capture
file with a later modification time exists (the rotation has moved on: the writer only ever writes
the newest file) or when it has not been modified for ``--quiet-s`` seconds (the last file of a
rotation, files moved in). Complete files are processed one at a time, oldest modification time first.
A pcap / pcapng file that grows after it was scored (quiet for ``--quiet-s``, then written again) is read
on from the end of its last whole record (the state keeps that offset and a hash of the bytes before it),
never scored twice; one whose earlier bytes changed (a ring buffer reusing the name) is a new file.

**Flows across files.** One flow meter of the extraction library (:class:`capture.flows.FlowMeter`,
the same 5-tuple, idle/active timeouts and FIN/RST rules as ``extract:``) is fed every file in turn
and is *not* flushed between files, so a flow that spans a rotation is one flow; a flow is scored
when the meter ends it (timeouts, FIN/RST). Flows still open after a file stay in the meter (and in
the state file) for the next one. A file whose first packet is older than the meter's clock by more than ``JUMP_BACK_TOLERANCE_S`` (not the
continuation of the previous file) first ends every open flow (``end_of_capture``). ``--flush``
(with ``--once``) ends the flows still open at exit: the capture is over. ``source_files`` of a
flow are the files whose packet time span overlaps [first_ts, last_ts] of the flow.

**Exactly once.** A file's effects are one transaction: its alert and summary lines are appended
and flushed to disk, then the state file (processed files with size and mtime, the open flows of the
meter, the byte lengths of the alert and summary files) is replaced atomically. On start, alert and
summary lines written after the last state (a crash between the two steps) are cut off, so a
restart never reports a file twice nor skips one. SIGINT / SIGTERM stop the watch after the current
file, or abandon it (nothing of it is written; it is processed again on restart) when the stop is seen
while it is being read (between reader batches) or scored (between slices of ``SCORE_SLICE`` flows; a stop
during the last slice finishes the file); a second signal stops at once (the state is still consistent).

**Worker processes.** ``--workers N`` (N > 1) scores in N processes of ``--threads`` (default 1) torch
threads each, each with its own copy of the model (:mod:`.parallel`); this process reads, meters,
normalises, explains and writes. Up to ``FILES_IN_FLIGHT_PER_WORKER * N`` complete files are read ahead,
their score batches queued to the workers, and the files committed one at a time in order, each with the
state as of that file, so the exactly-once rules above hold unchanged; a stop abandons every file not
committed yet (each is processed again on restart). The score batches are those of the in-process scorer
and each flow's corruption draws are its own, so the output is byte-identical to ``--workers 1 --threads 1``.

**Bad files.** A file that cannot be read (not a capture, a corrupt record, no read permission, an I/O
error) is logged as a per-file error (summary line ``status: error``); the flows of the part read before
a corrupt record are kept and scored, as extraction does; the watch goes on. A failed file is recorded like
a scored one: it is tried again only when its size or modification time changes.

Outputs (JSON lines): ``--alerts`` (default DIR/alerts.jsonl) one line per alerted flow (``--all-flows``:
every scored flow): 5-tuple, first/last time, packets, end reason, d2, threshold, alert, source_files,
the 10 scores, the contribution of each score axis to d2 and the DFM's top (packet, channel) cells
(:mod:`.explain`); ``--summary`` (default DIR/summary.jsonl) one line per file.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.scores import JANUS_SCORE_NAMES

log = logging.getLogger(__name__)

DEFAULT_PATTERNS = ("*.pcap*", "*.cap")
_EXCLUDE = ("*.tmp", "*.part", "*.partial")
STATE_FORMAT = "nidsflow-watch-state-1"
#: Flows scored per call of the detector; the stop flag is checked between calls.
SCORE_SLICE = 8192
#: A file starting this much before the meter's clock is not the continuation of the previous one (a small
#: overlap, e.g. buffered packets of two capture processes, is metered like reordering within a file).
JUMP_BACK_TOLERANCE_S = 1.0
#: With worker processes: files read ahead and scored at once, per worker (they are committed in order).
FILES_IN_FLIGHT_PER_WORKER = 2


class WatchError(ValueError):
    """The watch cannot start (bad directory, state file of other settings, ...)."""


class _Abandon(Exception):
    """A stop was requested while a file was in progress: drop the file's effects."""


@dataclass
class _Job:
    """A file (or the final flush) read and metered, its flows scored or being scored, not committed yet."""

    frame: pd.DataFrame              # the finished flows, in their total order
    summary: dict
    t_start: float
    base: int                        # running index of the first flow
    sources: list                    # source_files of each flow
    open_flows: int
    state: dict                      # what the state file holds once this job is committed
    explain: bool | str
    scored: pd.DataFrame | None = None   # in-process scoring: done
    pending: list | None = None          # worker scoring: [(slice, PendingScores)]

    def cancel(self) -> None:
        for _, p in self.pending or ():
            p.cancel()


@dataclass
class WatchSettings:
    quiet_s: float = 5.0
    poll_s: float = 1.0
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    all_flows: bool = False
    #: worker processes scoring the flows (:mod:`.parallel`); 1: in this process
    workers: int = 1
    #: torch threads of each worker process
    worker_threads: int = 1


def _open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (a link planted in the watched directory
    would make the watch append to, overwrite or truncate its target): a link is a :class:`WatchError`."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError:
        if os.path.islink(path):
            raise WatchError(f"{path}: is a symbolic link; refused (the watch never writes or reads its outputs and "
                             "state through links)") from None
        raise


def _refuse_link(path: Path) -> None:
    if os.path.islink(path):
        raise WatchError(f"{path}: is a symbolic link; refused (the watch never writes or reads its outputs and "
                         "state through links)")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    _refuse_link(path)
    if os.path.islink(tmp):  # a link where our temporary file goes: removed (the link, never its target)
        os.unlink(tmp)
    fd = _open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: The lock file of a watched directory (one watch per directory).
LOCK_NAME = ".nidsflow-watch.lock"
_HELD_LOCKS: dict[str, list] = {}  # lock path -> [file object, watchers of this process holding it]


def _acquire_lock(path: Path, directory: Path) -> str:
    """An exclusive ``flock`` on ``path`` for this process (watchers of one process share it); a lock held by
    another process is a :class:`WatchError` naming the directory and that process's pid."""
    import fcntl

    key = os.path.abspath(path)
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key][1] += 1
        return key
    fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT)
    f = os.fdopen(fd, "r+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = f.read().strip() or "?"
        f.close()
        raise WatchError(f"{directory}: already watched by process {other} (lock {path}); stop that watch first "
                         "(two watches of one directory would report every flow twice)") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _HELD_LOCKS[key] = [f, 1]
    return key


def _release_lock(key: str | None) -> None:
    held = _HELD_LOCKS.get(key) if key else None
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD_LOCKS[key]
        held[0].close()  # closing the descriptor releases the flock


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _readable_on(path: Path) -> int | None:
    """For an uncompressed classic pcap or pcapng file (one that can be read on if it grows): the length of
    its header, which a continuation is read with (pcap: the 24-byte file header; pcapng: the blocks before
    the first packet block, i.e. section header and interface descriptions); else None."""
    import struct

    from nidsflow.capture.pcap import PCAP_MAGICS, PCAPNG_SHB

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            if magic in PCAP_MAGICS:
                return 24
            if magic != PCAPNG_SHB:
                return None
            head = magic + f.read(8)
            if len(head) < 12:
                return None
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            pos = 0
            while True:  # SHB, IDBs, ... up to the first packet block (EPB 6, SPB 3, obsolete PB 2)
                f.seek(pos)
                blk = f.read(8)
                if len(blk) < 8:
                    return None
                btype, blen = struct.unpack(order + "II", blk)
                if btype in (2, 3, 6):
                    return pos
                if blen < 12 or blen % 4:
                    return None
                pos += blen
    except OSError:
        return None


def _finite_or_none(x):
    x = float(x)
    return x if np.isfinite(x) else None


class Watcher:
    """Follows one directory with one deployed :class:`.scoring.Detector` (see the module docstring)."""

    def __init__(self, directory: str | Path, detector, alerts: str | Path | None = None,
                 summary: str | Path | None = None, state: str | Path | None = None,
                 settings: WatchSettings | None = None, pool=None):
        from nidsflow.capture.flows import FlowConfig
        from nidsflow.capture.pcap import DEFAULT_BATCH_PACKETS

        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise WatchError(f"{self.dir}: not a directory")
        self.det = detector
        self.alerts = Path(alerts) if alerts else self.dir / "alerts.jsonl"
        self.summary = Path(summary) if summary else self.dir / "summary.jsonl"
        self.state_path = Path(state) if state else self.dir / ".nidsflow-watch-state.npz"
        self.settings = settings or WatchSettings()
        for path in (self.alerts, self.summary, self.state_path):
            _refuse_link(path)
        self.lock_path = self.dir / LOCK_NAME
        self._lock = None
        self._lock = _acquire_lock(self.lock_path, self.dir)
        # the watch's own files are never captures, whatever --pattern says
        own = (self.alerts, self.summary, self.state_path, self.state_path.with_name(self.state_path.name + ".tmp"),
               self.lock_path)
        self.own_names = {p.name for p in own if p.absolute().parent.resolve() == self.dir.resolve()}
        self.flow_cfg = FlowConfig.from_extract_config(detector.extract_cfg)
        self.batch_packets = int(detector.extract_cfg.get("batch_packets", DEFAULT_BATCH_PACKETS))
        self.fingerprint = json.dumps({"extract": detector.extract_cfg, "model": _sha256(detector.model_path),
                                       "aggregator": _sha256(detector.aggregator_path)}, sort_keys=True, default=str)
        self.stop_requested = False
        self._committing: _Job | None = None
        self._load_state()
        # worker processes: ``pool`` (a parallel.ScoringPool, e.g. shared by several watchers) or one of our own
        self.pool, self._own_pool = pool, False
        if self.pool is None and self.settings.workers > 1:
            from nidsflow.deploy.parallel import ScoringPool

            self.pool = ScoringPool(detector, self.settings.workers, self.settings.worker_threads)
            self._own_pool = True

    def close(self) -> None:
        """Stop the worker processes this watcher started (none without ``workers``); release the lock."""
        if getattr(self, "_own_pool", False) and self.pool is not None:
            self.pool.close()
        self.pool, self._own_pool = None, False
        _release_lock(getattr(self, "_lock", None))
        self._lock = None

    def __del__(self):
        try:
            _release_lock(getattr(self, "_lock", None))
        except Exception:  # interpreter shutdown
            pass
        self._lock = None

    def exclude(self, path: str | Path) -> None:
        """Never read ``path`` as a capture (another file of the watch's own, e.g. its --log)."""
        path = Path(path)
        if path.absolute().parent.resolve() == self.dir.resolve():
            self.own_names.add(path.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        from nidsflow.capture.flows import FlowMeter, context_tracker

        if not self.state_path.exists():
            self.files: dict[str, dict] = {}
            self.ranges: list[list] = []           # [name, t0, t1] of files open flows may overlap
            self.n_flows = 0
            self.offsets = {"alerts": 0, "summary": 0}
            self.meter = FlowMeter(self.flow_cfg, context_tracker(self.det.extract_cfg))
        else:
            _refuse_link(self.state_path)
            import zipfile

            try:
                with np.load(self.state_path, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    snap = {k: z[k] for k in z.files if k != "meta"}  # the meter's (and context's) arrays
                    missing = [k for k in ("keys", "state", "channels", "last_ts") if k not in snap]
                    if missing:
                        raise KeyError(f"no {missing}")
                if not isinstance(meta, dict):
                    raise ValueError(f"meta is a {type(meta).__name__}")
                for k in ("fingerprint", "files", "ranges", "n_flows", "offsets"):
                    meta[k]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                raise WatchError(f"{self.state_path}: unreadable watch state ({type(e).__name__}: {e}); move it "
                                 "away to start afresh (every file in the directory is then scored again)") from None
            if meta.get("format") != STATE_FORMAT:
                raise WatchError(f"{self.state_path}: not a watch state file (format {meta.get('format')!r})")
            if meta["fingerprint"] != self.fingerprint:
                raise WatchError(f"{self.state_path}: written with another model or extract settings "
                                 f"({meta['fingerprint']}); use another --state for this model")
            self.files, self.ranges, self.n_flows = meta["files"], meta["ranges"], int(meta["n_flows"])
            self.offsets = meta["offsets"]
            try:
                self.meter = FlowMeter.from_snapshot(self.flow_cfg, snap)
            except (ValueError, KeyError) as e:  # arrays of the wrong shape, or a context part missing
                raise WatchError(f"{self.state_path}: the flow meter or context arrays of the watch state are "
                                 f"damaged ({type(e).__name__}: {e}); move it away to start afresh") from None
            log.info("%s: resumed: %d files done, %d flows open, %d flows scored", self.state_path,
                     len(self.files), len(snap["keys"]), self.n_flows)
        for name, path in (("alerts", self.alerts), ("summary", self.summary)):
            _refuse_link(path)
            size = path.stat().st_size if path.exists() else 0
            want = int(self.offsets[name])
            if size < want:
                raise WatchError(f"{path}: {size} bytes, shorter than the {want} the state file recorded "
                                 "(the file was edited or replaced); move the state file away to start afresh")
            if size > want:  # lines of a file whose state was never committed: it is processed again
                log.warning("%s: cutting %d bytes written after the last committed state", path, size - want)
                fd = _open_nofollow(path, os.O_RDWR)
                try:
                    os.ftruncate(fd, want)
                finally:
                    os.close(fd)

    def _save_state(self) -> None:
        import io

        job = self._committing  # a job committed while later files are in flight: the state as of that job
        st = job.state if job is not None else {"files": self.files, "ranges": self.ranges,
                                                 "n_flows": self.n_flows, "snap": self.meter.snapshot()}
        meta = {"format": STATE_FORMAT, "fingerprint": self.fingerprint, "files": st["files"],
                "ranges": st["ranges"], "n_flows": st["n_flows"], "offsets": self.offsets}
        snap = st["snap"]
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **snap)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(self.state_path, buf.getvalue())

    # ------------------------------------------------------------------ which files
    def _is_capture(self, name: str) -> bool:
        if name.startswith(".") or name in self.own_names or any(fnmatch.fnmatch(name, p) for p in _EXCLUDE):
            return False
        return any(fnmatch.fnmatch(name, p) for p in self.settings.patterns)

    def pending(self, now: float | None = None) -> list[Path]:
        """Complete capture files not processed yet, in processing order."""
        now = time.time() if now is None else now
        cands = []
        for entry in os.scandir(self.dir):
            try:
                if not entry.is_file() or not self._is_capture(entry.name):
                    continue
                st = entry.stat()
            except FileNotFoundError:  # removed while listing
                continue
            cands.append((st.st_mtime_ns, entry.name, st.st_size))
        if not cands:
            return []
        newest = max(c[0] for c in cands)
        out = []
        for mtime_ns, name, size in sorted(cands):
            done = self.files.get(name)
            if done is not None and done["size"] == size and done["mtime_ns"] == mtime_ns:
                continue
            if mtime_ns < newest or now - mtime_ns / 1e9 >= self.settings.quiet_s:
                if done is not None and self._continuation(self.dir / name, done, size) is None:
                    # e.g. a ring buffer (tcpdump -W) reusing the name
                    log.warning("%s: changed since it was scored (size %d -> %d); scoring it again as a new file",
                                name, done["size"], size)
                out.append(self.dir / name)
        return out

    # ------------------------------------------------------------------ a file that grew after it was scored
    @staticmethod
    def _end_digest(path: Path, end: int) -> str | None:
        """Hash of the header and of the 64 bytes before ``end`` (None if unreadable or shorter)."""
        import hashlib

        try:
            with open(path, "rb") as f:
                head = f.read(24)
                f.seek(max(24, end - 64))
                last = f.read(end - max(24, end - 64))
        except OSError:
            return None
        if len(head) < 24 or len(last) != end - max(24, end - 64):
            return None
        return hashlib.sha256(head + last).hexdigest()[:16]

    def _continuation(self, path: Path, done: dict, size: int) -> int | None:
        """Byte offset to go on reading ``path`` from, when it is a pcap / pcapng file that only grew since it
        was scored (its bytes up to the last whole record read are unchanged); else None (a new file)."""
        end = done.get("end")
        if end is None or size <= done["size"] or done.get("digest") is None:
            return None
        return int(end) if self._end_digest(path, int(end)) == done["digest"] else None

    def _continued_copy(self, path: Path, start: int, header: int) -> Path:
        """The first ``header`` bytes (the file's header, :func:`_readable_on`) and the bytes of ``path`` from
        ``start`` on, in a private temporary file."""
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix="nidsflow-watch-", suffix=".cap")
        with os.fdopen(fd, "wb") as out, open(path, "rb") as f:
            out.write(f.read(header))
            f.seek(start)
            while chunk := f.read(1 << 22):
                out.write(chunk)
        return Path(tmp)

    # ------------------------------------------------------------------ one file
    def process_file(self, path: Path) -> dict:
        """Read, meter, score and commit one file (a transaction; see the module docstring)."""
        job = self._read_file(path)
        self._commit(job)
        return job.summary

    def _read_file(self, path: Path) -> _Job:
        """Read and meter one file; its finished flows scored (in process) or submitted to the workers."""
        t_start = time.perf_counter()
        st = path.stat()
        name = path.name
        done = self.files.get(name)
        # a file that grew after it was scored (quiet for --quiet-s, then written again): only its new records
        start = self._continuation(path, done, st.st_size) if done is not None else None
        source = self._continued_copy(path, start, int(done["header"])) if start is not None else path
        if start is not None:
            log.info("%s: grew from %d to %d bytes after it was scored; reading on from byte %d", name,
                     done["size"], st.st_size, start)
        try:
            return self._read_source(path, source, st, start, t_start)
        finally:
            if source != path:
                source.unlink(missing_ok=True)

    def _read_source(self, path: Path, source: Path, st, start: int | None, t_start: float) -> _Job:
        from nidsflow.capture.flows import FlowChunk, FlowMeter, context_tracker
        from nidsflow.capture.pcap import CaptureError, CaptureReader

        name = path.name
        chunks: list = []
        error, reader_stats, t0, t1, n_packets, restarted = None, {}, None, None, 0, False
        n_back, prev_ts = 0, None  # packets earlier than the one before them in this file
        meter = self.meter
        reader = None
        try:
            reader = CaptureReader(source, batch_packets=self.batch_packets)
            for batch in reader:
                if self.stop_requested:
                    raise _Abandon
                if not len(batch):
                    continue
                if t0 is None and float(batch.ts[0]) < meter.clock - JUMP_BACK_TOLERANCE_S:
                    # not the continuation of the previous file: its open flows end here
                    log.warning("%s: first packet (%.6f) is older than the flows open from earlier files (%.6f); "
                                "those %d flows are ended first", name, float(batch.ts[0]), meter.clock,
                                meter.n_alive)
                    chunks += meter.flush()
                    meter = self.meter = FlowMeter(self.flow_cfg, context_tracker(self.det.extract_cfg))
                    restarted = True
                ts = np.asarray(batch.ts)
                n_back += int((ts[1:] < ts[:-1]).sum()) + int(prev_ts is not None and ts[0] < prev_ts)
                prev_ts = float(ts[-1])
                t0 = float(batch.ts[0]) if t0 is None else t0
                t1 = float(batch.ts[-1]) if t1 is None else max(t1, float(batch.ts[-1]))
                n_packets += len(batch)
                chunks += meter.add_batch(batch)
            reader_stats = reader.stats.as_dict()
        except CaptureError as e:
            error = str(e).replace(str(source), f"{path} (read on from byte {start})") if start is not None else str(e)
            reader_stats = reader.stats.as_dict() if reader is not None else {}
            log.error("%s: %s (the %d packets read before it are kept)", name, error, n_packets)
        except OSError as e:  # unreadable (permissions, I/O error): a per-file error, never the watch's end
            error = f"cannot read {path}: {e.strerror or e}"
            reader_stats = reader.stats.as_dict() if reader is not None else {}
            log.error("%s: %s (the %d packets read before it are kept; the file is not retried until its size "
                      "or modification time changes)", name, error, n_packets)
        except _Abandon:
            self._load_state()  # drop the half-fed meter
            raise
        if n_back:
            log.warning("%s: %d packets have a timestamp earlier than the packet before them; metered as they come "
                        "(a flow may get a negative duration)", name, n_back)
        if t0 is not None:
            self.ranges.append([name, t0, t1])
        finished = FlowChunk.concat([c for c in chunks if len(c)], self.flow_cfg.T)
        file_rec = {"name": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        header = _readable_on(path) if reader is not None and error is None else None
        if header is not None:  # where a later read goes on from: the end of the last whole record read
            # bytes_read: a classic pcap's reader skips its 24-byte header, a pcapng's counts every byte
            counted = int(reader_stats.get("bytes_read", 0)) - int(reader_stats.get("tail_bytes", 0))
            is_ng = reader.format == "pcapng"
            if start is None:
                end = counted + (0 if is_ng else 24)
            else:
                end = start + counted - (int(self.files[name]["header"]) if is_ng else 0)
            file_rec.update(end=end, header=header, digest=self._end_digest(path, end))
        summary = {"file": name, "status": "error" if error else "ok", "error": error, "packets": n_packets,
                   "first_ts": t0, "last_ts": t1, "reader": reader_stats, "open_flows_ended_by_time_jump": restarted,
                   "ts_backwards": n_back}
        if start is not None:
            summary["continued_from_byte"] = start
        return self._score(finished, summary, file_rec, t_start)

    def flush_open_flows(self) -> dict:
        """End every open flow (the capture is over) and score them: one transaction like a file."""
        t_start = time.perf_counter()
        from nidsflow.capture.flows import FlowChunk

        finished = FlowChunk.concat(self.meter.flush(), self.flow_cfg.T)
        summary = {"file": None, "status": "flush", "error": None, "packets": 0}
        job = self._score(finished, summary, None, t_start)
        self._commit(job)
        return summary

    def _score(self, finished, summary: dict, file_rec: dict | None, t_start: float) -> _Job:
        """Score (or submit) the finished flows of a file and advance the in-memory state past it."""
        from nidsflow.capture import _flow_kernels as K
        from nidsflow.deploy.scoring import chunk_features
        from nidsflow.janus.data import flow_keys

        # A total order of the flows (not the meter's slot order, which a restart changes), so the scores'
        # fixed corruption draws, and hence d^2, do not depend on restarts.
        st = finished.state
        order = np.lexsort((*finished.keys.T[::-1], st[:, K.LAST_TS], st[:, K.FIRST_TS]))
        finished = finished[order]
        frame = finished.frame()
        feats = chunk_features(finished)
        channels, lengths = finished.channels, finished.lengths
        explain = True if self.settings.all_flows else "alerts"
        source = summary["file"] or "flush"
        base, n = self.n_flows, len(frame)
        parts, pending = [], [] if self.pool is not None else None
        # slices of SCORE_SLICE flows, each one Detector.score call (in process or in the workers)
        for s in range(0, n, SCORE_SLICE):
            if self.stop_requested:
                self._load_state()
                raise _Abandon
            sl = slice(s, s + SCORE_SLICE)
            ids = flow_keys(frame.iloc[sl])  # the flow's own seed key: stable over restarts and positions
            if pending is None:
                parts.append(self.det.score(frame.iloc[sl], feats.iloc[sl], channels[sl], lengths[sl],
                                            source=source, explain=explain, flow_ids=ids))
            else:
                data = self.det.normalise(feats.iloc[sl], channels[sl], lengths[sl], len(ids), source=source)
                raw = (feats.iloc[sl], channels[sl], lengths[sl]) if self.det.scorer.s.flow_nll else None
                pending.append((sl, self.pool.submit(data, ids, raw)))
        scored = None
        if pending is None:
            scored = pd.concat(parts, ignore_index=True) if parts else self.det.score(
                frame, feats, channels, lengths, source="empty")
        elif not pending:
            scored = self.det.finish(frame, None, None, None, source="empty")
        sources = self._sources(frame["first_ts"].to_numpy(), frame["last_ts"].to_numpy())
        self.n_flows += n
        if file_rec is not None:
            self.files[file_rec["name"]] = {**{k: v for k, v in file_rec.items() if k != "name"},
                                            "status": summary["status"], "seq": len(self.files)}
        self._prune_ranges()
        state = {"files": dict(self.files), "ranges": list(self.ranges), "n_flows": self.n_flows,
                 "snap": self.meter.snapshot()}
        return _Job(frame, summary, t_start, base, sources, self.meter.n_alive, state, explain, scored, pending)

    def _commit(self, job: _Job) -> None:
        """Write the job's lines and its state (waits for the workers' scores; a stop then raises _Abandon)."""
        scored = job.scored
        if scored is None:
            parts = []
            for sl, pend in job.pending:
                r = pend.result(should_stop=lambda: self.stop_requested)
                if r is None:
                    job.cancel()
                    raise _Abandon
                S, pos_sum, pos_cnt, n_forced, n_no_packet = r
                source = job.summary["file"] or "flush"
                parts.append(self.det.finish(job.frame.iloc[sl], S, pos_sum, pos_cnt, job.explain, source))
                if n_forced:
                    log.info("%s: %d (flow, binary channel) pairs had no corrupted position at the disc_times; "
                             "each got its position closest to being drawn corrupted", source, n_forced)
                if n_no_packet and self.pool.disc_head:
                    log.warning("%s: %d flows have no valid packet: their disc_nll scores are NaN", source,
                                n_no_packet)
            scored = pd.concat(parts, ignore_index=True)
        scored["source_files"] = job.sources
        lines = self._flow_lines(scored, job.base)
        n_alerts = int(scored["alert"].sum()) if len(scored) else 0
        summary = job.summary
        seconds = time.perf_counter() - job.t_start
        summary.update({"flows_scored": len(scored), "alerts": n_alerts, "open_flows": job.open_flows,
                        "threshold": self.det.threshold, "seconds": round(seconds, 4),
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.offsets["alerts"] = self._append(self.alerts, lines)
        self.offsets["summary"] = self._append(self.summary, [json.dumps(summary, default=str)])
        self._committing = job
        try:
            self._save_state()
        finally:
            self._committing = None
        log.info("%s: %s; %d packets, %d flows scored, %d alerts, %d flows open (%.2f s)", summary["file"] or "flush",
                 summary["status"], summary["packets"], len(scored), n_alerts, job.open_flows, seconds)

    def _append(self, path: Path, lines: list[str]) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(_open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as f:
            if lines:
                f.write(("\n".join(lines) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
            return f.tell()

    def _sources(self, first: np.ndarray, last: np.ndarray) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in range(len(first))]
        for name, t0, t1 in self.ranges:
            for i in np.nonzero((first <= t1) & (last >= t0))[0]:
                out[i].append(name)
        return out

    def _prune_ranges(self) -> None:
        """Keep the file time spans an open flow can still overlap (its first packet is not older)."""
        from nidsflow.capture import _flow_kernels as K

        snap_first = self.meter.snapshot()["state"][:, K.FIRST_TS]
        if len(snap_first) == 0:
            self.ranges = []
        else:
            oldest = float(snap_first.min())
            self.ranges = [r for r in self.ranges if r[2] >= oldest]

    def _flow_lines(self, scored: pd.DataFrame, base: int) -> list[str]:
        rows = scored if self.settings.all_flows else scored[scored["alert"].to_numpy(dtype=bool)]
        lines = []
        for i, r in zip(rows.index, rows.itertuples(index=False)):
            d = r._asdict()
            rec = {"flow": base + int(i), "src_ip": d["src_ip"], "src_port": int(d["src_port"]),
                   "dst_ip": d["dst_ip"], "dst_port": int(d["dst_port"]), "protocol": int(d["protocol"]),
                   "first_ts": float(d["first_ts"]), "last_ts": float(d["last_ts"]), "packets": int(d["n_packets"]),
                   "end_reason": d["end_reason"], "d2": _finite_or_none(d["deployable_score"]),
                   "threshold": self.det.threshold, "alert": bool(d["alert"]), "source_files": d["source_files"],
                   "scores": {n: _finite_or_none(d[n]) for n in JANUS_SCORE_NAMES},
                   "contributions": {n: _finite_or_none(d[f"contrib_{n}"]) for n in JANUS_SCORE_NAMES},
                   "dfm_top": d["dfm_top"]}
            lines.append(json.dumps(rec, allow_nan=False))
        return lines

    # ------------------------------------------------------------------ loops
    def run_once(self) -> int:
        """Process every complete pending file; returns how many (stops early when a stop is requested).

        With worker processes, up to ``FILES_IN_FLIGHT_PER_WORKER * workers`` files are read ahead and
        scored at the same time; they are committed one by one in order, each with the state as of that
        file. A stop abandons every file not committed yet (processed again on restart)."""
        if self.pool is not None:
            return self._run_pipelined()
        n = 0
        for path in self.pending():
            if self.stop_requested:
                break
            if not path.exists():  # removed between the listing and now
                continue
            try:
                self.process_file(path)
            except _Abandon:
                log.info("%s: abandoned on stop; it is processed again on restart", path.name)
                break
            n += 1
        return n

    def _run_pipelined(self) -> int:
        from collections import deque

        inflight: deque[_Job] = deque()
        depth = FILES_IN_FLIGHT_PER_WORKER * self.pool.workers
        n = 0
        abandoned = []

        def commit_head():
            job = inflight.popleft()
            try:
                self._commit(job)
            except _Abandon:
                abandoned.append(job)
                raise

        try:
            for path in self.pending():
                if self.stop_requested:
                    break
                if not path.exists():
                    continue
                try:
                    inflight.append(self._read_file(path))
                except _Abandon:
                    abandoned.append(path.name)
                    raise
                while len(inflight) > depth or (inflight and inflight[0].pending is not None and
                                                all(p.done() for _, p in inflight[0].pending)):
                    commit_head()
                    n += 1
            while inflight and not self.stop_requested:
                commit_head()
                n += 1
        except _Abandon:
            pass
        abandoned += list(inflight)
        if abandoned:  # a stop: what is not committed leaves no trace
            for job in inflight:
                job.cancel()
            log.info("%s: abandoned on stop; processed again on restart",
                     ", ".join(j if isinstance(j, str) else str(j.summary["file"]) for j in abandoned))
            self._load_state()
        return n

    def run(self, once: bool = False, flush: bool = False) -> None:
        """Watch until a stop is requested (or, with ``once``, until nothing complete is pending)."""
        while not self.stop_requested:
            self.run_once()
            if once:
                break
            deadline = time.monotonic() + self.settings.poll_s
            while not self.stop_requested and time.monotonic() < deadline:
                time.sleep(min(0.1, self.settings.poll_s))
        if flush and not self.stop_requested:
            try:
                self.flush_open_flows()
            except _Abandon:  # a stop while the flushed flows were scored: they stay open in the state file
                self._load_state()
                log.info("flush abandoned on stop; the open flows stay in the state file")

    def install_signal_handlers(self) -> None:
        """First SIGINT/SIGTERM: stop after (or abandon) the current file; a second one: stop now."""
        def handler(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            log.info("signal %d: stopping after the current file (again to stop at once)", signum)
            self.stop_requested = True

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def _non_negative(name):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number of seconds, got {text!r}") from None
        if not v >= 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {text!r}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    from nidsflow.deploy.model_dir import add_model_arguments

    ap = argparse.ArgumentParser(prog="nidsflow watch", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", metavar="DIR", help="directory the captures are written or moved into")
    add_model_arguments(ap)
    ap.add_argument("--alerts", default=None, help="alert JSON lines to append to (default: DIR/alerts.jsonl)")
    ap.add_argument("--summary", default=None, help="per-file summary JSON lines (default: DIR/summary.jsonl)")
    ap.add_argument("--state", default=None, help="state file (default: DIR/.nidsflow-watch-state.npz)")
    ap.add_argument("--quiet-s", type=_non_negative("--quiet-s"), default=5.0,
                    help="a file unmodified this long is complete (default: %(default)s)")
    ap.add_argument("--poll-s", type=_non_negative("--poll-s"), default=1.0,
                    help="seconds between directory scans (default: %(default)s)")
    ap.add_argument("--pattern", action="append", default=None,
                    help=f"capture file name glob, repeatable (default: {' '.join(DEFAULT_PATTERNS)})")
    ap.add_argument("--once", action="store_true", help="process what is complete now, then exit")
    ap.add_argument("--flush", action="store_true",
                    help="with --once: the capture is over; end and score the flows still open")
    ap.add_argument("--all-flows", action="store_true", help="write every scored flow, not only alerts")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: janus.threads, else torch's); with --workers: per worker (default 1)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes scoring the flows, each with its own copy of the model (default: %(default)s, "
                         "in this process); scores are identical to --workers 1 --threads 1")
    ap.add_argument("--log", default=None, help="also write the log to this file")
    return ap


def main(argv=None) -> int:
    from nidsflow.deploy.model_dir import model_from_args
    from nidsflow.logs import setup_logging

    ap = build_parser()
    a = ap.parse_args(argv)
    if not Path(a.dir).is_dir():
        ap.error(f"DIR {a.dir}: not a directory")
    if a.flush and not a.once:
        ap.error("--flush needs --once (a running watch keeps open flows for the next file)")
    if a.poll_s == 0:
        ap.error("--poll-s must be > 0")
    if a.threads is not None and a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    if a.workers < 1:
        ap.error(f"--workers must be >= 1, got {a.workers}")
    md = model_from_args(ap, a)
    setup_logging(None)
    if a.log:  # appended to: a restarted watch keeps the log of the runs before
        h = logging.FileHandler(a.log, mode="a")
        h.setFormatter(logging.getLogger().handlers[0].formatter)
        logging.getLogger().addHandler(h)
    import torch

    from nidsflow.deploy.scoring import DEPLOY_ERRORS, Detector

    if a.workers > 1:  # the scoring is in the workers; this process reads, meters and explains
        torch.set_num_threads(1)
    else:
        threads = a.threads or md.janus.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
    try:
        det = Detector.from_model_dir(md, a.device)
    except DEPLOY_ERRORS as e:  # each names its file: a message, not a traceback
        log.error("%s", e)
        return 1
    settings = WatchSettings(quiet_s=a.quiet_s, poll_s=a.poll_s, patterns=tuple(a.pattern or DEFAULT_PATTERNS),
                             all_flows=a.all_flows, workers=a.workers, worker_threads=a.threads or 1)
    try:
        w = Watcher(a.dir, det, a.alerts, a.summary, a.state, settings)
    except WatchError as e:
        log.error("%s", e)
        return 1
    if a.log:
        w.exclude(a.log)
    w.install_signal_handlers()
    log.info("watching %s (model %s, threshold %.4g) -> %s", w.dir, md.model, det.threshold, w.alerts)
    try:
        w.run(once=a.once, flush=a.flush)
    except KeyboardInterrupt:
        log.warning("stopped at once; the state file is consistent (the current file is processed again)")
        return 130
    finally:
        w.close()
    log.info("stopped: %d files done, %d flows scored, %d flows open", len(w.files), w.n_flows, w.meter.n_alive)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
