"""JANUS paths against closed forms: OT-CFM path and velocity, OT coupling, mixture path, NLL, ODE solvers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nidsflow.janus.paths import (MASK_STATE, ConditionalOTPath, DegeneratePlanError, MixtureDiscretePath,
                                  OTPlanCoupler, bit_nll, masked_mse)
from nidsflow.janus.score import ODESolver


@pytest.mark.parametrize("sigma", [0.0, 0.1, 0.6])
@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 3)])
def test_conditional_path_matches_closed_form(sigma, shape):
    torch.manual_seed(0)
    np.random.seed(0)
    x0, x1, eps = torch.randn(shape), torch.randn(shape) * 3 + 1, torch.randn(shape)
    t = torch.rand(shape[0])
    path = ConditionalOTPath(sigma)
    xt = path.sample(x0, x1, t, eps)
    tb = t.reshape(-1, *([1] * (len(shape) - 1)))
    torch.testing.assert_close(xt, (1 - tb) * x0 + tb * x1 + sigma * eps)
    # end points: the source (plus noise) at t=0, the data (plus noise) at t=1
    torch.testing.assert_close(path.sample(x0, x1, torch.zeros(shape[0]), eps), x0 + sigma * eps)
    torch.testing.assert_close(path.sample(x0, x1, torch.ones(shape[0]), eps), x1 + sigma * eps)
    # the target velocity is the time derivative of the path (finite difference, exact for a line)
    h = 1e-3
    fd = (path.sample(x0, x1, t + h, eps) - path.sample(x0, x1, t - h, eps)) / (2 * h)
    torch.testing.assert_close(fd, path.target_velocity(x0, x1), atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(path.target_velocity(x0, x1), x1 - x0)


def test_masked_mse_ignores_masked_dims():
    pred, target = torch.tensor([[1.0, 2.0, 100.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    sse, cnt = masked_mse(pred, target, torch.tensor([[1.0, 1.0, 0.0]]))
    assert float(sse / cnt) == pytest.approx(2.5)


def test_ot_cost_matches_explicit_masked_distance():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(6, 10, generator=g), torch.randn(5, 10, generator=g)
    m = (torch.rand(5, 10, generator=g) > 0.3).float()
    c = OTPlanCoupler.cost(x0, x1, m)
    explicit = np.array([[float(((x0[i].double() - x1[j].double()) ** 2 * m[j].double()).sum()) for j in range(5)] for i in range(6)])
    np.testing.assert_allclose(c, explicit, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method,pairing", [("emd", "argmax"), ("sinkhorn", "argmax"), ("sinkhorn", "sample"),
                                            ("sinkhorn_log", "argmax"), ("sinkhorn_log", "sample_unique"),
                                            ("emd", "sample_unique")])
def test_ot_pairing_reduces_transport_cost(method, pairing):
    g = torch.Generator().manual_seed(2)
    n, d = 64, 8
    x0 = torch.randn(n, d, generator=g)
    x1 = torch.randn(n, d, generator=g) * 0.5 + torch.linspace(-2, 2, n)[:, None]
    m = torch.ones_like(x1)
    idx = OTPlanCoupler(method, 0.05, pairing).pair(x0, x1, m, np.random.default_rng(0))
    assert idx.shape == (n,) and idx.min() >= 0 and idx.max() < n
    paired = float(((x0[torch.from_numpy(idx)] - x1) ** 2).sum(1).mean())
    random = float(((x0 - x1) ** 2).sum(1).mean())  # independent draws = random pairing
    assert paired < 0.8 * random
    if method == "emd" or pairing == "sample_unique":  # an exact plan between equal uniform marginals is a
        assert len(np.unique(idx)) == n                 # permutation; sample_unique always draws one


def _production_batch(seed, B=256, F=40, T=20):
    """A JANUS-like minibatch: F flow-feature dims + T packets x 3 (100-d), data in 6 clusters of
    different spread, flows of 1..T packets (padding masked), noise N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    d = F + 3 * T
    centres = torch.randn(6, d, generator=g) * 0.8
    k = torch.randint(0, 6, (B,), generator=g)
    x1 = centres[k] + torch.randn(B, d, generator=g) * (0.3 + 0.15 * k[:, None])
    n_pkt = torch.randint(1, T + 1, (B,), generator=g)
    m = torch.cat([torch.ones(B, F), (torch.arange(T)[None, :] < n_pkt[:, None]).float().repeat_interleave(3, 1)], 1)
    return torch.randn(B, d, generator=g), x1 * m, m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_coupling_is_sharp_at_production_size(seed):
    """Issue 11: B 256, 100-d. The default coupling (log-domain Sinkhorn, reg relative to the centred cost's
    spread, pairs drawn from the plan) uses >= 95 % of the noise rows and its mean transport cost is within
    5 % of exact OT's (ot.emd). The seed's (reg 0.05 on C / max C, argmax) reused ~40 % of rows."""
    x0, x1, m = _production_batch(seed)
    B = len(x0)
    cost = OTPlanCoupler.cost(x0, x1, m)
    exact = OTPlanCoupler("emd").pair(x0, x1, m, np.random.default_rng(seed))
    exact_cost = cost[exact, np.arange(B)].mean()
    idx = OTPlanCoupler().pair(x0, x1, m, np.random.default_rng(seed))
    assert len(np.unique(idx)) >= 0.95 * B
    assert cost[idx, np.arange(B)].mean() <= 1.05 * exact_cost
    assert cost[idx, np.arange(B)].mean() < 0.9 * cost.mean()  # far from random pairing
    # the plan itself is sharp: its expected cost is within 5 % of the exact optimum
    coupler = OTPlanCoupler()
    p = coupler.plan(cost)
    assert (p * cost).sum() <= 1.05 * exact_cost
    assert np.abs(p.sum(0) * B - 1).mean() < 0.02  # stopped at a ~1 % marginal error (L2)


