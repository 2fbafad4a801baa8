"""ConMD-style: a contrastive two-view embedding of flows and a denoising-diffusion score in it.

Our reading. The seed lists ConMD (TIFS 2026) only as a "contrastive/diffusion-based multimodal
NIDS", and we could not consult its text; we read it as (1) *multimodal*: a flow has two views, its
packet sequence and its flow statistics; (2) *contrastive*: one encoder per view, trained on
benign flows so that the two views of the same flow embed close together and those of different
flows apart (a symmetric InfoNCE / CLIP loss, Oord et al. 2018, Radford et al. 2021); (3)
*diffusion*: a denoising diffusion model (DDPM, Ho et al. 2020) of the benign joint embedding,
whose denoising error is the anomaly score (a diffusion model denoises well only near the data
manifold it was trained on, cf. DiffusionAD / DDPM-based anomaly scores). The row is "ConMD-style":
every design detail below is ours.

Stage 1 (contrastive). u = normalize(g_p(E_p(packets))), w = normalize(g_f(E_f(flow statistics))),
batch of B benign flows, temperature tau:
    L = 1/2 [ CE(u w^T / tau, I) + CE(w u^T / tau, I) ]          (symmetric InfoNCE)
E_p: the 1-D convolutional packet encoder of ``encoders``; E_f: an MLP over signed-log1p + robust
scaled flow statistics (``common.FlowPreprocessor``).
Stage 2 (diffusion). Joint embedding y = [u; w], standardised per dimension on benign train;
variance-preserving forward process y_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps, linear beta schedule
(1e-4 .. 0.02 over ``diffusion_steps``); an MLP eps_theta(y_t, t) (sinusoidal time embedding) trained
with the simple DDPM loss ||eps - eps_theta(y_t, t)||^2 (Ho et al. Eq. 14) on benign train.
Score: A(x) = 1/|S| sum_{(t, eps) in S} ||eps - eps_theta(sqrt(abar_t) y + sqrt(1 - abar_t) eps, t)||^2 / dim y
over a fixed bank S of (time, noise) pairs (``score_times`` as fractions of the schedule x
``score_draws`` noise vectors, drawn once from the seed), the same for every flow, so a flow's score
depends on nothing but the flow. A flow whose views are each plausible but do not belong together
lands off the benign joint manifold.

Flow-table stores: not run (the method is the alignment of two views; with one view there is
nothing to contrast).

Label-free choices on benign val: stage 1 stops at the epoch of lowest val InfoNCE; the temperature
from ``temperature_grid`` with the highest val cross-view retrieval accuracy (top-1 among blocks of
``batch_size`` flows: a temperature-free criterion; InfoNCE values are not comparable across
temperatures); stage 2 stops at the epoch of lowest val denoising loss (fixed noise).

Config keys (``baselines.conmd``; defaults in brackets): ``widths`` [[32, 64, 128]]; ``hidden``
[128]; ``embed`` [32] (per view); ``temperature_grid`` [[0.1, 0.2]]; ``epochs`` [30];
``diffusion_hidden`` [256]; ``diffusion_steps`` [100]; ``diffusion_epochs`` [60];
``score_times`` [[0.1, 0.25, 0.5]]; ``score_draws`` [4]; ``batch_size`` [128]; ``lr`` [0.002];
``patience`` [5].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, FlowPreprocessor, PacketPreprocessor, select_on_grid
from nidsflow.evaluate.baselines.encoders import PacketEncoder, flow_mlp
from nidsflow.evaluate.baselines.nn_utils import count_parameters, in_chunks, packet_tokens, seed_torch, \
    train_early_stopping

DEFAULTS = {"widths": [32, 64, 128], "hidden": 128, "embed": 32, "temperature_grid": [0.1, 0.2], "epochs": 30,
            "diffusion_hidden": 256, "diffusion_steps": 100, "diffusion_epochs": 60,
            "score_times": [0.1, 0.25, 0.5], "score_draws": 4, "batch_size": 128, "lr": 2e-3, "patience": 5}


class TwoViewEncoder(nn.Module):
    """(packets [n, T, 10], flow [n, F]) -> unit embeddings (u [n, k], w [n, k])."""

    def __init__(self, T: int, n_flow: int, widths: list[int], hidden: int, embed: int):
        super().__init__()
        self.packets = nn.Sequential(PacketEncoder(T, widths, hidden), nn.GELU(), nn.Linear(hidden, embed))
        self.flow = flow_mlp(n_flow, hidden, embed)

    def forward(self, xp, xf):
        return F.normalize(self.packets(xp), dim=1), F.normalize(self.flow(xf), dim=1)


def info_nce(u: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE of matching rows of u and w (CLIP loss)."""
    logits = u @ w.T / tau
    target = torch.arange(len(u))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion steps t [n] (Vaswani et al. 2017)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    a = t.float()[:, None] * freq[None]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class Denoiser(nn.Module):
    """eps_theta(y_t, t): an MLP of the noisy joint embedding and the step's embedding."""

    def __init__(self, d: int, hidden: int, t_dim: int = 32):
        super().__init__()
        self.t_dim = t_dim
        self.net = nn.Sequential(nn.Linear(d + t_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, d))

    def forward(self, y, t):
        return self.net(torch.cat([y, time_embedding(t, self.t_dim)], dim=1))


