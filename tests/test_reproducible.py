"""CPU arithmetic pinned for the baselines (nidsflow.reproducible) and the near-tie margins of their
label-free choices (common.improves): what keeps the same seed's numbers equal across CPUs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nidsflow.evaluate.baselines.common import improves
from nidsflow.reproducible import PINNED_ENV, pin_cpu_arithmetic

PROBE = ("from nidsflow.reproducible import pin_cpu_arithmetic; p = pin_cpu_arithmetic(); import torch; "
         "print(p['MKL_CBWR'], torch.backends.cpu.get_cpu_capability())")


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout.split()


def test_pins_take_effect_before_torch_loads_and_a_user_setting_wins():
    import torch

    if "AVX2" not in torch.backends.cpu.get_cpu_capability() and "AVX512" not in torch.backends.cpu.get_cpu_capability():
        pytest.skip("this CPU has no AVX2")
    assert _run({}) == ["COMPATIBLE", "AVX2"]
    assert _run({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO"}) == ["AUTO", "DEFAULT"]


def test_pinning_after_torch_is_an_error():
    import torch  # noqa: F401

    with pytest.raises(RuntimeError, match="before torch"):
        pin_cpu_arithmetic()


def test_improves_needs_a_relative_margin():
    assert improves(0.15539, float("inf"), 1e-2)
    assert not improves(0.15539, 0.15581, 1e-2)  # GANomaly's two latent sizes on cic17_flows: a near-tie
    assert improves(0.137, 0.160, 1e-2)
    assert not improves(-5.0000001, -5.0, 1e-4) and improves(-5.01, -5.0, 1e-4)  # NLLs below 0 too
    assert not improves(float("nan"), 1.0, 1e-4)
