"""GANomaly (Akcay, Atapour-Abarghouei, Breckon, ACCV 2018) on flow statistics, in torch.

Generator = encoder G_E (x -> z), decoder G_D (z -> x_hat), second encoder E (x_hat -> z_hat);
discriminator D on x vs x_hat. MLPs, as the input is a feature vector rather than an image.
Generator loss (paper Eq. 4): L = w_adv L_adv + w_con ||x - x_hat||_1 + w_enc ||z - z_hat||_2^2,
with L_adv the feature-matching loss ||f(x) - f(x_hat)||_2^2 on D's penultimate layer; D is trained
with binary cross-entropy (real vs reconstructed). Weights default to the paper's 1 / 50 / 1.
Anomaly score (paper Eq. 6): A(x) = ||G_E(x) - E(G_D(G_E(x)))||_2^2 (the latent distance).

Label-free choices on benign val: the epoch with the lowest val reconstruction error
||x - x_hat||_1 (early stopping) and the latent size from ``latent_grid`` with the lowest such
error (the L1 reconstruction is comparable across latent sizes, the latent distance is not). Both
choices need a margin (common.improves: an epoch 0.01 %, a later latent size 1 % lower): on
cic17_flows two latent sizes came within 0.3 % of each other, a near-tie that the last digits of
another CPU's arithmetic could flip, changing the whole model.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from nidsflow.evaluate.baselines.common import EPOCH_RTOL, Baseline, SignedLogRobustScaler, improves, select_on_grid
from nidsflow.evaluate.baselines.nn_utils import batches, count_parameters, seed_torch


def _mlp(sizes, last_act=None):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(sizes[i + 1]), nn.LeakyReLU(0.2)]
    if last_act is not None:
        layers.append(last_act)
    return nn.Sequential(*layers)


class _GANomalyNet(nn.Module):
    def __init__(self, d_in, hidden, latent):
        super().__init__()
        self.enc1 = _mlp([d_in, hidden, hidden // 2, latent])
        self.dec = _mlp([latent, hidden // 2, hidden, d_in])
        self.enc2 = _mlp([d_in, hidden, hidden // 2, latent])
        self.disc_features = _mlp([d_in, hidden, hidden // 2], nn.LeakyReLU(0.2))
        self.disc_head = nn.Linear(hidden // 2, 1)

    def forward(self, x):
        z = self.enc1(x)
        x_hat = self.dec(z)
        return z, x_hat, self.enc2(x_hat)


class GANomalyBaseline(Baseline):
    name = "ganomaly"
    view = "flow"
    description = "GANomaly encoder-decoder-encoder on flow statistics; score = latent distance"

    def n_parameters(self, T: int = 0, n_flow: int = 0) -> int:
        """Parameters of the generator and the discriminator for ``n_flow`` features, at the grid's largest
        latent size (the packet view is not used)."""
        latent = max(int(v) for v in self.params.get("latent_grid", [8, 16]))
        return count_parameters(_GANomalyNet(n_flow, int(self.params.get("hidden", 64)), latent))

    def _train_one(self, Xt, Xv, latent):
        p = self.params
        gen = seed_torch(self.seed)
        net = _GANomalyNet(Xt.shape[1], int(p.get("hidden", 64)), int(latent))
        g_params = list(net.enc1.parameters()) + list(net.dec.parameters()) + list(net.enc2.parameters())
        d_params = list(net.disc_features.parameters()) + list(net.disc_head.parameters())
        lr = float(p.get("lr", 1e-3))
        opt_g = torch.optim.Adam(g_params, lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999))
        w_adv, w_con, w_enc = float(p.get("w_adv", 1.0)), float(p.get("w_con", 50.0)), float(p.get("w_enc", 1.0))
        bce = nn.BCEWithLogitsLoss()
        best, best_state, bad = float("inf"), None, 0
        for _epoch in range(int(p.get("epochs", 30))):
            net.train()
            for idx in batches(len(Xt), int(p.get("batch_size", 128)), gen):
                if len(idx) < 2:
                    continue  # BatchNorm needs two rows
                x = Xt[idx]
                z, x_hat, z_hat = net(x)
                adv = (net.disc_features(x).detach().mean(0) - net.disc_features(x_hat).mean(0)).pow(2).mean()
                loss_g = w_adv * adv + w_con * (x - x_hat).abs().mean() + w_enc * (z - z_hat).pow(2).mean()
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()
                real = net.disc_head(net.disc_features(x))
                fake = net.disc_head(net.disc_features(x_hat.detach()))
                loss_d = 0.5 * (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                if loss_d.item() < 1e-5:  # paper: re-initialise D when it wins outright
                    for m in net.disc_features.modules():
                        if isinstance(m, nn.Linear):
                            m.reset_parameters()
            net.eval()
            with torch.no_grad():
                v = float((Xv - net(Xv)[1]).abs().mean())
            if improves(v, best, EPOCH_RTOL):
                best, best_state, bad = v, copy.deepcopy(net.state_dict()), 0
            else:
                bad += 1
                if bad >= int(p.get("patience", 5)):
                    break
        net.load_state_dict(best_state)
        net.eval()
        return net, best

    def _fit(self, train, val):
        self.pre = SignedLogRobustScaler(self.params.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Xt = torch.from_numpy(self.pre.transform(train.flow))
        Xv = torch.from_numpy(self.pre.transform(val.flow))

        def fit_one(latent):
            net, crit = self._train_one(Xt, Xv, latent)
            return crit, net, {"val_l1_reconstruction": crit}

        latent, self.net, _ = select_on_grid(self.selected, "latent",
                                             [int(v) for v in self.params.get("latent_grid", [8, 16])], fit_one)
        self.selected.update({"latent": latent, "criterion": "benign val L1 reconstruction error"})

    @torch.no_grad()
    def _score(self, x):
        X = torch.from_numpy(self.pre.transform(x.flow))
        out = []
        for i in range(0, len(X), 4096):
            z, _, z_hat = self.net(X[i:i + 4096])
            out.append((z - z_hat).pow(2).sum(1).numpy())
        return np.concatenate(out) if out else np.zeros(0)
