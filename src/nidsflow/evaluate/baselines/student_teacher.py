"""STFPM / RD4AD-style student-teacher feature mismatch over packet sequences.

STFPM (Wang et al., BMVC 2021): a student network learns, on normal data only, to reproduce the
multi-scale feature maps of a fixed teacher; on anomalies the two disagree. Loss and score (paper
Eqs. 1-3): with channel-normalised features f_hat = f / ||f||_2 at each position of scale l,
  l(x) = sum_l 1/|V_l| sum_{i in V_l} 1/2 || f_hat_t^l(x)_i - f_hat_s^l(x)_i ||_2^2
over the valid (non-padding) packet positions V_l of scale l.

The teacher: STFPM and RD4AD use an ImageNet-pretrained CNN; no pretrained encoder exists for
packet sequences, so the teacher here is a **fixed, randomly initialised** 1-D CNN (seeded,
never trained) -- the random-network-distillation reading of student-teacher anomaly detection.
Student and teacher share the architecture (three conv stages, feature maps at T, T/2, T/4);
the student starts from a different random initialisation.

Label-free choice on benign val: the epoch with the lowest mean val mismatch (early stopping).
There is no grid: the student's architecture is fixed to the teacher's, as in STFPM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nidsflow.evaluate.baselines.common import Baseline, PacketPreprocessor
from nidsflow.evaluate.baselines.nn_utils import train_early_stopping


class _PyramidCNN(nn.Module):
    def __init__(self, d_in, widths):
        super().__init__()
        stages, c = [], d_in
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(nn.Conv1d(c, w, 3, padding=1), nn.ReLU(), nn.Conv1d(w, w, 3, padding=1),
                                        nn.ReLU()))
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


def _mismatch(ft, fs, valid):
    """Per-flow STFPM loss summed over scales; valid [n, T] is max-pooled to each scale."""
    total = torch.zeros(valid.shape[0])
    v = valid.float()[:, None, :]
    for i, (a, b) in enumerate(zip(ft, fs)):
        if i > 0:
            v = F.max_pool1d(v, 2, ceil_mode=True)
        d = 0.5 * (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(1)  # [n, T_l]
        total = total + (d * v[:, 0]).sum(1) / v[:, 0].sum(1).clamp(min=1)
    return total


class STFPMBaseline(Baseline):
    name = "stfpm"
    view = "packets"
    description = "STFPM/RD4AD-style student-teacher feature mismatch on packet sequences (random fixed teacher)"

    def _tensors(self, x):
        tok, valid = self.pre.transform(x.packets, x.lengths)
        valid[:, 0] = True
        return torch.from_numpy(tok), torch.from_numpy(valid)

    @torch.no_grad()
    def _score_tensors(self, X, V):
        out = [_mismatch(self.teacher(X[i:i + 4096]), self.student(X[i:i + 4096]), V[i:i + 4096])
               for i in range(0, len(X), 4096)]
        return torch.cat(out).numpy() if out else torch.zeros(0).numpy()

    def _fit(self, train, val):
        p = self.params
        self.pre = PacketPreprocessor().fit(train.packets, train.lengths)
        Xt, Vt = self._tensors(train)
        Xv, Vv = self._tensors(val)
        widths = [int(w) for w in p.get("widths", [16, 32, 32])]
        torch.manual_seed(self.seed + 100_003)  # the teacher's own seed: fixed, never trained
        self.teacher = _PyramidCNN(Xt.shape[2], widths).eval()
        for q in self.teacher.parameters():
            q.requires_grad_(False)
        torch.manual_seed(self.seed)
        self.student = _PyramidCNN(Xt.shape[2], widths)

        def step(idx):
            with torch.no_grad():
                ft = self.teacher(Xt[idx])
            return _mismatch(ft, self.student(Xt[idx]), Vt[idx]).mean()

        crit, epoch = train_early_stopping(self.student, step, lambda: self._score_tensors(Xv, Vv).mean(), len(Xt),
                                           int(p.get("epochs", 20)), int(p.get("batch_size", 128)),
                                           float(p.get("lr", 1e-3)), self.seed, int(p.get("patience", 5)))
        self.selected.update({"widths": widths, "val_mismatch": crit, "best_epoch": epoch,
                              "teacher": "fixed random initialisation",
                              "criterion": "mean benign val feature mismatch (early stopping)"})

    def _score(self, x):
        return self._score_tensors(*self._tensors(x))
