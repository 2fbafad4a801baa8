"""TSLANet-style masked reconstruction of packet sequences.

TSLANet (Eldele, Ragab, Chen, Wu, Li, "TSLANet: Rethinking Transformers for Time Series
Representation Learning", ICML 2024) replaces self-attention by two blocks per layer,

    x <- x + ICB(LN(ASB(LN(x)))),

- the Adaptive Spectral Block (ASB, paper Sec. 3.2): F = FFT_t(x) (real FFT along time, orthonormal);
  a learnable global complex filter W_g [d] and, on the frequencies whose power is above a learnable
  threshold theta relative to the sequence's median power, a second learnable complex filter W_h [d]:
      E_f = sum_c |F_{f,c}|^2,   M_f = 1[E_f / median_f(E) > theta]   (straight-through to theta),
      x <- IFFT_t(F * W_g + (F * M) * W_h);
- the Interactive Convolution Block (ICB, Sec. 3.3): a 1x1 conv and a k=3 conv of the same input,
  each gating the other through GELU, then a 1x1 conv back,
      y = Conv1x1( Conv1x1(x) * GELU(Conv3(x)) + Conv3(x) * GELU(Conv1x1(x)) );

and learns by self-supervised masked reconstruction (Sec. 3.4: hide a fraction of the tokens,
reconstruct them). Its anomaly-detection setting (TimesNet protocol) scores each time step by its
reconstruction error.

Adaptation to packet sequences, and where it departs ("TSLANet-style"):
- a token is a patch of ``patch`` consecutive packets with all their channels (a packet's 9
  channels from ``common.PacketPreprocessor``, a valid flag, a masked flag) embedded jointly by a
  linear layer, as TSLANet's classification variant embeds all channels of a patch jointly, plus a
  learned position embedding; patches do not overlap (TSLANet's stride is half a patch), so each
  packet is reconstructed from exactly one token; masking hides whole patches, as in TSLANet;
- no per-flow instance normalisation (TSLANet's RevIN-style step): it would erase each flow's
  level (the size of a flood's packets is the signal); the channels are standardised on benign train;
- reconstruction target is the masked packets' channels in input space (TSLANet's pretraining
  compares embeddings), and the *score* is a masked reconstruction error too: every valid packet is
  hidden once (K complementary masks, patch j in group j mod K) and reconstructed from the others,
      A(x) = 1/|V| sum_{i in V} 1/9 ||x_i - x_hat_i||^2.
  An unmasked reconstruction (the TimesNet protocol) is not used: this residual network's embedding
  is wider than a packet, so nothing keeps it from learning the identity map, whose error says
  nothing about novelty; the masked task is TSLANet's own training objective;
- no dropout / stochastic depth (small benign training sets, early stopping instead).

Label-free choices on benign val: the epoch with the lowest mean val score (early stopping) and the
training mask ratio from ``mask_ratio_grid`` with the lowest mean val score (K is the same for every
grid point, so the criterion is comparable).

Config keys (``baselines.tslanet``; defaults in brackets): ``d_model`` [64]; ``depth`` [2] layers;
``mlp_ratio`` [3] (ICB hidden width = mlp_ratio * d_model, as in TSLANet); ``patch`` [2] packets
per token; ``mask_ratio_grid`` [[0.25, 0.4]] (TSLANet's default ratio is 0.4); ``n_score_masks`` [4];
``epochs`` [20]; ``batch_size`` [128]; ``lr`` [0.001]; ``patience`` [4].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, PacketPreprocessor, select_on_grid
from nidsflow.evaluate.baselines.nn_utils import (count_parameters, in_chunks, packet_tokens, seed_torch,
                                                  train_early_stopping)

#: Packet channels reconstructed (size, iat, win + six binary), then the valid flag and the masked flag.
N_PACKET = 9
N_IN = N_PACKET + 2
DEFAULTS = {"d_model": 64, "depth": 2, "mlp_ratio": 3, "patch": 2, "mask_ratio_grid": [0.25, 0.4], "n_score_masks": 4,
            "epochs": 20, "batch_size": 128, "lr": 1e-3, "patience": 4}


class AdaptiveSpectralBlock(nn.Module):
    """ASB: global + adaptive high-power complex filters in the frequency domain (TSLANet Sec. 3.2)."""

    def __init__(self, d: int):
        super().__init__()
        self.w_global = nn.Parameter(torch.randn(d, 2) * 0.02)
        self.w_high = nn.Parameter(torch.randn(d, 2) * 0.02)
        self.threshold = nn.Parameter(torch.rand(1))

    def power_mask(self, xf: torch.Tensor) -> torch.Tensor:
        """[n, F, 1]: 1 where a frequency's power over the channels exceeds theta x the sequence's median power."""
        energy = xf.abs().pow(2).sum(-1)
        rel = energy / (energy.median(dim=1, keepdim=True).values + 1e-6)
        hard = (rel > self.threshold).float()
        return ((hard - self.threshold).detach() + self.threshold)[..., None]  # straight-through to theta

    def forward(self, x):  # x [n, T, d]
        T = x.shape[1]
        xf = torch.fft.rfft(x, dim=1, norm="ortho")
        out = xf * torch.view_as_complex(self.w_global) + xf * self.power_mask(xf) * torch.view_as_complex(self.w_high)
        return torch.fft.irfft(out, n=T, dim=1, norm="ortho")


class InteractiveConvBlock(nn.Module):
    """ICB: a 1x1 and a k=3 convolution gating each other (TSLANet Sec. 3.3)."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.point = nn.Conv1d(d, hidden, 1)
        self.local = nn.Conv1d(d, hidden, 3, padding=1)
        self.out = nn.Conv1d(hidden, d, 1)

    def forward(self, x):  # x [n, T, d]
        h = x.transpose(1, 2)
        a, b = self.point(h), self.local(h)
        return self.out(a * F.gelu(b) + b * F.gelu(a)).transpose(1, 2)


