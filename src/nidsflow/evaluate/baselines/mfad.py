"""MFAD-style multi-view fused reconstruction: one autoencoder over a flow's packet sequence and its
flow statistics, scored by the fused, per-view normalised reconstruction error.

The seed's table names MFAD as a multi-feature fusion reconstruction detector ("distance over the
fused-view reconstruction as score"); multi-view fused anomaly detectors of this family encode each
view separately, fuse the codes into one latent, reconstruct every view from the fused latent and
score a sample by its reconstruction errors, each view's error put on a common scale before they
are combined. Our reading, for a flow:

    h_p = E_p(packets),  h_f = E_f(flow statistics),  z = W [h_p; h_f] + b      (fusion bottleneck)
    x_hat_p = D_p(z),    x_hat_f = D_f(z)
    e_p = ||x_p - x_hat_p||^2 / |x_p|,   e_f = ||x_f - x_hat_f||^2 / |x_f|
    loss = (e_p + e_f) / 2 on benign train;
    A(x) = 1/2 sum_v (e_v - median_val(e_v)) / IQR_val(e_v)      (each view normalised on benign val)

E_p / D_p: the 1-D convolutional packet encoder / decoder of ``encoders`` (first T packets, 9
preprocessed channels + valid flag, zero padded); E_f / D_f: MLPs over the flow statistics
(signed log1p + robust scaling, ``common.FlowPreprocessor``). Robust (median / IQR) normalisation,
because reconstruction errors are heavy tailed. Nothing in the loss ties the views together beyond
the shared bottleneck: a flow whose packets and statistics are each benign but belong to different
flows is not reliably flagged (tests/test_deep_baselines.py: AUROC ~0.55 at toy size; ConMD's
contrastive term is what catches it).

Where it departs ("MFAD-style"): we could not consult a paper text precise enough to fix MFAD's
views, encoders and fusion operator, so the two views are the ones the store has, the fusion is a
linear bottleneck over concatenated codes and the sizes follow JANUS's parameter count.

Flow-table stores: not run. MFAD's point is the fusion of views; with the flow statistics alone it
is a plain autoencoder of flow features (the GANomaly and MMR rows already cover that), so running it
there would put a different method under its name.

Label-free choices on benign val: the epoch with the lowest val loss (early stopping) and the
learning rate from ``lr_grid`` with the lowest val loss (the latent is fixed: val reconstruction
always prefers a wider one).

Config keys (``baselines.mfad``; defaults in brackets): ``widths`` [[32, 64, 128]] (packet conv
stages); ``hidden`` [128] (flow MLP width and each view's code size); ``latent`` [32] (fused
bottleneck); ``lr_grid`` [[0.001, 0.003]]; ``epochs`` [30]; ``batch_size`` [128]; ``patience`` [5].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, FlowPreprocessor, PacketPreprocessor, select_on_grid
from nidsflow.evaluate.baselines.encoders import PacketDecoder, PacketEncoder, flow_mlp
from nidsflow.evaluate.baselines.nn_utils import count_parameters, in_chunks, packet_tokens, seed_torch, \
    train_early_stopping

DEFAULTS = {"widths": [32, 64, 128], "hidden": 128, "latent": 32, "lr_grid": [1e-3, 3e-3], "epochs": 30,
            "batch_size": 128, "patience": 5}


class FusedAutoencoder(nn.Module):
    """(packets [n, T, 10], flow [n, F]) -> per-view squared errors [n, 2] through one fused latent."""

    def __init__(self, T: int, n_flow: int, widths: list[int], hidden: int, latent: int):
        super().__init__()
        self.enc_p = PacketEncoder(T, widths, hidden)
        self.enc_f = flow_mlp(n_flow, hidden, hidden)
        self.fuse = nn.Linear(2 * hidden, latent)
        self.dec_p = PacketDecoder(T, widths, latent)
        self.dec_f = flow_mlp(latent, hidden, n_flow)

    def forward(self, xp, xf):
        z = self.fuse(torch.cat([self.enc_p(xp), self.enc_f(xf)], dim=1))
        return torch.stack([(self.dec_p(z) - xp).pow(2).flatten(1).mean(1),
                            (self.dec_f(z) - xf).pow(2).mean(1)], dim=1)


class MFADBaseline(Baseline):
    name = "mfad"
    view = "packets+flow"
    description = "MFAD-style fused reconstruction of packet sequence + flow statistics (per-view normalised error)"
    defaults = DEFAULTS

    def build(self, T: int, n_flow: int) -> FusedAutoencoder:
        return FusedAutoencoder(T, n_flow, [int(w) for w in self._get("widths")], int(self._get("hidden")),
                                int(self._get("latent")))

    def n_parameters(self, T: int, n_flow: int) -> int:
        """Parameters of the fused autoencoder at these sizes."""
        return count_parameters(self.build(T, n_flow))

    def _tensors(self, x):
        return packet_tokens(self.pre_p, x)[0], torch.from_numpy(self.pre_f.transform(x.flow))

    def _fit(self, train, val):
        self.pre_p = PacketPreprocessor().fit(train.packets, train.lengths)
        self.pre_f = FlowPreprocessor(self.params.get("clip", 20.0)).fit(train.flow, train.feature_names)
        Pt, Ft = self._tensors(train)
        Pv, Fv = self._tensors(val)

        def fit_one(lr):
            seed_torch(self.seed)
            net = self.build(Pt.shape[1], Ft.shape[1])
            crit, epoch = train_early_stopping(
                net, lambda idx: net(Pt[idx], Ft[idx]).mean(),
                lambda: in_chunks(net, Pv, Fv).mean(), len(Pt), int(self._get("epochs")),
                int(self._get("batch_size")), lr, self.seed, int(self._get("patience")), min_batch=2)
            return crit, net, {"val_loss": crit, "best_epoch": epoch}

        lr, self.net, _ = select_on_grid(self.selected, "lr", [float(v) for v in self._get("lr_grid")], fit_one,
                                         better=lambda new, old: new < old)
        e = in_chunks(self.net, Pv, Fv).double().numpy()
        q1, self.med_, q3 = np.percentile(e, [25, 50, 75], axis=0)
        self.iqr_ = np.maximum(q3 - q1, 1e-9)
        self.selected.update({"lr": lr, "n_params": count_parameters(self.net),
                              "view_median": self.med_.tolist(), "view_iqr": self.iqr_.tolist(),
                              "criterion": "benign val mean reconstruction error of the two views"})

    def view_errors(self, x) -> np.ndarray:
        """Per-flow reconstruction error of each view [n, 2] (packets, flow statistics), raw."""
        return in_chunks(self.net, *self._tensors(x)).double().numpy()

    def _score(self, x):
        return ((self.view_errors(x) - self.med_) / self.iqr_).mean(1)
