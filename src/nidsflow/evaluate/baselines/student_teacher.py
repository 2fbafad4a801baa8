"""STFPM-style student-teacher feature mismatch over packet sequences.

Idea (STFPM, Wang et al., BMVC 2021; RD4AD, whose student decodes the teacher's features from a
one-class embedding instead, is its own row, ``rd4ad``, reusing this module's teacher pretraining):
a *fixed* teacher network with meaningful features is distilled, on normal data only, into a
student that learns to reproduce the teacher's multi-scale feature maps; where the input is unlike
the normal training data the student has never been taught the teacher's response and the two
disagree. Loss (STFPM Eqs. 1-3): with channel-normalised features f_hat = f / ||f||_2
at each position i of scale l,

    m_l(x) = 1/|V_l| sum_{i in V_l} 1/2 || f_hat_t^l(x)_i - f_hat_s^l(x)_i ||_2^2

over the valid (non-padding) packet positions V_l of scale l (the packet mask max-pooled to that
scale); the student minimises sum_l m_l on benign train.

Input: each packet is a token of 11 channels -- the 9 store channels preprocessed by
``common.PacketPreprocessor`` (log1p + benign-train standardisation of size / inter-arrival time /
window, binary flags as 0/1), a *valid* flag (1 for a real packet, 0 for padding, so padding is
never confused with an average packet) and a *masked* flag (set only while pretraining the teacher).

Teacher. STFPM and RD4AD take an ImageNet-pretrained CNN as teacher; no pretrained encoder exists
for packet sequences, so the teacher is pretrained here, on benign train only (no label), by
self-supervised masked-packet reconstruction: a 1-D CNN pyramid (one conv stage per entry of
``widths``; by default three, feature maps at T, T/2, T/4) and a small decoder that reconstructs
every valid packet from the deepest map while a fraction ``teacher_mask_ratio`` of the packets is
hidden (channels zeroed, masked flag set), so the features must encode the sequential context of
benign traffic (handshake, request/response alternation, sizes, timing). Early stopping on benign
val reconstruction error under a fixed mask; the teacher is then frozen and the decoder discarded.

Student: the teacher's encoder architecture from a different random initialisation (as in STFPM),
trained with the loss above for at least ``min_steps`` Adam steps with a cosine learning-rate
decay, then kept at the epoch of lowest mean benign val mismatch. Both networks use GELU: with
ReLU, dead units left the student on a mismatch plateau far from convergence, and an unconverged
student's residual mismatch measures input complexity rather than novelty.

Score: the per-scale mismatches m_l are standardised against benign val flows *of similar length*
(for each packet count L in 1..T: mean and std of m_l over the ``norm_neighbours`` benign val flows
closest in log packet count), then averaged over scales. On benign val the mismatch of short flows
(mostly a homogeneous mode such as DNS) is tens of times lower than that of long flows, so a
length-blind reference makes every short anomaly look normal and every long benign flow look
suspicious. Higher = more anomalous.

Config keys (``baselines.stfpm``; defaults in brackets): ``widths`` [16, 32, 32]; ``epochs`` [20]
and ``min_steps`` [2000] (student: max(epochs, ceil(min_steps / batches per epoch)) epochs);
``teacher_epochs`` [20] and ``teacher_min_steps`` [1500] (the same rule for the teacher);
``teacher_mask_ratio`` [0.25]; ``batch_size`` [128]; ``lr`` [0.003] (peak of the cosine decay);
``patience`` [10] (epochs without benign val improvement before stopping); ``norm_neighbours`` [50].

Label-free choices on benign val only: the teacher's and the student's stopping epochs and the
score's length-conditional reference. There is no grid: the student's architecture is the
teacher's, as in STFPM.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, PacketPreprocessor
from nidsflow.evaluate.baselines.nn_utils import count_parameters, seed_torch, train_early_stopping
from nidsflow.training import epochs_for_min_steps

#: Packet channels of the store (size, iat, win + six binary), as PacketPreprocessor returns them.
N_PACKET = 9
#: Token channels: the preprocessed packet channels, then the valid flag and the masked flag.
N_CHANNELS = N_PACKET + 2
#: Smooth activation: with ReLU, dead units left the student on a mismatch plateau far above convergence.
ACT = nn.GELU
_CHUNK = 4096
#: Defaults of the config keys (baselines.stfpm).
DEFAULTS = {"widths": [16, 32, 32], "epochs": 20, "min_steps": 2000, "teacher_epochs": 20, "teacher_min_steps": 1500,
            "teacher_mask_ratio": 0.25, "batch_size": 128, "lr": 3e-3, "patience": 10, "norm_neighbours": 50}


def _stage(c_in, w):
    return nn.Sequential(nn.Conv1d(c_in, w, 3, padding=1), ACT(), nn.Conv1d(w, w, 3, padding=1), ACT())


class _PyramidCNN(nn.Module):
    """One stage (two k=3 convs) per width; feature maps at T, T/2, T/4, ... (max-pool between stages)."""

    def __init__(self, d_in, widths):
        super().__init__()
        stages, c = [], d_in
        for w in widths:
            stages.append(_stage(c, w))
            c = w
        self.stages = nn.ModuleList(stages)

    def forward(self, x):  # x [n, T, C] -> list of [n, C_l, T_l]
        h, feats = x.transpose(1, 2), []
        for i, stage in enumerate(self.stages):
            if i > 0:
                h = F.max_pool1d(h, 2, ceil_mode=True)
            h = stage(h)
            feats.append(h)
        return feats


class _Decoder(nn.Module):
    """Deepest teacher map -> every packet's 9 channels (pretraining head, discarded afterwards)."""

    def __init__(self, width, d_out):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(width, width, 3, padding=1), ACT(), nn.Conv1d(width, d_out, 1))

    def forward(self, h, T):
        return self.net(F.interpolate(h, size=T, mode="nearest")).transpose(1, 2)  # [n, T, d_out]


