"""Shared training helpers (nidsflow.training): the minimum step budget, the weight EMA, the precision switch."""

from __future__ import annotations

import pytest
import torch

from nidsflow.training import WeightEMA, autocast, bf16_native, epochs_for_min_steps, use_bf16


@pytest.mark.parametrize("epochs, min_steps, per_epoch, expected", [
    (20, 0, 5, 20),        # no minimum: epochs alone
    (20, 600, 5, 120),     # raised to reach 600 steps
    (20, 601, 5, 121),     # rounded up: at least min_steps
    (50, 100, 40, 50),     # already enough
    (1, 10, 0, 10),        # an empty epoch counts as one step (no division by zero)
])
def test_epochs_are_raised_to_reach_the_minimum_steps(epochs, min_steps, per_epoch, expected):
    assert epochs_for_min_steps(epochs, min_steps, per_epoch) == expected


def test_weight_ema_follows_the_warmed_up_recursion():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(net, decay=0.7)  # warm-up (n < 20), then the decay itself
    expected = net[0].weight.detach().clone()
    for n in range(30):
        with torch.no_grad():
            net[0].weight.add_(torch.randn_like(net[0].weight))
            net[1].num_batches_tracked += 1
        d = min(0.7, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * net[0].weight.detach()
        ema.update(net)
    assert ema.n_updates == 30 and ema.current_decay() == 0.7
    torch.testing.assert_close(ema.module[0].weight, expected)
    assert int(ema.module[1].num_batches_tracked) == 30  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    # the state round-trips (a resumed run continues the same average)
    other = WeightEMA(net, decay=0.7)
    other.load_state_dict(ema.state_dict())
    assert other.n_updates == 30
    torch.testing.assert_close(other.module[0].weight, expected)


def test_ema_decay_zero_is_the_latest_weights_and_bad_decays_are_refused():
    net = torch.nn.Linear(2, 2)
    ema = WeightEMA(net, 0.0)
    with torch.no_grad():
        net.weight.mul_(3)
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, net.weight)
    with pytest.raises(ValueError, match="ema_decay"):
        WeightEMA(net, 1.0)


def test_precision_switch():
    assert not use_bf16("fp32", "cpu") and use_bf16("bf16", "cpu")
    assert use_bf16("auto", "cpu") == bf16_native("cpu")
    with pytest.raises(ValueError, match="precision"):
        use_bf16("fp16", "cpu")
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast(True, "cpu"):
        assert lin(x).dtype == torch.bfloat16
    with autocast(False, "cpu"):
        assert lin(x).dtype == torch.float32


def test_bf16_is_not_native_where_onednn_is_capped_below_it(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what reproducible.pin_cpu_arithmetic sets
    assert not bf16_native("cpu") and not use_bf16("auto", "cpu") and use_bf16("bf16", "cpu")
