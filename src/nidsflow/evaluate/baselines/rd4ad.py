"""RD4AD: reverse distillation from a one-class embedding, over packet sequences.

RD4AD (Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding", CVPR 2022):
a frozen teacher encoder E yields multi-scale feature maps f_E^k; a trainable one-class bottleneck
(OCBE) fuses them (multi-scale feature fusion, MFF: the shallower maps are brought to the deepest
scale by strided convolutions and concatenated, then a 1x1 convolution) and compresses the fusion
into a compact embedding (one-class embedding, OCE: a strided residual block); a student *decoder*
D, the teacher reversed (upsampling stages from the embedding back to every scale), reconstructs the
teacher's maps f_D^k. Only OCBE and D are trained, on normal data, with (paper Eqs. 1-2)

    M^k(h) = 1 - <f_E^k(h), f_D^k(h)> / (||f_E^k(h)|| ||f_D^k(h)||),   L = sum_k mean_h M^k(h),

the mean over the valid (non-padding) positions h of scale k. Anomaly map: S(h) = sum_k up(M^k)(h)
(each scale's map upsampled to the sequence's length); score = max over the flow's valid packets
of S (the paper's image score is the maximum of the map).

Adaptation to packet sequences (where it departs from the paper):
- the teacher is not ImageNet-pretrained (no pretrained encoder exists for packet sequences): it is
  the STFPM row's teacher, a 1-D CNN pyramid (``student_teacher``: one stage of two k=3 convs per
  width, max-pool between stages) pretrained on benign train by the STFPM module's masked-packet
  reconstruction (:meth:`STFPMBaseline._pretrain_teacher`, reused, not copied), then frozen; its
  input tokens are the STFPM row's (9 preprocessed channels, valid flag, masked flag);
- 1-D convolutions over packet positions instead of 2-D over pixels; no Gaussian smoothing of the
  anomaly map (T is 16-64 packets, the paper smooths 256x256 maps), nearest upsampling;
- GELU instead of ReLU in the trainable parts (as in the STFPM row: dead ReLU units stalled the
  distillation);
- the loss and the map average over valid packets only (padding carries no traffic).

Label-free choices on benign val: the teacher's stopping epoch (its masked-packet reconstruction
error, as in STFPM) and the student's (lowest mean val loss L). No grid: the student's layout is
fixed by the teacher's, as in the paper.

Config keys (``baselines.rd4ad``; defaults in brackets): ``widths`` [[24, 48, 96]] (teacher stages;
the bottleneck and the decoder follow them); ``epochs`` [20] and ``min_steps`` [1000] (student);
``teacher_epochs`` [20], ``teacher_min_steps`` [1000], ``teacher_mask_ratio`` [0.25] (teacher, the
STFPM keys); ``batch_size`` [128]; ``lr`` [0.003]; ``patience`` [10].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nidsflow.evaluate.baselines.common import PacketPreprocessor
from nidsflow.evaluate.baselines.nn_utils import count_parameters, seed_torch, train_early_stopping
from nidsflow.evaluate.baselines.student_teacher import ACT, N_CHANNELS, STFPMBaseline, _PyramidCNN, _scale_masks

_CHUNK = 4096
DEFAULTS = {"widths": [24, 48, 96], "epochs": 20, "min_steps": 1000, "teacher_epochs": 20, "teacher_min_steps": 1000,
            "teacher_mask_ratio": 0.25, "batch_size": 128, "lr": 3e-3, "patience": 10}


def _conv(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm1d(c_out), ACT())


class OneClassBottleneck(nn.Module):
    """OCBE: MFF (strided convs to the deepest scale, concat, 1x1 conv) then OCE (a stride-2 residual block)."""

    def __init__(self, widths: list[int]):
        super().__init__()
        n, c = len(widths), widths[-1]
        # scale k reaches the deepest scale through n-1-k stride-2 convs (widths[k] -> widths[k+1] -> ...)
        self.align = nn.ModuleList(nn.Sequential(*(_conv(widths[j], widths[j + 1], 2) for j in range(k, n - 1)))
                                   for k in range(n))
        self.fuse = nn.Sequential(nn.Conv1d(n * c, c, 1), nn.BatchNorm1d(c), ACT())
        self.oce = nn.Sequential(_conv(c, c, 2), nn.Conv1d(c, c, 3, padding=1), nn.BatchNorm1d(c))
        self.shortcut = nn.Sequential(nn.Conv1d(c, c, 1, stride=2), nn.BatchNorm1d(c))
        self.act = ACT()

    def forward(self, feats):
        h = self.fuse(torch.cat([a(f) for a, f in zip(self.align, feats)], dim=1))
        return self.act(self.oce(h) + self.shortcut(h))


class ReverseDecoder(nn.Module):
    """Student D: from the one-class embedding back to the teacher's scales, deepest first; returns the maps
    shallowest first (the teacher's order)."""

    def __init__(self, widths: list[int]):
        super().__init__()
        ins = list(widths[1:]) + [widths[-1]]
        self.stages = nn.ModuleList(nn.Sequential(_conv(ins[k], widths[k]), _conv(widths[k], widths[k]))
                                    for k in reversed(range(len(widths))))

    def forward(self, z, lengths):
        out, h = [], z
        for stage, L in zip(self.stages, reversed(lengths)):
            h = stage(F.interpolate(h, size=L, mode="nearest"))
            out.append(h)
        return out[::-1]


def cosine_maps(ft, fs):
    """Per scale, 1 - cos over channels at each position: list of [n, T_k]."""
    return [1 - F.cosine_similarity(a, b, dim=1) for a, b in zip(ft, fs)]


class RD4ADBaseline(STFPMBaseline):
    name = "rd4ad"
    view = "packets"
    description = ("RD4AD reverse distillation on packet sequences: frozen teacher (STFPM's masked-packet "
                   "pretraining), one-class bottleneck, student decoder; score = max over packets of the "
                   "summed 1 - cosine maps")
    defaults = DEFAULTS

    def __init__(self, seed: int = 0, **params):
        # the inherited teacher / epoch helpers read these keys: RD4AD's own defaults apply to them
        super().__init__(seed, **{**DEFAULTS, **params})

    def _train(self, module, step, val_loss, n, epochs, seed):
        """STFPM's training schedule, skipping single-flow batches (the bottleneck and decoder use BatchNorm)."""
        g = self._get
        return train_early_stopping(module, step, val_loss, n, epochs, int(g("batch_size")), float(g("lr")), seed,
                                    int(g("patience")), cosine=True, min_batch=2)

    def build(self, widths: list[int]) -> tuple[OneClassBottleneck, ReverseDecoder]:
        return OneClassBottleneck(widths), ReverseDecoder(widths)

    def n_parameters(self, T: int = 0, n_flow: int = 0) -> int:
        """Parameters of the teacher, the bottleneck and the decoder (the teacher's pretraining head, discarded
        after pretraining, not counted; the sizes do not depend on T or the flow view)."""
        widths = [int(w) for w in self._get("widths")]
        return count_parameters(_PyramidCNN(N_CHANNELS, widths), *self.build(widths))

    def _student_maps(self, X, V):
        """Per-scale mismatch maps (list of [n, T_k]) and the valid masks at each scale."""
        with torch.no_grad():
            ft = self.teacher(X)
        fs = self.decoder(self.bottleneck(ft), [f.shape[-1] for f in ft])
        return cosine_maps(ft, fs), _scale_masks(V, len(ft))

    def _loss(self, X, V):
        maps, masks = self._student_maps(X, V)
        return sum(((m * v).sum(1) / v.sum(1).clamp(min=1)).mean() for m, v in zip(maps, masks))

    @torch.no_grad()
    def _val_loss(self, X, V):
        parts = [float(self._loss(X[i:i + _CHUNK], V[i:i + _CHUNK])) * len(X[i:i + _CHUNK])
                 for i in range(0, len(X), _CHUNK)]
        return sum(parts) / max(len(X), 1)

    def _fit(self, train, val):
        self.pre = PacketPreprocessor().fit(train.packets, train.lengths)
        Xt, Vt = self._tensors(train)
        Xv, Vv = self._tensors(val)
        self.widths_ = widths = [int(w) for w in self._get("widths")]
        self.teacher = self._pretrain_teacher(Xt, Vt, Xv, Vv, widths)
        seed_torch(self.seed)
        self.bottleneck, self.decoder = self.build(widths)
        student = nn.ModuleList([self.bottleneck, self.decoder])
        crit, epoch = self._train(student, lambda idx: self._loss(Xt[idx], Vt[idx]), lambda: self._val_loss(Xv, Vv),
                                  len(Xt), self._epochs(len(Xt), "epochs", "min_steps"), self.seed)
        student.eval()
        self.selected.update({"widths": widths, "val_loss": crit, "best_epoch": epoch,
                              "n_params": count_parameters(self.teacher, self.bottleneck, self.decoder),
                              "teacher": "STFPM's masked-packet pretraining on benign train, frozen",
                              "criterion": "teacher: benign val masked reconstruction error; student: mean benign "
                                           "val sum over scales of 1 - cosine (early stopping)"})

    @torch.no_grad()
    def _score(self, x):
        X, V = self._tensors(x)
        out = []
        for i in range(0, len(X), _CHUNK):
            maps, _ = self._student_maps(X[i:i + _CHUNK], V[i:i + _CHUNK])
            T = X.shape[1]
            s = sum(F.interpolate(m[:, None], size=T, mode="nearest")[:, 0] for m in maps)
            out.append(torch.where(V[i:i + _CHUNK], s, torch.full_like(s, -np.inf)).max(1).values)
        return torch.cat(out).double().numpy() if out else np.zeros(0)