class TSLANetLayer(nn.Module):
    def __init__(self, d: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.asb = AdaptiveSpectralBlock(d)
        self.icb = InteractiveConvBlock(d, int(mlp_ratio * d))

    def forward(self, x):
        return x + self.icb(self.norm2(self.asb(self.norm1(x))))


class TSLANetReconstructor(nn.Module):
    """Packet tokens [n, T, 11] -> reconstructed packet channels [n, T, 9], through patches of ``patch``
    consecutive packets (T padded with empty packets to a multiple of ``patch``)."""

    def __init__(self, T: int, d: int, depth: int, mlp_ratio: int, patch: int):
        super().__init__()
        self.patch = int(patch)
        self.inp = nn.Linear(self.patch * N_IN, d)
        self.pos = nn.Parameter(torch.randn(1, math.ceil(T / self.patch), d) * 0.02)
        self.layers = nn.ModuleList(TSLANetLayer(d, mlp_ratio) for _ in range(depth))
        self.head = nn.Linear(d, self.patch * N_PACKET)

    def forward(self, x):
        n, T, _ = x.shape
        P = self.patch
        x = F.pad(x, (0, 0, 0, (-T) % P))  # empty packets: every channel 0, valid flag 0
        h = self.inp(x.reshape(n, -1, P * N_IN))
        h = h + self.pos[:, :h.shape[1]]
        for layer in self.layers:
            h = layer(h)
        return self.head(h).reshape(n, -1, N_PACKET)[:, :T]


def mask_packets(X: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Hide the masked packets: their 9 channels zeroed, valid flag kept, masked flag set."""
    hidden = torch.where(masked[..., None], torch.zeros(()), X[..., :N_PACKET])
    return torch.cat([hidden, X[..., N_PACKET:N_PACKET + 1], masked[..., None].float()], dim=-1)


class TSLANetBaseline(Baseline):
    name = "tslanet"
    view = "packets"
    description = ("TSLANet-style (adaptive spectral block + interactive convolution block) masked reconstruction "
                   "of packet sequences")
    defaults = DEFAULTS

    def build(self, T: int) -> nn.Module:
        return TSLANetReconstructor(T, int(self._get("d_model")), int(self._get("depth")), int(self._get("mlp_ratio")),
                                    int(self._get("patch")))

    def n_parameters(self, T: int, n_flow: int = 0) -> int:
        """Parameters of the network at these sizes (the flow view is not used)."""
        return count_parameters(self.build(T))

    def _score_tensors(self, net, X, V):
        K = int(self._get("n_score_masks"))

        group = (torch.arange(X.shape[1]) // net.patch) % K  # whole patches hidden together

        def chunk(x, v):
            err = torch.zeros(v.shape)
            for k in range(K):
                m = (group == k)[None, :] & v
                e = (net(mask_packets(x, m)) - x[..., :N_PACKET]).pow(2).mean(-1)
                err = torch.where(m, e, err)
            return err.sum(1) / v.sum(1)

        return in_chunks(chunk, X, V, size=2048).double().numpy()

    def _fit(self, train, val):
        self.pre = PacketPreprocessor().fit(train.packets, train.lengths)
        Xt, Vt = packet_tokens(self.pre, train)
        Xv, Vv = packet_tokens(self.pre, val)

        def fit_one(ratio):
            gen = seed_torch(self.seed)
            net = self.build(Xt.shape[1])

            def step(idx):
                x, v = Xt[idx], Vt[idx]
                patch_of = torch.arange(v.shape[1]) // net.patch
                m = (torch.rand(len(v), int(patch_of[-1]) + 1, generator=gen) < ratio)[:, patch_of] & v
                err = (net(mask_packets(x, m)) - x[..., :N_PACKET]).pow(2).mean(-1)
                return (err * m).sum() / m.sum().clamp(min=1)

            crit, epoch = train_early_stopping(net, step, lambda: self._score_tensors(net, Xv, Vv).mean(),
                                               len(Xt), int(self._get("epochs")), int(self._get("batch_size")),
                                               float(self._get("lr")), self.seed, int(self._get("patience")))
            return crit, net, {"val_score_mean": crit, "best_epoch": epoch}

        ratio, self.net, _ = select_on_grid(self.selected, "mask_ratio",
                                            [float(r) for r in self._get("mask_ratio_grid")], fit_one,
                                            better=lambda new, old: new < old)
        self.selected.update({"mask_ratio": ratio, "n_params": count_parameters(self.net),
                              "criterion": "mean benign val masked reconstruction error"})

    def _score(self, x):
        X, V = packet_tokens(self.pre, x)
        return self._score_tensors(self.net, X, V)
