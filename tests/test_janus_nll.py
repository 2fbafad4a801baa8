"""flow_nll's parts against densities known in closed form or by enumeration (issue 23 item 1).

* the CNF log-density (score.cnf_log_likelihood, exact trace) of the project's own JANUS network and training
  objective, driven in 2-d (one flow token of 2 features, no packets), on a Gaussian mixture;
* the masked-diffusion negative ELBO (nll.masked_diffusion_nelbo) on 4-bit sequences whose 16 states are
  enumerated: >= the exact NLL of the model the denoiser defines, equal to it for the exact conditionals;
* the length model and the dequantised density of integer data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from nidsflow.janus.data import JanusBatch
from nidsflow.janus.model import JanusConfig, JanusModel
from nidsflow.janus.nll import LengthModel, masked_diffusion_nelbo, nelbo_draws
from nidsflow.janus.score import ODESolver, basis_probes, cnf_log_likelihood
from nidsflow.janus.train import JanusObjective
from nidsflow.janus.variants import TrainSettings

MEANS = np.array([[-1.5, 0.0], [1.5, 0.8]])
STD = 0.5
SIGMA = 0.05  # the CFM path's smoothing: the learned p_1 is the mixture convolved with N(0, SIGMA^2)


def _mixture(n, rng):
    c = rng.integers(0, 2, n)
    return MEANS[c] + STD * rng.standard_normal((n, 2))


def _mixture_logpdf(x, std):
    d = x[:, None, :] - MEANS[None]
    comp = -0.5 * (d ** 2).sum(-1) / std ** 2 - math.log(2 * math.pi * std ** 2)
    return np.logaddexp(comp[:, 0], comp[:, 1]) + math.log(0.5)


def _batch(x):
    n = len(x)
    return JanusBatch(torch.as_tensor(x, dtype=torch.float32), torch.zeros(n, 0, 3), torch.zeros(n, 0, 6, dtype=torch.long),
                      torch.zeros(n, 0, dtype=torch.bool))


def test_cnf_log_density_of_a_trained_2d_flow_matches_the_true_density():
    """JANUS's network (flow token only) trained by JANUS's objective (CFM, sigma 0.05) on a 2-d Gaussian
    mixture (800 steps, ~6 s): the exact-trace CNF log-density of held-out points is within 0.05 nats per dimension of the
    true density (mixture convolved with the path's N(0, sigma^2)), on average over the points (measured
    0.007; with OT coupling, 2 layers and 1 500 steps 0.004)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = JanusModel(JanusConfig(n_flow_features=2, T=1, d_model=32, n_layers=1, n_heads=2, dropout=0.0,
                                   use_packets=False, disc_head=False))
    # independent coupling (ot False): the minibatch OT plan costs 4x the time here and gives the same density
    obj = JanusObjective(model, TrainSettings(sigma=SIGMA, ot=False))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 800)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(800):
        loss = obj(_batch(_mixture(256, rng)), gen, rng, torch.device("cpu")).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    x = _mixture(400, np.random.default_rng(1))
    b = _batch(x)
    ones = torch.ones(len(x))

    def velocity(z, t):
        return model(z, b.pkt, b.bits, b.valid, ones * t, ones, want_disc=False)["v_flow"]

    with torch.no_grad():
        _, logp = cnf_log_likelihood(velocity, b.flow, torch.ones_like(b.flow), None, ODESolver("rk4", 16))
    true = _mixture_logpdf(x, math.sqrt(STD ** 2 + SIGMA ** 2))
    gap = abs(float(logp.mean()) - true.mean()) / 2
    assert gap < 0.05, (float(logp.mean()), true.mean())
    assert np.corrcoef(logp.numpy(), true)[0, 1] > 0.95


