"""The 10-d JANUS score vector of each flow (SPEC "JANUS", names ``scores.JANUS_SCORE_NAMES``).

Continuous side (the learned ODE dx/dt = v_theta(x, t), integrated from the data x(1) = x1 back to
t = 0 by :class:`ODESolver`; the binary state is held fixed at the flow's clean bits with
t_disc = 1 during the integration, i.e. the velocity is conditioned on the true flags):

    terminal_norm   = ||x(0)||^2 / D        over all D modelled continuous dims (flow + valid packets)
    terminal_flow   = ||x_flow(0)||^2 / F   over the F flow-feature dims
    terminal_packet = ||x_pkt(0)||^2 / (3 n) over the valid packets' (size, iat, win) dims

Under the Gaussian source each is ~1 for a benign flow; larger = less typical.

Discrete side (the DFM head, continuous state clean with t_cont = 1): for each t in ``disc_times``
the bits are corrupted by the mixture path (Eq. D1), and

    disc_nll_<ch>   = sum_{t, i corrupted} -log p_theta(b_i | x_t) / #{t, i corrupted}   (per channel)
    disc_nll_total  = the same pooled over the six channels

The corruption draws of a flow come from its own generator, seeded by (``score_seed``, key), with key
the flow's own :func:`~nidsflow.janus.data.flow_keys` (5-tuple and first-packet time; callers pass it as
``flow_ids``), and cover the model's full T whatever the batch is cut to, so a flow's scores do not depend on which
flows are batched with it (nor on ``score_batch_size``). A channel in which no valid position was
drawn corrupted at any t (a short flow, or t near 1) is not filled with 0, the most benign value:
its position and time closest to being drawn (largest u - kappa_t) is corrupted instead, so every
channel of every flow is scored by the model (such channels are counted in the log). A flow with no
valid packet has NaN disc scores (the aggregators then score it +inf, logged).

Variants without a head write NaN in that head's columns, so every score file keeps the 10 columns:
no CFM head (B4): the three terminal_* are NaN; no DFM head (B2, B3): the seven disc_nll_* are NaN;
no FLOW token (B1): terminal_flow is NaN (terminal_norm covers the packet dims); no packet sequence
(B2): terminal_packet is NaN (terminal_norm = terminal_flow).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nidsflow.janus.data import N_BIN, JanusBatch, Normaliser, flow_keys, load_raw
from nidsflow.janus.model import JanusModel
from nidsflow.janus.nll import LengthModel, masked_diffusion_nelbo, nelbo_draws
from nidsflow.janus.paths import MixtureDiscretePath, bit_nll
from nidsflow.janus.train import load_model, pick_device
from nidsflow.janus.variants import ScoreSettings, score_settings, training_config
from nidsflow.scores import CNF_SCORE, FLOW_NLL_SCORES, JANUS_SCORE_NAMES, ScoreTable
from nidsflow.training import bf16_native
from nidsflow.splits import Split
from nidsflow.store import Store

log = logging.getLogger(__name__)


class ODESolver:
    """Fixed-step integration of dx/dt = f(x, t) from t = 1 to t = 0 (step h = -1/steps).

    euler:    x <- x + h f(x, t)                                          (1 evaluation per step)
    midpoint: x <- x + h f(x + h/2 f(x, t), t + h/2)                      (2)
    rk4:      x <- x + h/6 (k1 + 2 k2 + 2 k3 + k4), classical Runge-Kutta (4)
    """

    METHODS = {"euler": 1, "midpoint": 2, "rk4": 4}

    def __init__(self, method: str = "midpoint", steps: int = 8):
        if method not in self.METHODS:
            raise ValueError(f"solver must be one of {sorted(self.METHODS)}, got {method!r}")
        if steps < 1:
            raise ValueError(f"solver_steps must be >= 1, got {steps}")
        self.method, self.steps = method, int(steps)

    @property
    def evaluations(self) -> int:
        return self.METHODS[self.method] * self.steps

    def integrate(self, f, x: torch.Tensor, t1: float = 1.0, t0: float = 0.0) -> torch.Tensor:
        h = (t0 - t1) / self.steps
        t = t1
        for _ in range(self.steps):
            if self.method == "euler":
                x = x + h * f(x, t)
            elif self.method == "midpoint":
                x = x + h * f(x + 0.5 * h * f(x, t), t + 0.5 * h)
            else:
                k1 = f(x, t)
                k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
                k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
                k4 = f(x + h * k3, t + h)
                x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
            t = t + h
        return x


def cnf_log_likelihood(velocity, x1: torch.Tensor, mask: torch.Tensor, probes: torch.Tensor | None, solver: ODESolver,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x(0), log p_1(x1)) of the continuous normalising flow dx/dt = v(x, t) with source N(0, I) at t = 0.

    Instantaneous change of variables (Chen et al. 2018, Eq. 4; FFJORD, Grathwohl et al. 2019):
    d log p(x_t)/dt = -tr(dv/dx), so, integrating the augmented state (x, l) with dl/dt = div v from
    t = 1 (x = x1, l = 0) back to t = 0,

        log p_1(x1) = log N(x(0); 0, I) + l(0),   l(0) = -int_0^1 div v(x_t, t) dt,

    over the dims where ``mask`` is 1: the others (padding, coordinates fixed by the rest of the flow) are
    not part of the state; they are held at their values (velocity 0) and stay out of the divergence.
    The divergence is Hutchinson's estimator tr(J) ~ mean_k e_k^T J e_k with the fixed probes e_k
    [K, n, D] (Rademacher: exact for a diagonal J), one vector-Jacobian product per probe and
    evaluation; ``probes=None`` computes the exact trace sum_j e_j^T J e_j over the modelled dims
    (:func:`basis_probes`, one product per modelled dim of the widest row).
    """
    m = mask.to(x1.dtype)
    exact = probes is None
    probes = basis_probes(mask).to(x1.dtype) if exact else probes.to(x1.dtype) * m
    D = x1.shape[1]

    def augmented(z, t):
        with torch.enable_grad():
            x = z[:, :D].detach().requires_grad_(True)
            v = velocity(x, t) * m
            div = torch.zeros(len(x), dtype=x1.dtype, device=x1.device)
            for k in range(len(probes)):
                (g,) = torch.autograd.grad(v, x, probes[k], retain_graph=k + 1 < len(probes))
                div = div + (g * probes[k]).sum(1)
        return torch.cat([v.detach().to(x1.dtype), (div / (1 if exact else max(len(probes), 1)))[:, None]], 1)

    z0 = solver.integrate(augmented, torch.cat([x1, torch.zeros(len(x1), 1, dtype=x1.dtype, device=x1.device)], 1))
    x0, l0 = z0[:, :D], z0[:, D]
    log_n = -0.5 * ((x0 ** 2) * m).sum(1) - 0.5 * m.sum(1) * math.log(2 * math.pi)
    return x0, log_n + l0


