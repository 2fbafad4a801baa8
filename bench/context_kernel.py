"""Packets/s of the host-level context kernel alone (nidsflow.capture.context), on a real capture's
packets read once into memory (reading and flow metering are not timed).

    PYTHONPATH=src python bench/context_kernel.py CAPTURE [--max-packets N]
"""

import argparse
import time

import numpy as np

from nidsflow.capture.context import ContextTracker
from nidsflow.capture.pcap import CaptureReader


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--max-packets", type=int, default=1_000_000)
    args = ap.parse_args()
    batches, n = [], 0
    for b in CaptureReader(args.capture):
        batches.append(b)
        n += len(b)
        if n >= args.max_packets:
            break
    ContextTracker().update(batches[0])  # compile
    tr = ContextTracker()
    t0 = time.perf_counter()
    for b in batches:
        tr.update(b)
    dt = time.perf_counter() - t0
    print(f"{n} packets, {tr.n_streams} streams: {dt:.2f} s, {n / dt:,.0f} packets/s "
          f"({len(tr.names)} context values per packet)")


if __name__ == "__main__":
    main()
