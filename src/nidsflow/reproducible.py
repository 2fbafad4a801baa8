"""Pin the CPU arithmetic of a process so that the same seed gives the same numbers on any x86-64 CPU.

The same float32 training on two CPUs (an AMD and an Intel) need not add in the same order: MKL picks
its matrix-product kernels per processor (AVX-512 on many Intel Xeons, AVX2 on AMD), ATen picks its
vectorised element-wise / reduction kernels per instruction set, and oneDNN its convolution kernels.
The differences are in the last bits, but adversarial training (GANomaly) and early stopping turn
them into a different model: on one machine, switching only these kernel paths moved GANomaly's
cic17_flows AUROC (real.yaml, seed 42) from 94.16 to 94.95.

:func:`pin_cpu_arithmetic` fixes the paths before numpy or torch load (environment variables are
read when the libraries initialise; a value the user set is kept):

- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility on its SSE2 branch, the only
  branch Intel documents as reproducible on non-Intel processors too;
- ``ATEN_CPU_CAPABILITY=avx2``: ATen's AVX2 kernels (every x86-64 server CPU since 2013 has AVX2;
  without it ATen falls back to its default kernels, and results may differ);
- ``ONEDNN_MAX_CPU_ISA=AVX2``: the same for oneDNN (the convolutions). oneDNN stays on: turning it
  off (convolutions through the pinned matrix products, fully covered by MKL's guarantee) made
  STFPM's demo fit 2.3x slower (311 s vs 137 s, demo_a seed 42, a loaded machine), too slow for the
  demo's time budget; oneDNN's blocking may still depend on cache sizes, a residual risk for the
  convolutional baselines only.

Thread counts are fixed by the rules (``threads:``), which CNR also requires.
"""

from __future__ import annotations

import os
import sys

#: Environment fixed by pin_cpu_arithmetic (setdefault: an explicit user setting wins).
PINNED_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_arithmetic() -> dict[str, str]:
    """Set PINNED_ENV (where unset) before numpy / torch load; returns the values in effect.

    Raises RuntimeError when torch is already imported: its kernel choice would then be made already.
    """
    if "torch" in sys.modules:
        raise RuntimeError("pin_cpu_arithmetic must run before torch is imported (call it first in the script)")
    for k, v in PINNED_ENV.items():
        os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in PINNED_ENV}


def pin_torch(threads: int | None = None) -> None:
    """After torch loads: a fixed thread count (MKL's reproducibility also requires one)."""
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