def test_sinkhorn_failure_raises_and_never_pairs_uniformly():
    x0, x1, m = _production_batch(3, B=32)
    cost = OTPlanCoupler.cost(x0, x1, m)
    bad = cost.copy()
    bad[0, 0] = np.nan
    for method in ("sinkhorn", "sinkhorn_log"):
        with pytest.raises(DegeneratePlanError, match="no fallback"):
            OTPlanCoupler(method).plan(bad)


def test_degenerate_plan_raises_loudly():
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g)
    with pytest.raises(DegeneratePlanError, match="no fallback"):
        OTPlanCoupler("sinkhorn", 1e-9).pair(x0, x1, torch.ones_like(x1), np.random.default_rng(0))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="ot_method"):
        OTPlanCoupler("greedy")
    with pytest.raises(ValueError, match="ot_reg_scale"):
        OTPlanCoupler(reg_scale="mean")
    with pytest.raises(ValueError, match="dfm_source"):
        MixtureDiscretePath("zeros")
    with pytest.raises(ValueError, match="solver"):
        ODESolver("heun", 4)


@pytest.mark.parametrize("source", ["mask", "uniform"])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_mixture_path_keeps_data_with_probability_kappa(source, power):
    path = MixtureDiscretePath(source, power)
    g = torch.Generator().manual_seed(4)
    bits = torch.randint(0, 2, (4000, 6), generator=g)
    for t in (0.0, 0.3, 0.7, 1.0):
        xt, corrupted = path.sample(bits, torch.full((4000,), t), g)
        kappa = t ** power
        assert abs(corrupted.float().mean().item() - (1 - kappa)) < 0.02
        assert torch.equal(xt[~corrupted], bits[~corrupted])
        if source == "mask":
            assert bool((xt[corrupted] == MASK_STATE).all())
        else:
            assert set(xt[corrupted].unique().tolist()) <= {0, 1}


