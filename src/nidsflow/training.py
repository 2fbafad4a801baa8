"""Training helpers shared by JANUS and the deep baselines: a minimum step budget, an exponential
moving average of the weights, and bfloat16 autocast where the hardware has it natively.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def epochs_for_min_steps(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """max(epochs, ceil(min_steps / steps_per_epoch)): epochs raised until the run makes at least
    ``min_steps`` optimiser steps (the rule of the STFPM-style and RD4AD baselines)."""
    return max(int(epochs), math.ceil(max(0, int(min_steps)) / max(1, int(steps_per_epoch))))


#: ONEDNN_MAX_CPU_ISA values below AVX512-BF16: oneDNN then has no native bf16 kernel (reproducible.py pins AVX2)
_ISA_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def bf16_native(device: torch.device | str) -> bool:
    """Whether bfloat16 matmuls are native on ``device``: a CUDA device with bf16, or a CPU with
    AVX512-BF16 or AMX (torch's oneDNN check) whose oneDNN is not capped below them (``ONEDNN_MAX_CPU_ISA``,
    as :func:`nidsflow.reproducible.pin_cpu_arithmetic` sets for the baselines); elsewhere autocast would
    emulate bf16 and run slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISA_WITHOUT_BF16:
        return False
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """``precision``: fp32 (off), bf16 (on), auto (on where :func:`bf16_native`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and bf16_native(device))


def autocast(enabled: bool, device: torch.device | str):
    """bfloat16 autocast of matmuls (torch.autocast's op lists keep reductions and losses in fp32);
    a no-op context when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class WeightEMA:
    """Exponential moving average of a module's floating-point parameters and buffers (Polyak averaging;
    the warm-up of TensorFlow's ExponentialMovingAverage with num_updates):

        ema <- d_n ema + (1 - d_n) theta,   d_n = min(decay, (1 + n) / (10 + n)),  n = updates so far

    so the first updates follow the weights closely and the average is not biased to the initialisation.
    ``module`` holds the averaged weights (a copy of the trained module); ``decay`` 0 makes it a copy of
    the latest weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.n_updates = 0
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.n_updates) / (10.0 + self.n_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        src = [v for v in model.state_dict().values()]
        dst = [v for v in self.module.state_dict().values()]
        fl = [(e, s) for e, s in zip(dst, src) if e.is_floating_point()]
        if fl:
            torch._foreach_lerp_([e for e, _ in fl], [s.detach() for _, s in fl], 1.0 - d)
        for e, s in zip(dst, src):
            if not e.is_floating_point():
                e.copy_(s)
        self.n_updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "n_updates": self.n_updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.n_updates = int(state["n_updates"])
