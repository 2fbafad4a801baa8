"""ARCADE-style adversarially regularised 1-D convolutional autoencoder over a flow's first packets.

ARCADE (Lunardi, Lopez, Giacalone, "ARCADE: Adversarially Regularized Convolutional Autoencoder for
Network Anomaly Detection", arXiv 2205.01432, 2022; IEEE TNSM 2023) profiles benign traffic with a
1-D convolutional autoencoder over the first packets of each flow (a subset of their raw bytes,
zero padded), trained on benign flows only; a Wasserstein critic with gradient penalty (WGAN-GP,
Gulrajani et al. 2017) is trained to tell benign inputs from their reconstructions and the
autoencoder is trained to fool it, which regularises the autoencoder towards reconstructions that
look like benign traffic and so lowers its ability to reconstruct out-of-distribution flows. The
anomaly score is the reconstruction error.

Losses (per batch of benign flows x, reconstruction x_hat = G(x)):
    critic:       L_C = E[C(x_hat)] - E[C(x)] + lambda_gp E[(||grad C(x_tilde)||_2 - 1)^2],
                  x_tilde = e x + (1 - e) x_hat, e ~ U(0, 1) per flow      (WGAN-GP, Eq. 3)
    autoencoder:  L_G = ||x - x_hat||^2 / |x| - w_adv E[C(x_hat)]
``n_critic`` critic updates (on the same batch) precede each autoencoder update; Adam(beta = 0.5, 0.9)
for both, as in WGAN-GP. Score: A(x) = ||x - x_hat||^2 / |x| (mean squared error over the array).

Where it departs ("ARCADE-style"): the store keeps per-packet channels, not raw bytes, so the input
of a flow is the array [channels x first T packets] of the 9 packet channels of
``common.PacketPreprocessor`` (log size, log inter-arrival time, log window standardised on benign
train; direction and five flags) and a valid flag, zero padded beyond the flow's length (as ARCADE
pads short flows); the widths and the bottleneck are sized to JANUS's parameter count rather than
to the paper's; the critic reuses the current batch for its updates (WGAN-GP draws a new one);
we could not consult the paper's text for its exact layer list, so the layers follow the
description above (strided conv encoder, dense bottleneck, mirrored upsampling decoder, BatchNorm
+ LeakyReLU in the autoencoder, no normalisation in the critic, as WGAN-GP requires).

Label-free choices on benign val: the epoch with the lowest val reconstruction error (early stopping)
and the learning rate from ``lr_grid`` with the lowest such error. The bottleneck and the adversarial
weight are fixed: the val reconstruction error always prefers a wider bottleneck and a weaker critic,
which is exactly what the regulariser is there to prevent.

Config keys (``baselines.arcade``; defaults in brackets): ``widths`` [[32, 64, 128]] (conv stages,
stride 2 each); ``latent`` [32]; ``w_adv`` [0.01]; ``lambda_gp`` [10.0]; ``n_critic`` [1];
``lr_grid`` [[0.001, 0.003]]; ``epochs`` [30]; ``batch_size`` [128]; ``patience`` [5].
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, BaselineError, PacketPreprocessor, select_on_grid
from nidsflow.evaluate.baselines.encoders import PacketDecoder, PacketEncoder
from nidsflow.evaluate.baselines.nn_utils import batches, count_parameters, in_chunks, packet_tokens, seed_torch

DEFAULTS = {"widths": [32, 64, 128], "latent": 32, "w_adv": 0.01, "lambda_gp": 10.0, "n_critic": 1,
            "lr_grid": [1e-3, 3e-3], "epochs": 30, "batch_size": 128, "patience": 5}


class ConvAutoencoder(nn.Module):
    """[n, T, 10] -> [n, T, 10]: strided convs, a dense bottleneck of size ``latent``, upsampling convs back."""

    def __init__(self, T: int, widths: list[int], latent: int):
        super().__init__()
        self.enc = PacketEncoder(T, widths, latent)
        self.dec = PacketDecoder(T, widths, latent)

    def forward(self, x):
        return self.dec(self.enc(x))


def critic_net(T: int, widths: list[int]) -> PacketEncoder:
    """WGAN critic [n, T, 10] -> [n, 1]: the encoder's strided convs without normalisation, then a linear map."""
    return PacketEncoder(T, widths, 1, norm=False)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """E[(||grad_x C(x_tilde)||_2 - 1)^2] on random interpolates of real and fake flows (WGAN-GP)."""
    e = torch.rand(len(real), 1, 1, generator=gen)
    x = (e * real + (1 - e) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()


class ARCADEBaseline(Baseline):
    name = "arcade"
    view = "packets"
    description = "ARCADE-style adversarially regularised (WGAN-GP critic) 1-D conv autoencoder over the first packets"
    defaults = DEFAULTS

    def build(self, T: int) -> tuple[ConvAutoencoder, nn.Module]:
        widths = [int(w) for w in self._get("widths")]
        return ConvAutoencoder(T, widths, int(self._get("latent"))), critic_net(T, widths)

    def n_parameters(self, T: int, n_flow: int = 0) -> int:
        """Parameters of the autoencoder and its critic at these sizes (the flow view is not used)."""
        return count_parameters(*self.build(T))

    @staticmethod
    def _errors(ae, X):
        return in_chunks(lambda x: (ae(x) - x).pow(2).flatten(1).mean(1), X).double().numpy()

    def _train_one(self, Xt, Xv, lr):
        gen = seed_torch(self.seed)
        ae, critic = self.build(Xt.shape[1])
        opt_g = torch.optim.Adam(ae.parameters(), lr=lr, betas=(0.5, 0.9))
        opt_c = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
        w_adv, lam, n_critic = float(self._get("w_adv")), float(self._get("lambda_gp")), int(self._get("n_critic"))
        best, best_epoch, best_state, bad = float("inf"), -1, None, 0
        for epoch in range(int(self._get("epochs"))):
            ae.train()
            for idx in batches(len(Xt), int(self._get("batch_size")), gen):
                if len(idx) < 2:
                    continue  # BatchNorm needs two rows
                x = Xt[idx]
                for _ in range(n_critic):
                    with torch.no_grad():
                        fake = ae(x)
                    loss_c = critic(fake).mean() - critic(x).mean() + lam * gradient_penalty(critic, x, fake, gen)
                    opt_c.zero_grad()
                    loss_c.backward()
                    opt_c.step()
                x_hat = ae(x)
                loss_g = (x_hat - x).pow(2).mean() - w_adv * critic(x_hat).mean()
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()
            ae.eval()
            v = float(self._errors(ae, Xv).mean())
            if not np.isfinite(v):
                break
            if v < best - 1e-7:
                best, best_epoch, best_state, bad = v, epoch, copy.deepcopy(ae.state_dict()), 0
            else:
                bad += 1
                if bad >= int(self._get("patience")):
                    break
        if best_state is None:
            raise BaselineError("arcade: validation reconstruction error never finite; training diverged")
        ae.load_state_dict(best_state)
        ae.eval()
        return ae, critic, best, best_epoch

    def _fit(self, train, val):
        self.pre = PacketPreprocessor().fit(train.packets, train.lengths)
        Xt, _ = packet_tokens(self.pre, train)
        Xv, _ = packet_tokens(self.pre, val)

        def fit_one(lr):
            ae, critic, crit, epoch = self._train_one(Xt, Xv, lr)
            return crit, (ae, critic), {"val_reconstruction": crit, "best_epoch": epoch}

        lr, (self.ae, critic), _ = select_on_grid(self.selected, "lr", [float(v) for v in self._get("lr_grid")],
                                                  fit_one, better=lambda new, old: new < old)
        self.selected.update({"lr": lr, "n_params": count_parameters(self.ae, critic),
                              "criterion": "benign val reconstruction error (mean squared)"})

    def _score(self, x):
        X, _ = packet_tokens(self.pre, x)
        return self._errors(self.ae, X)