def test_exact_trace_equals_the_jacobian_trace_and_masked_dims_stay_out():
    """basis_probes give tr(J) over the modelled dims exactly (a linear field v = A x: div = tr(A_mm)), and a
    masked dim is held still: its value and its diagonal entry change nothing."""
    A = torch.tensor([[0.3, 1.0, 2.0], [0.5, -0.7, 1.0], [4.0, 3.0, 5.0]])
    x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    probes = basis_probes(mask)
    assert probes.shape == (3, 2, 3) and probes[2, 0].abs().sum() == 0
    x0, logp = cnf_log_likelihood(lambda z, t: z @ A.T, x, mask, None, ODESolver("euler", 1))
    # one Euler step back from t = 1: x0 = x - v(x) on modelled dims; l(0) = -tr(A_mm)
    v = (x @ A.T) * mask
    np.testing.assert_allclose(x0.numpy(), (x - v).numpy(), rtol=1e-6)
    np.testing.assert_allclose(x0[0, 2], 3.0)
    lognorm = -0.5 * ((x0 ** 2) * mask).sum(1) - 0.5 * mask.sum(1) * math.log(2 * math.pi)
    np.testing.assert_allclose((logp - lognorm).numpy(), [-(0.3 - 0.7), -(0.3 - 0.7 + 5.0)], rtol=1e-5)


# ------------------------------------------------------------------ masked-diffusion NELBO on 4 bits

N_BITS = 4
STATES = np.array(list(itertools.product([0, 1], repeat=N_BITS)))


def _joint():
    """A correlated distribution over the 16 states (an Ising-like chain)."""
    s = 2 * STATES - 1
    energy = 0.9 * (s[:, :-1] * s[:, 1:]).sum(1) + 0.4 * s[:, 0] - 0.3 * s[:, 2]
    p = np.exp(energy)
    return p / p.sum()


def _exact_denoiser(p):
    """p(x_i = 1 | unmasked bits): the true conditionals of the joint (independent of t), tabulated over
    the 3^4 partially masked states."""
    table = np.zeros((3 ** N_BITS, N_BITS))
    for idx, row in enumerate(itertools.product([0, 1, 2], repeat=N_BITS)):
        row = np.array(row)
        keep = row != 2
        w = p * (STATES[:, keep] == row[keep]).all(1)
        q = np.clip((w[:, None] * STATES).sum(0) / w.sum(), 1e-9, 1 - 1e-9)
        table[idx] = np.log(q) - np.log1p(-q)
    powers = 3 ** np.arange(N_BITS)[::-1]

    def denoise(xt, t):
        return torch.from_numpy(table[xt[:, :, 0].numpy() @ powers])[:, :, None]
    return denoise


def _logistic_denoiser(W, b):
    """An inconsistent denoiser: logit_i = b_i + sum_{j unmasked} W_ij (2 x_j - 1)."""
    def denoise(xt, t):
        x = xt[:, :, 0].double()
        s = torch.where(x == 2, torch.zeros_like(x), 2 * x - 1)
        return (b[None] + s @ W.T)[:, :, None]
    return denoise


def _order_model(denoise):
    """Exact NLL of the model the reverse process defines (positions unmasked in a uniformly random order,
    each drawn from the denoiser) and its exact NELBO = E_order[-log prod], by enumerating 4! orders x 16 states."""
    nll, nelbo = np.zeros(len(STATES)), np.zeros(len(STATES))
    orders = list(itertools.permutations(range(N_BITS)))
    for si, x in enumerate(STATES):
        lik, logs = [], []
        for order in orders:
            xt = np.full(N_BITS, 2)
            lp = 0.0
            for i in order:
                logit = float(denoise(torch.from_numpy(xt[None, :, None]), torch.ones(1))[0, i, 0])
                lp += -math.log1p(math.exp(-logit)) if x[i] == 1 else -math.log1p(math.exp(logit))
                xt[i] = x[i]
            lik.append(math.exp(lp))
            logs.append(lp)
        nll[si] = -math.log(np.mean(lik))
        nelbo[si] = -np.mean(logs)
    return nll, nelbo


