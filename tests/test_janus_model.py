"""The JANUS network: packet-causal attention (CFM and DFM heads), padding, variants, normaliser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nidsflow.janus.data import Normaliser
from nidsflow.janus.model import JanusConfig, JanusModel, packet_causal_mask
from nidsflow.janus.variants import DEFAULT_VARIANT_OVERRIDES, resolve_variant
from nidsflow.scaling import signed_log1p
from nidsflow.store import CHANNELS

F, T = 5, 7


def _model(seed=0, **kw) -> JanusModel:
    torch.manual_seed(seed)
    m = JanusModel(JanusConfig(n_flow_features=F if kw.get("flow_token", True) else 0, T=T, d_model=16,
                               n_layers=2, n_heads=2, **kw)).eval()
    # adaLN-Zero starts every block as the identity; randomise so attention really mixes tokens
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.3)
    return m


def _inputs(seed=0, B=3):
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 5:] = False
    return dict(x_flow=torch.randn(B, F, generator=g), x_pkt=torch.randn(B, T, 3, generator=g) * valid[..., None],
                bits=torch.randint(0, 3, (B, T, 6), generator=g), valid=valid,
                t_cont=torch.rand(B, generator=g), t_disc=torch.rand(B, generator=g))


@pytest.mark.parametrize("variant", [{}, {"flow_token": False}, {"separate_backbones": True}])
@pytest.mark.parametrize("j", [0, 3, 6])
def test_changing_packet_j_leaves_earlier_outputs_unchanged(variant, j):
    model = _model(**variant)
    a = _inputs()
    b = {k: v.clone() for k, v in a.items()}
    b["x_pkt"][:, j] += 5.0
    b["bits"][:, j] = (b["bits"][:, j] + 1) % 3
    with torch.no_grad():
        oa, ob = model(**a), model(**b)
    for key in ("v_pkt", "bit_logits"):
        torch.testing.assert_close(oa[key][0, :j], ob[key][0, :j], atol=1e-6, rtol=0)
        assert (oa[key][0, j] - ob[key][0, j]).abs().max() > 1e-4  # packet j itself does change
    if "v_flow" in oa:  # [FLOW] reads no packet
        torch.testing.assert_close(oa["v_flow"], ob["v_flow"], atol=1e-6, rtol=0)


def test_padding_does_not_leak_into_valid_outputs():
    model = _model()
    a = _inputs()
    b = {k: v.clone() for k, v in a.items()}
    b["x_pkt"][1, 5:] = 9.0
    b["bits"][1, 5:] = 1
    with torch.no_grad():
        oa, ob = model(**a), model(**b)
    torch.testing.assert_close(oa["v_pkt"][1, :5], ob["v_pkt"][1, :5], atol=1e-6, rtol=0)
    torch.testing.assert_close(oa["bit_logits"][1, :5], ob["bit_logits"][1, :5], atol=1e-6, rtol=0)
    assert float(oa["v_pkt"][1, 5:].abs().max()) == 0.0  # velocity is zero at padding


def test_trimming_trailing_padding_changes_no_valid_output():
    from nidsflow.janus.data import JanusBatch

    model = _model()
    a = _inputs()
    a["valid"][:, 4:] = False
    batch = JanusBatch(a["x_flow"], a["x_pkt"], a["bits"], a["valid"])
    short = batch.trimmed()
    assert short.valid.shape[1] == 4
    with torch.no_grad():
        full = model(batch.flow, batch.pkt, batch.bits, batch.valid, a["t_cont"], a["t_disc"])
        cut = model(short.flow, short.pkt, short.bits, short.valid, a["t_cont"], a["t_disc"])
    for key in ("v_pkt", "bit_logits"):
        torch.testing.assert_close(full[key][:, :4], cut[key], atol=1e-6, rtol=0)
    torch.testing.assert_close(full["v_flow"], cut["v_flow"], atol=1e-6, rtol=0)


def test_causal_mask_shape_and_flow_token_sees_only_itself():
    valid = torch.tensor([[True, True, False]])
    m = packet_causal_mask(valid, flow_token=True)[0, 0]
    assert m.shape == (4, 4)
    assert m[0].tolist() == [True, False, False, False]
    assert m[:, 0].all()
    assert m[2].tolist() == [True, True, True, False]
    assert m[3].tolist() == [True, True, True, True]  # a padded query sees valid keys and itself


@pytest.mark.parametrize("name", sorted(DEFAULT_VARIANT_OVERRIDES))
def test_every_variant_builds_and_emits_its_heads(name):
    kw, settings = resolve_variant({"T": T, "d_model": 16, "n_layers": 1, "n_heads": 2, "sigma": 0.1,
                                    "cross_sigma": 0.6}, name)
    model = JanusModel(JanusConfig(n_flow_features=F if kw.get("flow_token", True) else 0, **kw))
    a = _inputs()
    if not kw.get("use_packets", True):
        a.update(x_pkt=a["x_pkt"][:, :0], bits=a["bits"][:, :0], valid=a["valid"][:, :0])
    out = model(**a)
    assert ("bit_logits" in out) == kw.get("disc_head", True)
    assert ("v_pkt" in out) == (kw.get("cont_head", True) and kw.get("use_packets", True))
    assert ("v_flow" in out) == (kw.get("cont_head", True) and kw.get("flow_token", True))
    assert settings.sigma == (0.6 if name == "cross" else 0.1)
    assert len(model.backbones) == (2 if name == "B5" else 1)


def test_variant_overrides_from_config_and_unknown_variant():
    kw, _ = resolve_variant({"variant_overrides": {"B1": {"n_layers": 3}}}, "B1")
    assert kw == {"flow_token": False, "n_layers": 3}
    with pytest.raises(ValueError, match="unknown JANUS variant"):
        resolve_variant({}, "B9")


def test_normaliser_fitted_on_train_standardises_and_clips():
    rng = np.random.default_rng(0)
    n, Ts = 300, 10
    pk = np.zeros((n, Ts, len(CHANNELS)), np.float32)
    lengths = rng.integers(1, 14, n)
    for i in range(n):
        k = min(lengths[i], Ts)
        pk[i, :k, 0] = rng.lognormal(6, 1, k)
        pk[i, :k, 1] = rng.exponential(0.1, k)
        pk[i, :k, 2] = 65535
        pk[i, :k, 3:] = rng.integers(0, 2, (k, 6))
    feats = pd.DataFrame({"a": rng.lognormal(3, 2, n), "b": -rng.lognormal(1, 1, n), "name": "x"})
    norm = Normaliser.fit(feats, pk, lengths, T=6, feature_clip=4.0)
    assert norm.feature_names == ["a", "b"]
    batch = norm.transform(feats, pk, lengths, n)
    assert batch.pkt.shape == (n, 6, 3) and batch.bits.shape == (n, 6, 6)
    v = batch.valid.numpy()
    np.testing.assert_array_equal(v.sum(1), np.minimum(lengths, 6))
    z = batch.pkt.numpy()[v]
    assert abs(z[:, 0].mean()) < 0.15 and abs(z[:, 0].std() - 1) < 0.15  # truncated to 6, fitted on 10
    assert float(np.abs(batch.pkt.numpy()[~v]).max()) == 0.0 and int(batch.bits.numpy()[~v].max()) == 0
    f = batch.flow.numpy()
    assert np.abs(np.median(f, axis=0)).max() < 1e-6 and np.abs(f).max() <= 4.0
    np.testing.assert_allclose(signed_log1p(np.array([-np.e + 1, 0, np.e - 1])), [-1, 0, 1])
    with pytest.raises(ValueError, match="lacks 1 columns"):
        norm.transform(feats.drop(columns="b"), pk, lengths, n, source="target.parquet")


def test_bf16_setting_auto_follows_the_hardware():
    from nidsflow.janus.score import bf16_enabled

    cpu = torch.device("cpu")
    assert bf16_enabled(True, cpu) and not bf16_enabled(False, cpu)
    assert bf16_enabled("auto", cpu) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_normaliser_resolves_timing_from_microseconds_to_minutes():
    """Issue 11: IAT in seconds through log1p erased sub-100 ms timing (1 ms vs 10 ms: 0.009 before
    standardising). Every continuous channel must resolve a factor 10 anywhere in its benign range by a
    good part of its benign spread: IAT from 10 us to a minute, sizes 40 B .. 1500 B, windows 100 .. 65 535."""
    rng = np.random.default_rng(1)
    n, Ts = 400, 8
    pk = np.zeros((n, Ts, len(CHANNELS)), np.float32)
    pk[..., 0] = np.exp(rng.uniform(np.log(40), np.log(1500), (n, Ts)))
    pk[..., 1] = np.exp(rng.uniform(np.log(1e-5), np.log(60.0), (n, Ts)))   # log-uniform 10 us .. 1 min
    pk[..., 2] = np.exp(rng.uniform(np.log(100), np.log(65535), (n, Ts)))
    lengths = np.full(n, Ts)
    norm = Normaliser.fit(None, pk, lengths, T=Ts)

    def z(channel, value):
        x = np.zeros((1, Ts, len(CHANNELS)), np.float32)
        x[0, :, 0], x[0, :, 1], x[0, :, 2] = 500, 0.01, 1000
        x[0, :, channel] = value
        return float(norm.transform(None, x, np.array([Ts]), 1).pkt[0, 0, channel])

    for channel, pairs in ((1, [(1e-5, 1e-4), (1e-3, 1e-2), (0.1, 1.0), (6.0, 60.0)]),
                           (0, [(40, 400), (150, 1500)]), (2, [(100, 1000), (6553, 65535)])):
        for lo, hi in pairs:
            assert z(channel, hi) - z(channel, lo) > 0.25, (CHANNELS[channel], lo, hi)
    # a model saved before the unit existed keeps its own transform (iat in seconds)
    legacy = {k: v for k, v in norm.state_dict().items() if k != "packet_unit_scale"}
    assert Normaliser.from_state_dict(legacy).packet_unit_scale == [1.0, 1.0, 1.0]
    assert Normaliser.from_state_dict(norm.state_dict()).packet_unit_scale == [1.0, 1e6, 1.0]