def _scale_masks(valid, n_scales):
    """valid [n, T] -> list of float masks [n, T_l], max-pooled to each scale."""
    v, out = valid.float()[:, None, :], []
    for i in range(n_scales):
        if i > 0:
            v = F.max_pool1d(v, 2, ceil_mode=True)
        out.append(v[:, 0])
    return out


def _layer_mismatch(ft, fs, valid):
    """Per-flow, per-scale STFPM mismatch [n, L]: mean over valid positions of 1/2 ||f_hat_t - f_hat_s||^2."""
    cols = []
    for a, b, v in zip(ft, fs, _scale_masks(valid, len(ft))):
        d = 0.5 * (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(1)  # [n, T_l]
        cols.append((d * v).sum(1) / v.sum(1).clamp(min=1))
    return torch.stack(cols, dim=1)


class STFPMBaseline(Baseline):
    name = "stfpm"
    view = "packets"
    description = ("STFPM-style student-teacher feature mismatch on packet sequences (teacher pretrained "
                   "on benign train by masked-packet reconstruction, then frozen)")

    def n_parameters(self, T: int = 0, n_flow: int = 0) -> int:
        """Parameters of the teacher and the student (the teacher's pretraining decoder, discarded after
        pretraining, not counted; the sizes do not depend on T or the flow view)."""
        widths = [int(w) for w in self.params.get("widths", DEFAULTS["widths"])]
        return count_parameters(_PyramidCNN(N_CHANNELS, widths), _PyramidCNN(N_CHANNELS, widths))

    def _tensors(self, x):
        """(tokens [n, T, 11]: 9 preprocessed channels, valid flag, masked flag (0); valid mask [n, T])."""
        tok, valid = self.pre.transform(x.packets, x.lengths)
        valid[:, 0] = True  # a flow has at least one packet
        flags = np.zeros(valid.shape + (2,), np.float32)
        flags[..., 0] = valid
        return torch.from_numpy(np.concatenate([tok, flags], axis=-1)), torch.from_numpy(valid)

    def _epochs(self, n, epochs_key, steps_key):
        """max(epochs, the epochs that give at least ``min_steps`` optimiser steps)."""
        p = self.params
        per_epoch = max(1, math.ceil(n / int(p.get("batch_size", DEFAULTS["batch_size"]))))
        return epochs_for_min_steps(int(p.get(epochs_key, DEFAULTS[epochs_key])),
                                    int(p.get(steps_key, DEFAULTS[steps_key])), per_epoch)

    def _train(self, module, step, val_loss, n, epochs, seed):
        def get(key):
            return self.params.get(key, DEFAULTS[key])

        return train_early_stopping(module, step, val_loss, n, epochs, int(get("batch_size")), float(get("lr")), seed,
                                    int(get("patience")), cosine=True)

    @staticmethod
    def _mask_inputs(X, V, ratio, gen):
        """Hide a fraction ``ratio`` of the valid packets: channels zeroed, valid flag kept, masked flag set."""
        m = (torch.rand(V.shape, generator=gen) < ratio) & V
        Xm = X.clone()
        Xm[..., :N_PACKET] = torch.where(m[..., None], torch.zeros(()), X[..., :N_PACKET])
        Xm[..., N_PACKET + 1] = m.float()
        return Xm

    def _pretrain_teacher(self, Xt, Vt, Xv, Vv, widths):
        """Masked-packet reconstruction on benign train; early stopping on benign val (fixed mask); frozen."""
        ratio = float(self.params.get("teacher_mask_ratio", DEFAULTS["teacher_mask_ratio"]))
        seed_torch(self.seed + 100_003)  # the teacher's own initialisation
        teacher = _PyramidCNN(N_CHANNELS, widths)
        decoder = _Decoder(widths[-1], N_PACKET)
        gen = torch.Generator().manual_seed(self.seed + 7)
        Xv_masked = self._mask_inputs(Xv, Vv, ratio, torch.Generator().manual_seed(self.seed + 11))

        def rec_loss(Xin, X, V):  # mean squared error over the valid packets
            err = (decoder(teacher(Xin)[-1], X.shape[1]) - X[..., :N_PACKET]).pow(2).mean(-1)
            return (err * V).sum(), V.sum()

        def step(idx):
            num, den = rec_loss(self._mask_inputs(Xt[idx], Vt[idx], ratio, gen), Xt[idx], Vt[idx])
            return num / den.clamp(min=1)

        def val_loss():
            parts = [rec_loss(Xv_masked[i:i + _CHUNK], Xv[i:i + _CHUNK], Vv[i:i + _CHUNK])
                     for i in range(0, len(Xv), _CHUNK)]
            return sum(float(a) for a, _ in parts) / max(sum(float(b) for _, b in parts), 1.0)

        crit, epoch = self._train(nn.ModuleList([teacher, decoder]), step, val_loss, len(Xt),
                                  self._epochs(len(Xt), "teacher_epochs", "teacher_min_steps"), self.seed + 5)
        teacher.eval()
        for q in teacher.parameters():
            q.requires_grad_(False)
        self.selected.update({"teacher_val_reconstruction": crit, "teacher_best_epoch": epoch,
                              "teacher_mask_ratio": ratio})
        return teacher

    def _mismatch(self, X, V):
        with torch.no_grad():
            ft = self.teacher(X)
        return _layer_mismatch(ft, self.student(X), V)

    @torch.no_grad()
    def _layer_scores(self, X, V):
        """Per-flow, per-scale mismatch [n, L] (float64)."""
        out = [self._mismatch(X[i:i + _CHUNK], V[i:i + _CHUNK]) for i in range(0, len(X), _CHUNK)]
        return (torch.cat(out) if out else torch.zeros(0, len(self.widths_))).double().numpy()

    def _fit(self, train, val):
        p = self.params
        self.pre = PacketPreprocessor().fit(train.packets, train.lengths)
        Xt, Vt = self._tensors(train)
        Xv, Vv = self._tensors(val)
        self.T_ = int(Xt.shape[1])
        self.widths_ = widths = [int(w) for w in p.get("widths", DEFAULTS["widths"])]
        self.teacher = self._pretrain_teacher(Xt, Vt, Xv, Vv, widths)
        seed_torch(self.seed)  # the student's own initialisation, different from the teacher's
        self.student = _PyramidCNN(N_CHANNELS, widths)

        def step(idx):
            return self._mismatch(Xt[idx], Vt[idx]).sum(1).mean()

        crit, epoch = self._train(self.student, step, lambda: self._layer_scores(Xv, Vv).sum(1).mean(), len(Xt),
                                  self._epochs(len(Xt), "epochs", "min_steps"), self.seed)
        self._fit_normaliser(self._layer_scores(Xv, Vv), Vv.sum(1).numpy())
        self.selected.update({"widths": widths, "val_mismatch": crit, "best_epoch": epoch,
                              "teacher": "pretrained on benign train (masked-packet reconstruction), frozen",
                              "criterion": "teacher: benign val masked reconstruction error; student: mean benign "
                                           "val feature mismatch (early stopping); score: each scale's mismatch "
                                           "standardised on benign val flows of similar length, averaged"})

    def _fit_normaliser(self, m, n_valid):
        """Per-layer, length-conditional benign reference: for every packet count L in 1..T, the mean and std
        of each layer's mismatch over the ``norm_neighbours`` benign val flows closest in log packet count
        (every flow tied with the k-th is included)."""
        k = max(1, min(int(self.params.get("norm_neighbours", DEFAULTS["norm_neighbours"])), len(m)))
        logn = np.log(np.maximum(n_valid, 1))
        pooled = m.std(0) if len(m) > 1 else np.ones(m.shape[1])
        loc, scale = np.zeros((self.T_ + 1, m.shape[1])), np.ones((self.T_ + 1, m.shape[1]))
        for L in range(1, self.T_ + 1):
            d = np.abs(logn - np.log(L))
            ref = m[d <= np.sort(d)[k - 1]]
            loc[L] = ref.mean(0)
            scale[L] = np.maximum(ref.std(0) if len(ref) > 1 else pooled, 1e-3 * pooled + 1e-12)
        self.norm_loc_, self.norm_scale_ = loc, scale
        self.selected["norm_neighbours"] = k

    def _score(self, x):
        X, V = self._tensors(x)
        n = np.clip(V.sum(1).numpy(), 1, self.T_)
        return ((self._layer_scores(X, V) - self.norm_loc_[n]) / self.norm_scale_[n]).mean(1)