def _mc_nelbo(denoise, K, reps, seed=0):
    bits = torch.from_numpy(np.repeat(STATES, reps, axis=0))[:, :, None].long()
    valid = np.ones((len(bits), N_BITS), dtype=bool)
    gens = [np.random.default_rng([seed, r]) for r in range(len(bits))]
    draws = nelbo_draws(gens, valid, 1, K, N_BITS, kappa_power=1.0)
    est = masked_diffusion_nelbo(denoise, bits, draws).numpy()
    return est.reshape(len(STATES), reps).mean(1)


def test_masked_diffusion_nelbo_bounds_the_enumerated_nll_with_a_stated_gap():
    """For an inconsistent (logistic) denoiser: the Monte-Carlo NELBO matches the exact NELBO (enumerated over
    orders), which is >= the exact NLL of the model the denoiser defines, with a gap of at most 0.5 nats per
    4-bit state here (measured: 0.015-0.134, mean 0.056). For the exact conditionals of a joint the gap is 0: the
    NELBO equals -log p(x) (the any-order chain rule)."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(N_BITS, N_BITS, generator=g, dtype=torch.float64) * 0.5
    W.fill_diagonal_(0)
    b = torch.randn(N_BITS, generator=g, dtype=torch.float64)
    den = _logistic_denoiser(W, b)
    nll, nelbo = _order_model(den)
    assert (nelbo >= nll - 1e-9).all()
    gap = nelbo - nll
    assert gap.max() < 0.25 and gap.mean() > 0.02, gap
    mc = _mc_nelbo(den, K=4, reps=1000)
    np.testing.assert_allclose(mc, nelbo, atol=0.06)
    assert mc.mean() >= nll.mean()

    p = _joint()
    mc_exact = _mc_nelbo(_exact_denoiser(p), K=4, reps=1000)
    np.testing.assert_allclose(mc_exact, -np.log(p), atol=0.1)   # Monte-Carlo noise of 4 draws x 1000
    assert np.abs(mc_exact + np.log(p)).mean() < 0.03


def test_nelbo_draws_depend_on_the_flow_not_its_batch():
    valid = np.array([[True] * 3 + [False] * 2, [True] * 5])
    a = nelbo_draws([np.random.default_rng([1, 11]), np.random.default_rng([1, 22])], valid, 6, 3, 8, 1.0)
    b = nelbo_draws([np.random.default_rng([1, 22])], valid[1:, :5], 6, 3, 8, 1.0)
    np.testing.assert_array_equal(a.masked[:, 1], b.masked[:, 0])
    np.testing.assert_array_equal(a.t[:, 1], b.t[:, 0])
    assert not a.masked[:, 0, 3:].any()                    # padding is never masked
    m = a.masked[:, 0].sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(a.weight[:, 0].numpy(), 18 / m)  # N / m with N = 3 packets x 6 bits


def test_length_model_is_a_smoothed_categorical():
    lm = LengthModel.fit(np.array([1, 1, 1, 2, 9, 12, 40]), T=8)
    assert lm.counts == [3, 1, 0, 0, 0, 0, 0, 3]
    p = np.exp(-lm.nll(np.arange(1, 9)))
    np.testing.assert_allclose(p.sum(), 1.0)
    np.testing.assert_allclose(lm.nll(np.array([1, 100, 8])), -np.log([4 / 15, 4 / 15, 4 / 15]))
    assert np.isnan(lm.nll(np.array([0])))[0]
    assert LengthModel.from_state_dict(lm.state_dict()) == lm


# ------------------------------------------------------------------ the flow_nll score option end to end

def test_density_inputs_dequantise_integers_with_the_exact_jacobian_and_leave_fixed_coordinates_out():
    """Integer data (sizes, windows, integer features) dequantised inside each integer's cell: z and log|dz/dx|
    agree with a finite difference of the transform, the first IAT, a non-TCP flow's window, padding and a
    constant feature are not modelled, and everything is finite."""
    import pandas as pd

    from nidsflow.janus.data import Normaliser

    rng = np.random.default_rng(0)
    n, T = 50, 4
    feats = pd.DataFrame({"count": rng.integers(0, 30, n).astype(float), "mean": rng.gamma(2.0, 50.0, n),
                          "const": np.full(n, 6.0)})
    pk = np.zeros((n, T, 9))
    pk[..., 0] = rng.integers(40, 1500, (n, T))
    pk[..., 1] = rng.exponential(0.01, (n, T))
    pk[:, 0, 1] = 0.0
    tcp = np.arange(n) % 2 == 0
    pk[tcp, :, 2] = rng.integers(0, 65535, (int(tcp.sum()), T))
    pk[tcp, :, 8] = 1.0                                          # ack
    ln = rng.integers(1, T + 3, n)
    norm = Normaliser.fit(feats, pk, ln, T)
    assert norm.feature_integer == [True, False, True] and norm.feature_constant == [False, False, True]
    u_f, u_p = rng.random((n, 3)), rng.random((n, T, 3))
    di = norm.density_inputs(feats, pk, ln, n, u_f, u_p)
    assert torch.isfinite(di.flow).all() and torch.isfinite(di.pkt).all() and np.isfinite(di.log_jac.numpy()).all()
    valid = np.arange(T)[None] < np.minimum(ln, T)[:, None]
    mp = di.pkt_modelled.numpy()
    assert not mp[:, 0, 1].any() and not mp[~tcp][:, :, 2].any() and (mp[tcp][:, :, 2] == valid[tcp]).all()
    assert (mp[:, :, 0] == valid).all() and not di.flow_modelled[:, 2].any()
    # the Jacobian: log dz/dx by a central difference of z in the raw value, summed over modelled coordinates
    h = 1e-6
    step = h * np.array([1, 0, 1])
    feats2 = feats.assign(mean=feats["mean"] + h)
    pk2 = pk.copy()
    pk2[..., 1] += h
    up = norm.density_inputs(feats2, pk2, ln, n, u_f + step, u_p + step)
    dzf = (up.flow - di.flow).numpy() / h
    dzp = (up.pkt - di.pkt).numpy() / h
    mf = di.flow_modelled.numpy()
    fd = np.where(mf, np.log(np.abs(dzf) + 1e-300), 0).sum(1) + np.where(mp, np.log(np.abs(dzp) + 1e-300), 0).sum((1, 2))
    np.testing.assert_allclose(fd, di.log_jac.numpy(), atol=1e-2)  # the IAT step (1 us) is not tiny in us units


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from nidsflow.fixtures import make_scan_flood_store
    from nidsflow.janus.train import train_janus
    from nidsflow.splits import make_split
    from nidsflow.store import Store

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nll")
    make_scan_flood_store(root / "store", n_benign=400, n_scan=40, n_flood=40, T=10, seed=1, shard_flows=300)
    make_split(Store(root / "store").flows, seed=42, n_train=250, n_val=80).save(root / "split.npz")
    cfg = {"T": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "epochs": 3, "batch_size": 64,
           "lr": 0.003, "warmup_steps": 5, "solver": "midpoint", "solver_steps": 2, "disc_times": [0.5],
           "score_batch_size": 128, "score_seed": 7, "flow_nll": True, "flow_nll_trace": "exact", "ot": False}
    model = train_janus(root / "store", root / "split.npz", root / "m", cfg, "full", 42, progress=False)
    return model, root / "store", root / "split.npz", cfg


def test_flow_nll_columns_are_finite_nats_and_do_not_depend_on_the_batch(toy):
    from nidsflow.evaluate.aggregators import make_aggregator
    from nidsflow.janus.score import score_split
    from nidsflow.scores import FLOW_NLL_SCORES, JANUS_SCORE_NAMES

    model, store, split, cfg = toy
    tab = score_split(model, store, split, cfg, progress=False)
    assert tab.score_names == JANUS_SCORE_NAMES + FLOW_NLL_SCORES
    S = tab.scores[:, 10:].astype(np.float64)
    assert np.isfinite(S).all()
    np.testing.assert_allclose(S[:, 0], S[:, 1:4].sum(1), rtol=1e-5)     # total = cont + disc + len
    assert (S[:, 4] < S[:, 0]).all()  # without the raw values' Jacobian (sizes and IATs of many units: log dz/dx < 0)
    assert (S[:, 2] > 0).all() and (S[:, 3] > 0).all()
    assert np.std(S[:, 0]) > 0
    other = score_split(model, store, split, {**cfg, "score_batch_size": 29}, progress=False)
    np.testing.assert_allclose(other.scores, tab.scores, rtol=2e-4, atol=2e-3)
    assert make_aggregator("A10").fit_table(tab).columns == ("flow_nll",)
    # A1 reads the seed's 10-d vector only, whatever options a score file holds
    plain = score_split(model, store, split, {**cfg, "flow_nll": False}, progress=False)
    np.testing.assert_allclose(make_aggregator("A1").fit_table(tab).score_table(tab),
                               make_aggregator("A1").fit_table(plain).score_table(plain), rtol=1e-4)
    hut = score_split(model, store, split, {**cfg, "flow_nll_trace": "hutchinson", "flow_nll_probes": 8}, progress=False)
    assert np.corrcoef(hut.column("flow_nll_cont"), tab.column("flow_nll_cont"))[0, 1] > 0.9


def test_nll_variant_trains_on_dequantised_integers_with_fixed_coordinates_clean(toy):
    """Variant nll: integer coordinates move inside their cell (never past it), the fixed coordinates are given
    clean and are out of the loss; a trained model's flow_nll is finite. With both options off (full) the
    state and the random stream are untouched."""
    from nidsflow.janus.score import score_split
    from nidsflow.janus.train import flow_nll_training_state, load_training_data, train_janus
    from nidsflow.janus.variants import resolve_variant
    from nidsflow.splits import Split
    from nidsflow.store import Store

    model, store, split, cfg = toy
    kw, ts = resolve_variant(cfg, "nll")
    assert ts.cont_dequantise and ts.cont_fixed_clean
    _, train, _ = load_training_data(Store(store), Split.load(split), kw, ts, 0)
    b = train.index(slice(0, 64))
    B = len(b)
    x1 = torch.cat([b.flow, b.pkt.reshape(B, -1)], 1)
    m = torch.cat([torch.ones_like(b.flow), b.valid[..., None].expand_as(b.pkt).reshape(B, -1).float()], 1)
    g = torch.Generator().manual_seed(0)
    x1d, md, fixed = flow_nll_training_state(b, x1, m, True, True, ts, g)
    cell = torch.cat([b.flow_cell, b.pkt_cell.reshape(B, -1)], 1)
    moved = x1d - x1
    assert (moved >= 0).all() and (moved <= cell + 1e-6).all() and (moved > 0).any()
    assert fixed.any() and (md[fixed] == 0).all() and (md[~fixed] == m[~fixed]).all()
    assert b.pkt_fixed[:, 0, 1][b.valid[:, 0]].all()          # the first IAT of every flow
    _, off = resolve_variant(cfg, "full")
    g2 = torch.Generator().manual_seed(0)
    same = flow_nll_training_state(b, x1, m, True, True, off, g2)
    assert torch.equal(same[0], x1) and torch.equal(same[1], m) and same[2] is None
    assert torch.equal(g2.get_state(), torch.Generator().manual_seed(0).get_state())

    nll_model = train_janus(store, split, model.parent.parent / "nll", {**cfg, "epochs": 2}, "nll", 42, progress=False)
    tab = score_split(nll_model, store, split, {**cfg, "epochs": 2}, progress=False)
    assert np.isfinite(tab.column("flow_nll")).all()