def test_perfect_predictor_has_zero_nll_and_a_wrong_one_does_not():
    g = torch.Generator().manual_seed(5)
    bits = torch.randint(0, 2, (32, 8, 6), generator=g)
    perfect = (bits.float() * 2 - 1) * 30.0
    assert float(bit_nll(perfect, bits).max()) < 1e-12
    assert float(bit_nll(-perfect, bits).mean()) > 10
    assert float(bit_nll(torch.zeros_like(perfect), bits).mean()) == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_ode_solvers_match_their_closed_form_on_a_linear_field(method, steps):
    """dx/dt = x from t=1 to t=0 (h = -1/N): one step multiplies x by the Taylor polynomial of e^h of the
    solver's order (1 - 1/N [+ 1/(2N^2) [- 1/(6N^3) + 1/(24N^4)]]); a constant field moves x by exactly -v."""
    x1 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    h = -1.0 / steps
    order = {"euler": 1, "midpoint": 2, "rk4": 4}[method]
    factor = sum(h ** k / math.factorial(k) for k in range(order + 1)) ** steps
    x0 = ODESolver(method, steps).integrate(lambda x, t: x, x1)
    torch.testing.assert_close(x0, x1 * factor, atol=1e-12, rtol=1e-12)
    v = torch.tensor([[0.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(ODESolver(method, steps).integrate(lambda x, t: v, x1), x1 - v)
    assert ODESolver(method, steps).evaluations == order * steps


def test_rk4_converges_to_the_exact_solution():
    x1 = torch.tensor([[1.0]], dtype=torch.float64)
    err = [abs(float(ODESolver("rk4", n).integrate(lambda x, t: x, x1)) - math.exp(-1)) for n in (2, 4, 8)]
    assert err[0] > err[1] > err[2] and err[2] < 1e-5


def _linear_field(A):
    return lambda x, t: x @ A.T


@pytest.mark.parametrize("diagonal", [True, False])
def test_cnf_log_likelihood_of_a_linear_field_matches_the_closed_form(diagonal):
    """dx/dt = A x pushes N(0, I) at t=0 to x1 = e^A x0, so log p_1(x1) = log N(e^-A x1; 0, I) - tr(A)
    (the divergence of A x is tr A). Rademacher probes are exact for a diagonal A, scaled basis vectors for
    any A (Hutchinson's estimator is then the trace itself); masked dims are not part of the state."""
    from scipy.linalg import expm

    from nidsflow.janus.score import cnf_log_likelihood

    rng = np.random.default_rng(0)
    D, n = 4, 6
    A = np.diag([0.5, -0.3, 0.2, 0.8]) if diagonal else rng.normal(size=(D, D)) * 0.3
    mask = torch.ones(n, D, dtype=torch.float64)
    mask[3:, 3] = 0                                   # rows 3..5 model 3 dims only
    A_rows = [A if i < 3 else A[:3, :3] for i in range(n)]
    x1 = torch.from_numpy(rng.normal(size=(n, D))) * mask
    if diagonal:  # one Rademacher probe: e^T A e = tr A exactly when A is diagonal (e_i^2 = 1)
        g = torch.Generator().manual_seed(1)
        probes = torch.randint(0, 2, (1, n, D), generator=g).double() * 2 - 1
    else:  # probes sqrt(D) e_i (i = 1..D): mean_i D A_ii = tr A exactly
        probes = (math.sqrt(D) * torch.eye(D, dtype=torch.float64))[:, None, :].expand(D, n, D).clone()

    def field(x, t):  # rows with a masked dim: that dim is frozen and does not feed the others
        Am = torch.from_numpy(A)
        v = x @ Am.T
        v3 = x[:, :3] @ Am[:3, :3].T
        return torch.where(mask.bool(), torch.cat([v3, torch.zeros(n, 1, dtype=x.dtype)], 1) * (1 - mask[:, 3:])
                           + v * mask[:, 3:], torch.zeros_like(v))

    x0, logp = cnf_log_likelihood(field, x1, mask, probes, ODESolver("rk4", 32))
    for i in range(n):
        Ai = A_rows[i]
        d = len(Ai)
        xi = x1[i, :d].numpy()
        z = expm(-Ai) @ xi
        expect = -0.5 * z @ z - 0.5 * d * math.log(2 * math.pi) - np.trace(Ai)
        np.testing.assert_allclose(x0[i, :d].numpy(), z, atol=1e-7)
        assert float(logp[i]) == pytest.approx(expect, abs=1e-6)