class ConMDBaseline(Baseline):
    name = "conmd"
    view = "packets+flow"
    description = ("ConMD-style: contrastive (InfoNCE) packet/flow-statistics embedding + DDPM denoising error "
                   "in the joint embedding")
    defaults = DEFAULTS

    def build(self, T: int, n_flow: int) -> tuple[TwoViewEncoder, Denoiser]:
        k = int(self._get("embed"))
        return (TwoViewEncoder(T, n_flow, [int(w) for w in self._get("widths")], int(self._get("hidden")), k),
                Denoiser(2 * k, int(self._get("diffusion_hidden"))))

    def n_parameters(self, T: int, n_flow: int) -> int:
        """Parameters of the two-view encoder and the denoiser at these sizes."""
        return count_parameters(*self.build(T, n_flow))

    def _tensors(self, x):
        return packet_tokens(self.pre_p, x)[0], torch.from_numpy(self.pre_f.transform(x.flow))

    def _blocks(self, n):
        b = int(self._get("batch_size"))
        return [slice(i, i + b) for i in range(0, n, b) if min(i + b, n) - i >= 2]

    @torch.no_grad()
    def _val_contrast(self, enc, P, Fv, tau):
        """(mean InfoNCE, top-1 cross-view retrieval accuracy) over fixed blocks of benign val."""
        losses, hits, n = [], 0, 0
        for s in self._blocks(len(P)):
            u, w = enc(P[s], Fv[s])
            losses.append(float(info_nce(u, w, tau)) * len(u))
            sim = u @ w.T
            target = torch.arange(len(u))
            hits += int((sim.argmax(1) == target).sum() + (sim.argmax(0) == target).sum())
            n += len(u)
        return sum(losses) / max(n, 1), hits / max(2 * n, 1)

    def _embed(self, enc, P, Fv, standardise: bool = True):
        """Joint embedding [u; w] of the flows, standardised with the benign-train statistics (or raw)."""
        y = in_chunks(lambda a, b: torch.cat(enc(a, b), dim=1), P, Fv)
        return (y - self.y_mu_) / self.y_sd_ if standardise else y

    def _schedule(self):
        S = int(self._get("diffusion_steps"))
        betas = torch.linspace(1e-4, 0.02, S, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0).float()  # abar_t, t = 0 .. S-1

    def _denoise_error(self, den, y, t, eps):
        ab = self.abar_[t][:, None]
        return (den(ab.sqrt() * y + (1 - ab).sqrt() * eps, t) - eps).pow(2).mean(1)

    def _fit_contrastive(self, Pt, Ft, Pv, Fv):

        def fit_one(tau):
            seed_torch(self.seed)
            enc, _ = self.build(Pt.shape[1], Ft.shape[1])
            crit, epoch = train_early_stopping(
                enc, lambda idx: info_nce(*enc(Pt[idx], Ft[idx]), tau),
                lambda: self._val_contrast(enc, Pv, Fv, tau)[0], len(Pt),
                int(self._get("epochs")), int(self._get("batch_size")), float(self._get("lr")), self.seed,
                int(self._get("patience")), min_batch=2)
            acc = self._val_contrast(enc, Pv, Fv, tau)[1]
            return acc, enc, {"val_info_nce": crit, "val_retrieval_top1": acc, "best_epoch": epoch}

        tau, enc, _ = select_on_grid(self.selected, "temperature", [float(t) for t in self._get("temperature_grid")],
                                     fit_one, better=lambda new, old: new > old)
        for q in enc.parameters():
            q.requires_grad_(False)
        self.selected["temperature"] = tau
        return enc

    def _fit(self, train, val):
        self.pre_p = PacketPreprocessor().fit(train.packets, train.lengths)
        self.pre_f = FlowPreprocessor(self.params.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Pt, Ft = self._tensors(train)
        Pv, Fv = self._tensors(val)
        self.enc = self._fit_contrastive(Pt, Ft, Pv, Fv).eval()
        Yt = self._embed(self.enc, Pt, Ft, standardise=False)
        self.y_mu_, self.y_sd_ = Yt.mean(0), Yt.std(0).clamp(min=1e-4)
        Yt, Yv = (Yt - self.y_mu_) / self.y_sd_, self._embed(self.enc, Pv, Fv)
        self.abar_ = self._schedule()
        S = len(self.abar_)
        gen = seed_torch(self.seed + 1)
        _, self.den = self.build(Pt.shape[1], Ft.shape[1])
        g_val = torch.Generator().manual_seed(self.seed + 2)
        tv, ev = torch.randint(0, S, (len(Yv),), generator=g_val), torch.randn(Yv.shape, generator=g_val)

        def step(idx):
            t = torch.randint(0, S, (len(idx),), generator=gen)
            return self._denoise_error(self.den, Yt[idx], t, torch.randn(Yt[idx].shape, generator=gen)).mean()

        crit, epoch = train_early_stopping(self.den, step, lambda: self._denoise_error(self.den, Yv, tv, ev).mean(),
                                           len(Yt), int(self._get("diffusion_epochs")), int(self._get("batch_size")),
                                           float(self._get("lr")), self.seed + 1, int(self._get("patience")))
        g_bank = torch.Generator().manual_seed(self.seed + 3)
        times = [min(S - 1, int(round(f * S))) for f in self._get("score_times")]
        self.bank_ = [(t, torch.randn(Yt.shape[1], generator=g_bank))
                      for t in times for _ in range(int(self._get("score_draws")))]
        self.selected.update({"val_denoising": crit, "diffusion_best_epoch": epoch, "score_steps": times,
                              "n_params": count_parameters(self.enc, self.den),
                              "criterion": "stage 1: benign val InfoNCE (stopping), val cross-view retrieval "
                                           "(temperature); stage 2: benign val denoising loss (stopping)"})

    @torch.no_grad()
    def _score(self, x):
        Y = self._embed(self.enc, *self._tensors(x))
        err = torch.zeros(len(Y))
        for t, eps in self.bank_:
            err += self._denoise_error(self.den, Y, torch.full((len(Y),), t), eps.expand_as(Y))
        return (err / len(self.bank_)).double().numpy()