def basis_probes(mask: torch.Tensor) -> torch.Tensor:
    """[K, n, D] one-hot probes: probe k of row r is the unit vector of r's k-th modelled dim (0 once r has
    fewer than k + 1), K the widest row's count, so sum_k e_k^T J e_k is the exact trace over the
    modelled dims."""
    mb = mask.bool()
    n, D = mb.shape
    K = int(mb.sum(1).max()) if n else 0
    rank = mb.long().cumsum(1) - 1                               # k of each modelled dim in its row
    out = torch.zeros(max(K, 0), n, D, dtype=torch.float32, device=mask.device)
    r, j = torch.nonzero(mb, as_tuple=True)
    out[rank[r, j], r, j] = 1.0
    return out


class JanusScorer:
    """Computes the 10 scores of normalised flows in batches (see the module docstring)."""

    def __init__(self, model: JanusModel, settings: ScoreSettings, device: str | torch.device | None = None,
                 dfm_source: str = "mask", kappa_power: float = 1.0, progress: bool = True,
                 normaliser: Normaliser | None = None, length_model: LengthModel | None = None):
        """``normaliser`` and ``length_model`` (the model's own) are needed by the ``flow_nll`` option only."""
        self.model = model.eval()
        self.normaliser, self.length_model = normaliser, length_model
        self.s = settings
        self.device = pick_device(str(device) if device is not None else None)
        self.model.to(self.device)
        for p in self.model.parameters():  # scoring differentiates w.r.t. the state only (cnf_nll)
            p.requires_grad_(False)
        self.solver = ODESolver(settings.solver, settings.solver_steps)
        self.dpath = MixtureDiscretePath(dfm_source, kappa_power)
        self.progress = progress
        self.n_forced = self.n_no_packet = 0

    def _autocast(self):
        if bf16_enabled(self.s.score_bf16, self.device):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def score_names(self) -> tuple[str, ...]:
        """The columns :meth:`score` returns: the 10-d vector, then the enabled score options."""
        return JANUS_SCORE_NAMES + ((CNF_SCORE,) if self.s.cnf_nll else ()) + (FLOW_NLL_SCORES if self.s.flow_nll else ())

    @torch.no_grad()
    def terminal(self, b: JanusBatch, flow_ids: np.ndarray | None = None, cnf: np.ndarray | None = None) -> np.ndarray:
        """[n, 3]: terminal_norm, terminal_flow, terminal_packet (NaN where not modelled).

        With ``cnf_nll`` on and ``flow_ids``, the same integration also yields the CNF's exact
        negative log-likelihood per modelled dim, -log p_1(x) / D (:func:`cnf_log_likelihood`), written
        into ``cnf`` [n]; the probes are drawn per flow from (score_seed, flow_id)."""
        cfg = self.model.cfg
        n = len(b)
        out = np.full((n, 3), np.nan, dtype=np.float64)
        if cnf is None:
            cnf = np.full(n, np.nan)
        if not cfg.cont_head:
            return out
        use_flow, use_pkt = self.model.models_flow, cfg.use_packets
        F = b.flow.shape[1] if use_flow else 0
        pkt_shape = b.pkt.shape
        ones = torch.ones(n, device=self.device)
        m = b.valid[..., None].expand(pkt_shape).reshape(n, -1).float()
        x = torch.cat([b.flow if use_flow else b.flow[:, :0], b.pkt.reshape(n, -1) if use_pkt else b.pkt.reshape(n, -1)[:, :0]], 1)

        velocity = self._velocity(b, F)

        if flow_ids is not None and self.s.cnf_nll:
            mask = torch.cat([torch.ones_like(b.flow) if use_flow else b.flow[:, :0], m if use_pkt else m[:, :0]], 1)
            x0, logp = cnf_log_likelihood(velocity, x, mask, self._probes(flow_ids, x.shape[1], F), self.solver)
            cnf[:] = (-logp / mask.sum(1).clamp_min(1)).double().cpu().numpy()
        else:
            x0 = self.solver.integrate(velocity, x)
        sq = x0.double() ** 2
        flow_sq = sq[:, :F].sum(1) if use_flow else torch.zeros(n, dtype=torch.float64, device=x.device)
        pkt_sq = (sq[:, F:] * m).sum(1) if use_pkt else torch.zeros_like(flow_sq)
        n_pkt = m.sum(1).double() if use_pkt else torch.zeros_like(flow_sq)
        out[:, 0] = ((flow_sq + pkt_sq) / (F + n_pkt).clamp_min(1)).cpu().numpy()
        if use_flow:
            out[:, 1] = (flow_sq / F).cpu().numpy()
        if use_pkt:
            out[:, 2] = (pkt_sq / n_pkt.clamp_min(1)).cpu().numpy()
        return out

    def _velocity(self, b: JanusBatch, F: int):
        """v(x, t) on the flattened continuous state [n, F + 3 L] (flow dims, then packet dims), the binary
        state held at the flow's clean bits with t_disc = 1."""
        n, pkt_shape = len(b), b.pkt.shape
        use_flow, use_pkt = self.model.models_flow, self.model.cfg.use_packets
        ones = torch.ones(n, device=self.device)

        def velocity(x, t):
            xf = x[:, :F] if use_flow else b.flow
            xp = x[:, F:].reshape(pkt_shape) if use_pkt else b.pkt
            with self._autocast():
                o = self.model(xf, xp, b.bits, b.valid, ones * t, ones, want_disc=False)
            parts = []
            if use_flow:
                parts.append(o["v_flow"].float())
            if use_pkt:
                parts.append(o["v_pkt"].float().reshape(n, -1))
            return torch.cat(parts, 1)
        return velocity

    @torch.no_grad()
    def flow_nll(self, b: JanusBatch, keys: np.ndarray, raw: tuple | None) -> np.ndarray:
        """[n, 5]: flow_nll, its parts (continuous, discrete, length) and flow_nll_z, nats per flow (:mod:`janus.nll`).

        flow_nll_z = flow_nll minus the transform's log-Jacobian part of the continuous term: the same NLL
        in the model's standardised coordinates (a density of z, not of raw values), whose ranking the raw
        magnitudes' Jacobian, log(1 + x) per coordinate, does not dominate.

        ``b`` is the normalised (trimmed) batch; ``raw`` = (features, packets, lengths) of the same rows as
        the store holds them (the continuous part is a density of raw values, so it needs them). Every
        random draw of a flow comes from generators seeded by (score_seed, key, part). A part the variant
        does not model is NaN and left out of the total (no CFM head: no continuous part; no DFM head, a
        uniform DFM source or no packets: no discrete part; no packets: no length part).
        """
        n, cfg, s = len(b), self.model.cfg, self.s
        out = np.full((n, 5), np.nan)
        jac = np.zeros(n)
        seed = int(s.score_seed) & 0xFFFFFFFF
        keys = np.asarray(keys, dtype=np.int64)
        if cfg.cont_head and raw is not None and self.normaliser is not None:
            out[:, 1], jac = self._cont_nll(b, keys, raw, seed)
        if cfg.disc_head and cfg.use_packets and self.dpath.source == "mask":
            gens = [np.random.default_rng([seed, int(k), 3]) for k in keys]
            valid = b.valid.cpu().numpy()
            draws = nelbo_draws(gens, valid, N_BIN, int(s.flow_nll_disc_draws), int(cfg.T), self.dpath.kappa_power)
            ones = torch.ones(n, device=self.device)

            def denoise(xt, t):
                with self._autocast():
                    return self.model(b.flow, b.pkt, xt, b.valid, ones, t, want_cont=False)["bit_logits"]
            nelbo = masked_diffusion_nelbo(denoise, b.bits, draws).cpu().numpy()
            out[:, 2] = np.where(valid.any(1), nelbo, np.nan)
        if cfg.use_packets and self.length_model is not None:
            out[:, 3] = self.length_model.nll(b.valid.sum(1).cpu().numpy())
        parts = out[:, 1:4]
        modelled = np.isfinite(parts).any(0)
        out[:, 0] = parts[:, modelled].sum(1) if modelled.any() else np.nan
        out[:, 4] = out[:, 0] - jac
        return out

    def _cont_nll(self, b: JanusBatch, keys: np.ndarray, raw: tuple, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(-log p(x + u) of the raw continuous values, its part -log|dz/dx|), each averaged over
        ``flow_nll_dequant_draws`` draws of u."""
        cfg, s, norm = self.model.cfg, self.s, self.normaliser
        n, L = len(b), b.valid.shape[1]
        feats, pk, ln = raw
        use_flow, use_pkt = self.model.models_flow, cfg.use_packets
        F = len(norm.feature_names) if use_flow else 0
        R = int(s.flow_nll_dequant_draws)
        gens = [np.random.default_rng([seed, int(k), 2]) for k in keys]
        uf = np.stack([g.random((R, len(norm.feature_names))) for g in gens], 1) if n else np.zeros((R, 0, 0))
        up = np.stack([g.random((R, norm.T, 3)) for g in gens], 1) if n else np.zeros((R, 0, norm.T, 3))
        probes = None
        if s.flow_nll_trace == "hutchinson":
            full = F + 3 * int(norm.T)
            e = np.stack([np.random.default_rng([seed, int(k), 4]).integers(0, 2, (int(s.flow_nll_probes), full))
                          for k in keys], 1) * 2.0 - 1.0
            keep = np.r_[np.arange(F), F + np.arange(3 * L)] if use_pkt else np.arange(F)
            probes = torch.from_numpy(e[:, :, keep]).float().to(self.device)
        velocity = self._velocity(b, F)
        total, jac = np.zeros(n), np.zeros(n)
        for r in range(R):
            di = norm.density_inputs(feats if use_flow else None, pk if use_pkt else None, ln, n, uf[r], up[r])
            xs, ms = [], []
            if use_flow:
                xs.append(di.flow)
                ms.append(di.flow_modelled)
            if use_pkt:
                xs.append(di.pkt[:, :L].reshape(n, -1))
                ms.append(di.pkt_modelled[:, :L].reshape(n, -1))
            x = torch.cat(xs, 1).float().to(self.device)
            mask = torch.cat(ms, 1).float().to(self.device)
            _, logp = cnf_log_likelihood(velocity, x, mask, probes, self.solver)
            total += -(logp.double().cpu().numpy() + di.log_jac.numpy())
            jac += -di.log_jac.numpy()
        return total / R, jac / R

    @torch.no_grad()
    def disc_nll(self, b: JanusBatch, flow_ids: np.ndarray, batch_index: int = 0) -> np.ndarray:
        """[n, 7]: disc_nll_total then one per binary channel (NaN without a DFM head): the mean over
        corrupted valid positions of :meth:`disc_positions`' NLL.

        ``disc_draws = "batch"`` is the seed's scoring, kept only for issue 11's before/after ablation: the
        draws come from one generator per score batch (seeded by (score_seed, ``batch_index``)) and a
        channel with no corrupted position scores 0."""
        n = len(b)
        out = np.full((n, 1 + N_BIN), np.nan, dtype=np.float64)
        if not self.model.cfg.disc_head:
            return out
        nll, w = self.disc_positions(b, flow_ids, batch_index)
        s = (nll * w).sum(dim=(0, 2))                                    # [n, 6]
        c = w.sum(dim=(0, 2))
        empty = 0.0 if self.s.disc_draws == "batch" else torch.nan
        per = torch.where(c > 0, s / c.clamp_min(1), torch.full_like(s, empty))
        total = torch.where(c.sum(1) > 0, s.sum(1) / c.sum(1).clamp_min(1), torch.full_like(s[:, 0], empty))
        if self.s.disc_draws == "batch":  # the seed gave a flow without packets 0 as well
            no_pkt = ~b.valid.any(1)
            per[no_pkt], total[no_pkt] = torch.nan, torch.nan
        self.n_no_packet += int((~b.valid.any(1)).sum())
        out[:, 0] = total.cpu().numpy()
        out[:, 1:] = per.cpu().numpy()
        return out

    @torch.no_grad()
    def disc_positions(self, b: JanusBatch, flow_ids: np.ndarray, batch_index: int = 0,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(nll, w), each [k, n, L, 6]: -log p(true bit) per corruption time, flow, packet position and
        binary channel, and w = 1 where that position was corrupted (and valid), else 0."""
        n = len(b)
        times = torch.tensor(self.s.disc_times, dtype=torch.float32)
        k, L = len(times), b.valid.shape[1]
        if self.s.disc_draws == "batch":
            u, src = self._batch_draws(batch_index, k, n, L)
        else:
            u, src = self._flow_draws(flow_ids, k, L)                  # [k, n, L, 6] each
        kappa = self.dpath.kappa(times)[:, None, None, None]
        valid = b.valid.cpu()[None, :, :, None].expand(k, n, L, N_BIN)
        corrupted = (u >= kappa) & valid
        # a (flow, channel) without any corrupted valid position: corrupt its (t, i) closest to being drawn
        empty = ~corrupted.any(dim=(0, 2)) & b.valid.cpu().any(1)[:, None]  # [n, 6]
        if self.s.disc_draws == "batch":
            empty[:] = False  # the seed's scoring leaves such a channel unscored (0, see disc_nll)
        if empty.any():
            gap = torch.where(valid, u - kappa, torch.full_like(u, -torch.inf))  # [k, n, L, 6]
            best = gap.permute(1, 3, 0, 2).reshape(n, N_BIN, k * L).argmax(-1)  # [n, 6] -> flat (t, i)
            f, c = torch.nonzero(empty, as_tuple=True)
            corrupted[best[f, c] // L, f, best[f, c] % L, c] = True
            self.n_forced += int(empty.sum())
        bits = b.bits.cpu()
        xt = self.dpath.corrupt(bits[None].expand(k, n, L, N_BIN), corrupted, src).to(self.device)
        ones = torch.ones(n, device=self.device)
        nll = []
        with self._autocast():  # one forward per corruption time: a k-times larger batch runs slower per flow
            for j in range(k):
                o = self.model(b.flow, b.pkt, xt[j], b.valid, ones, ones * float(times[j]), want_cont=False)
                nll.append(bit_nll(o["bit_logits"].float(), b.bits).double())
        return torch.stack(nll), corrupted.to(self.device).double()

    def _probes(self, flow_ids: np.ndarray, D: int, F: int) -> torch.Tensor:
        """Rademacher probes [K, n, D] per flow from (score_seed, flow_id, 1): flow dims, then the model's full
        T x 3 packet dims cut to this batch's width (so a flow's probes do not depend on its batch)."""
        K = int(self.s.cnf_probes)
        full = max(F + 3 * int(self.model.cfg.T), D)
        rows = [np.random.default_rng([int(self.s.score_seed) & 0xFFFFFFFF, int(fid), 1]).integers(0, 2, (K, full))
                for fid in np.asarray(flow_ids, dtype=np.int64)]
        e = np.stack(rows, axis=1)[:, :, :D] * 2.0 - 1.0 if rows else np.zeros((K, 0, D))
        return torch.from_numpy(e).float().to(self.device)

    def _batch_draws(self, batch_index: int, k: int, n: int, L: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The seed's draws: u [k, n, L, 6] (and source bits) from one generator per score batch, so a flow's
        corruption depends on the flows batched with it (``disc_draws = "batch"``, ablation only)."""
        g = np.random.default_rng([int(self.s.score_seed) & 0xFFFFFFFF, int(batch_index)])
        u = torch.from_numpy(g.random((k, n, L, N_BIN))).float()
        src = torch.from_numpy(g.integers(0, 2, (k, n, L, N_BIN))) if self.dpath.source == "uniform" else None
        return u, src

    def _flow_draws(self, flow_ids: np.ndarray, k: int, L: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Uniforms u [k, n, L, 6] (and source bits for a uniform source) from one generator per flow,
        seeded by (score_seed, flow_id); each flow draws the model's full T and keeps its first L."""
        T = max(int(self.model.cfg.T), L)
        us, srcs = [], []
        for fid in np.asarray(flow_ids, dtype=np.int64):
            g = np.random.default_rng([int(self.s.score_seed) & 0xFFFFFFFF, int(fid)])
            us.append(g.random((k, T, N_BIN))[:, :L])
            if self.dpath.source == "uniform":
                srcs.append(g.integers(0, 2, (k, T, N_BIN))[:, :L])
        u = torch.from_numpy(np.stack(us, axis=1)).float() if us else torch.zeros((k, 0, L, N_BIN))
        src = torch.from_numpy(np.stack(srcs, axis=1)) if srcs else None
        return u, src

    def score(self, data: JanusBatch, desc: str = "janus scoring", flow_ids: np.ndarray | None = None,
              raw: tuple | None = None) -> np.ndarray:
        """[n, k] scores in :attr:`score_names` order (the 10-d vector, then options); ``flow_ids`` (default 0..n-1)
        seed each flow's draws: pass :func:`~nidsflow.janus.data.flow_keys` so the same flow gets the same
        scores wherever it is scored (extraction time, score-capture, watch). ``raw`` = (features, packets,
        lengths) the batch was normalised from, row-aligned: the ``flow_nll`` option needs them (without
        them its continuous part is NaN, logged).

        Flows are batched in order of packet count (stable sort) and each batch is cut after its
        longest flow (:meth:`JanusBatch.trimmed`), so short flows do not pay for T positions.
        """
        n = len(data)
        flow_ids = np.arange(n) if flow_ids is None else np.asarray(flow_ids, dtype=np.int64)
        if len(flow_ids) != n:
            raise ValueError(f"{len(flow_ids)} flow ids for {n} flows")
        bs = self.s.score_batch_size
        out = np.full((n, len(self.score_names)), np.nan, dtype=np.float64)
        self.n_forced = self.n_no_packet = 0
        for j, idx in enumerate(tqdm(score_batches(data, bs), desc=desc, file=sys.stderr, disable=not self.progress,
                                     mininterval=5.0)):
            b = data.index(idx).trimmed().to(self.device)
            rows = idx.numpy()
            cnf = np.full(len(rows), np.nan)
            out[rows, :3] = self.terminal(b, flow_ids[rows], cnf)
            out[rows, 3:10] = self.disc_nll(b, flow_ids[rows], j)
            col = 10
            if self.s.cnf_nll:
                out[rows, col] = cnf
                col += 1
            if self.s.flow_nll:
                r = None if raw is None else (None if raw[0] is None else raw[0].iloc[rows],
                                              None if raw[1] is None else raw[1][rows],
                                              None if raw[2] is None else np.asarray(raw[2])[rows])
                out[rows, col:col + len(FLOW_NLL_SCORES)] = self.flow_nll(b, flow_ids[rows], r)
        if self.s.flow_nll and (raw is None or self.normaliser is None) and self.model.cfg.cont_head:
            log.warning("flow_nll: no raw values (or no normaliser) were given to the scorer: its continuous part "
                        "is NaN for %d flows", n)
        if self.n_forced:
            log.info("%d (flow, binary channel) pairs of %d flows had no corrupted position at the disc_times; "
                     "each got its position closest to being drawn corrupted", self.n_forced, n)
        if self.n_no_packet and self.model.cfg.disc_head:
            log.warning("%d of %d flows have no valid packet: their disc_nll scores are NaN", self.n_no_packet, n)
        return out


def score_batches(data: JanusBatch, batch_size: int) -> list[torch.Tensor]:
    """The rows of each score batch of :meth:`JanusScorer.score`: a stable order by packet count, then
    ``batch_size`` rows at a time (so each batch can be cut after its longest flow). The parallel scorer
    (:mod:`nidsflow.deploy.parallel`) sends these same batches to its workers."""
    n = len(data)
    order = torch.argsort(data.lengths, stable=True) if data.valid.shape[1] else torch.arange(n)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


def bf16_enabled(setting: bool | str, device: torch.device) -> bool:
    """``score_bf16``: true / false, or "auto" = on where bfloat16 matmuls are native
    (:func:`nidsflow.training.bf16_native`), off elsewhere, where autocast would be slower."""
    if setting != "auto":
        return bool(setting)
    return bf16_native(device)


def scorer_for(model_path: str | Path, janus_cfg: dict, device: str | None = None, progress: bool = True,
               variant: str | None = None) -> tuple[JanusScorer, Normaliser, dict]:
    """``variant``: score as this variant (its scoring settings) with a model of another variant trained
    identically (``variants.trained_as``); default the model's own variant."""
    model, norm, meta = load_model(model_path, device)
    ts = meta["train_settings"]
    if variant is not None and variant != meta.get("variant") and \
            training_config(janus_cfg, variant) != training_config(janus_cfg, meta.get("variant")):
        raise ValueError(f"{model_path}: a {meta.get('variant')!r} model cannot be scored as variant {variant!r}, "
                         "which is trained otherwise")
    lm = LengthModel.from_state_dict(meta["length_model"]) if meta.get("length_model") else None
    scorer = JanusScorer(model, score_settings(janus_cfg, variant or meta.get("variant")), device, ts["dfm_source"],
                         ts["kappa_power"], progress, normaliser=norm, length_model=lm)
    return scorer, norm, meta


def score_split(model_path: str | Path, store_root: str | Path, split_path: str | Path, janus_cfg: dict,
                device: str | None = None, progress: bool = True, variant: str | None = None) -> ScoreTable:
    """Score the split's benign val rows ("val") and test rows ("test") of a store with one model.

    The model's own normaliser is used (for cross scoring: the source's statistics, part of the model).
    """
    scorer, norm, meta = scorer_for(model_path, janus_cfg, device, progress, variant)
    store = Store(store_root)
    split = Split.load(split_path)
    ids = np.concatenate([split.val, split.test]).astype(np.int64)
    which = np.array(["val"] * len(split.val) + ["test"] * len(split.test))
    cfg = scorer.model.cfg
    feats, pk, ln = load_raw(store, ids, cfg.flow_token, cfg.use_packets, norm.reads_context)
    data = norm.transform(feats, pk, ln, len(ids), source=str(store.root))
    # draws seeded by the flow itself (5-tuple, first time), as score-capture and watch seed them
    keys = flow_keys(store.flows.iloc[ids])
    if scorer.s.flow_nll and scorer.length_model is None and cfg.use_packets:
        # a model saved before the length model: fit it on the split's benign train, as training does now
        scorer.length_model = LengthModel.fit(store.flows["n_packets"].to_numpy()[split.train], cfg.T)
        log.info("%s has no length model: fitted on the split's %d benign train flows", model_path, len(split.train))
    S = scorer.score(data, desc=f"janus {meta['variant']} scoring {store.root}", flow_ids=keys, raw=(feats, pk, ln))
    return ScoreTable.from_flows(store.flows, ids, which, scorer.score_names, S)
