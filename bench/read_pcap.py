"""Benchmark of the capture reader alone: packets/s and peak RSS, against dpkt's plain loop.

    python bench/read_pcap.py --packets 2000000            # generate a capture, then measure
    python bench/read_pcap.py --file some.pcap              # measure an existing capture

Each reader runs in its own fresh Python process (so ``ru_maxrss`` is that reader's peak);
the numba kernels are compiled / loaded from cache on a tiny capture before the clock starts.
Prints a markdown table. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _frame(rng: np.random.Generator, version: int, proto: int, size: int, vlan: bool) -> bytes:
    """Ethernet frame (optionally 802.1Q-tagged) of `size` bytes of IP with a TCP/UDP header."""
    l4 = (struct.pack(">HHIIBBHHH", 40000, 443, 1, 2, 0x50, 0x18, 502, 0, 0) if proto == 6
          else struct.pack(">HHHH", 40000, 53, size - (20 if version == 4 else 40), 0))
    if version == 4:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000, 64, proto, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 1, 1]))
        etype = 0x0800
    else:
        ip = struct.pack(">IHBB16s16s", 0x60000000, size - 40, proto, 64, b"\x20" + bytes(15),
                         b"\x20" + bytes(14) + b"\x01")
        etype = 0x86DD
    payload = rng.integers(0, 256, size - len(ip) - len(l4), dtype=np.uint8).tobytes()
    tag = struct.pack(">HH", 0x8100, 7) if vlan else b""
    return b"\x02" * 6 + b"\x04" * 6 + tag + struct.pack(">H", etype) + ip + l4 + payload


def generate(path: Path, n_packets: int, seed: int = 0, chunk: int = 200_000) -> None:
    """A pcap of `n_packets` Ethernet frames: 80% IPv4, 20% IPv6, 75% TCP, 10% VLAN-tagged, IP
    sizes bimodal (40-120 B and 1000-1500 B, mean ~600 B); ports and addresses vary per packet."""
    rng = np.random.default_rng(seed)
    templates = []
    for k in range(64):
        version = 4 if k % 5 else 6
        proto = 6 if k % 4 else 17
        size = int(rng.integers(40 + 20, 120)) if k % 2 else int(rng.integers(1000, 1500))
        templates.append(np.frombuffer(_frame(rng, version, proto, size, vlan=k % 10 == 0), np.uint8))
    lens = np.array([len(t) for t in templates], np.int64)
    l3 = np.array([18 if t[12] == 0x81 else 14 for t in templates], np.int64)
    is_v4 = np.array([t[l3[i]] >> 4 == 4 for i, t in enumerate(templates)])
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t0 = 1_700_000_000.0
        for start in range(0, n_packets, chunk):
            n = min(chunk, n_packets - start)
            which = rng.integers(0, len(templates), n)
            rec_len = 16 + lens[which]
            offs = np.concatenate([[0], np.cumsum(rec_len)[:-1]])
            out = np.empty(int(rec_len.sum()), np.uint8)
            ts = t0 + (start + np.arange(n)) * 1e-4
            hdr = np.empty((n, 4), "<u4")
            hdr[:, 0] = ts.astype(np.int64)
            hdr[:, 1] = ((ts - np.floor(ts)) * 1e6).astype(np.int64) % 1_000_000
            hdr[:, 2] = lens[which]
            hdr[:, 3] = lens[which]
            out[offs[:, None] + np.arange(16)] = hdr.view(np.uint8).reshape(n, 16)
            for k, tpl in enumerate(templates):
                sel = offs[which == k] + 16
                if sel.size:
                    out[sel[:, None] + np.arange(len(tpl))] = tpl
            # vary the client port and the client address so that flows differ
            sport = rng.integers(1024, 65536, n).astype(">u2").view(np.uint8).reshape(n, 2)
            l4 = offs + 16 + l3[which] + np.where(is_v4[which], 20, 40)
            out[l4[:, None] + np.arange(2)] = sport
            host = np.where(is_v4[which], 15, 39)  # last byte of the source address
            out[offs + 16 + l3[which] + host] = rng.integers(1, 255, n).astype(np.uint8)
            f.write(out.tobytes())


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker_nidsflow(path: Path, batch_packets: int, chunk_bytes: int) -> dict:
    from nidsflow.capture.pcap import CaptureReader
    # compile / load the numba kernels outside the clock
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "warm.pcap"
        generate(small, 100)
        list(CaptureReader(small))
    rss_before = _maxrss_mib()
    t = time.perf_counter()
    reader = CaptureReader(path, batch_packets=batch_packets, chunk_bytes=chunk_bytes)
    n_ip = sport_sum = 0
    for batch in reader:
        n_ip += len(batch)
        sport_sum += int(batch.sport[:1].sum())  # touch the output
    dt = time.perf_counter() - t
    return dict(reader="nidsflow CaptureReader", packets=reader.stats.records, ip_packets=n_ip,
                seconds=dt, rss_before_mib=rss_before, peak_rss_mib=_maxrss_mib())


def worker_dpkt(path: Path, limit: int | None) -> dict:
    import dpkt
    rss_before = _maxrss_mib()
    t = time.perf_counter()
    n = n_ip = 0
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            n += 1
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                n_ip += 1
                l4 = ip.data
                if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                    _ = (ip.src, ip.dst, ip.p, l4.sport, l4.dport)
                    if isinstance(l4, dpkt.tcp.TCP):
                        _ = (l4.flags, l4.win)
            if limit is not None and n >= limit:
                break
    dt = time.perf_counter() - t
    return dict(reader="dpkt pcap.Reader + Ethernet loop", packets=n, ip_packets=n_ip, seconds=dt,
                rss_before_mib=rss_before, peak_rss_mib=_maxrss_mib())


def run_worker(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, help="measure this capture instead of generating one")
    ap.add_argument("--packets", type=int, default=2_000_000, help="packets to generate")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nidsflow_bench.pcap")
    ap.add_argument("--keep", action="store_true", help="keep the generated capture")
    ap.add_argument("--dpkt-limit", type=int, default=None, help="stop dpkt after this many packets")
    ap.add_argument("--batch-packets", type=int, default=262144)
    ap.add_argument("--chunk-mib", type=int, default=64)
    ap.add_argument("--worker", choices=("nidsflow", "dpkt"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker == "nidsflow":
        print(json.dumps(worker_nidsflow(a.file, a.batch_packets, a.chunk_mib << 20)))
        return
    if a.worker == "dpkt":
        print(json.dumps(worker_dpkt(a.file, a.dpkt_limit)))
        return

    path = a.file
    if path is None:
        path = a.out
        t = time.perf_counter()
        generate(path, a.packets)
        print(f"generated {path} ({a.packets:,} packets, {path.stat().st_size / 2**20:,.0f} MiB) "
              f"in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    size_mib = path.stat().st_size / 2**20
    try:
        rows = [run_worker(["--worker", "nidsflow", "--file", str(path),
                            "--batch-packets", str(a.batch_packets), "--chunk-mib", str(a.chunk_mib)])]
        dpkt_args = ["--worker", "dpkt", "--file", str(path)]
        if a.dpkt_limit:
            dpkt_args += ["--dpkt-limit", str(a.dpkt_limit)]
        rows.append(run_worker(dpkt_args))
    finally:
        if a.file is None and not a.keep:
            path.unlink(missing_ok=True)
    base = rows[1]["packets"] / rows[1]["seconds"]
    print(f"\ncapture: {path.name}, {size_mib:,.0f} MiB, {rows[0]['packets']:,} records\n")
    print("| reader | packets | seconds | packets/s | MiB/s | speed-up vs dpkt | peak RSS (MiB) | RSS after imports (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        pps = r["packets"] / r["seconds"]
        mibs = size_mib * r["packets"] / rows[0]["packets"] / r["seconds"]
        print(f"| {r['reader']} | {r['packets']:,} | {r['seconds']:.2f} | {pps:,.0f} | {mibs:,.0f} "
              f"| {pps / base:.1f}x | {r['peak_rss_mib']:,.0f} | {r['rss_before_mib']:,.0f} |")


if __name__ == "__main__":
    main()
