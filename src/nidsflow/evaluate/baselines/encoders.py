"""Encoders and decoders of a flow's two views, shared by the ARCADE, MFAD and ConMD baselines.

Packet view: the array [T packets x 10 channels] of ``nn_utils.packet_tokens`` (9 preprocessed packet
channels and a valid flag), read by stride-2 1-D convolutions (kernel 3, one stage per width; the
sequence halves at each stage), flattened and mapped to a vector by a linear layer; the decoder
mirrors it (linear layer, then per stage nearest-neighbour upsampling to the encoder's length and a
kernel-3 convolution, then a 1x1 convolution back to the 10 channels). Upsampling + convolution
rather than transposed convolutions, so any T (odd ones included) comes back at its own length.
Flow view: an MLP over the preprocessed flow statistics.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

#: Packet-view channels: the 9 preprocessed packet channels and the valid flag (nn_utils.packet_tokens).
N_PACKET_IN = 10


def stage_lengths(T: int, n_stages: int) -> list[int]:
    """Sequence length after each stride-2 stage: T, ceil(T/2), ceil(T/4), ..."""
    out = [int(T)]
    for _ in range(n_stages):
        out.append((out[-1] + 1) // 2)
    return out


def _down(c_in: int, c_out: int, norm: bool) -> nn.Sequential:
    layers = [nn.Conv1d(c_in, c_out, 3, stride=2, padding=1)]
    if norm:
        layers.append(nn.BatchNorm1d(c_out))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2))


class PacketEncoder(nn.Module):
    """[n, T, 10] -> [n, out_dim]. ``norm``: BatchNorm after each conv (off for a WGAN-GP critic)."""

    def __init__(self, T: int, widths: list[int], out_dim: int, norm: bool = True):
        super().__init__()
        chans = [N_PACKET_IN] + [int(w) for w in widths]
        self.conv = nn.Sequential(*(_down(chans[i], chans[i + 1], norm) for i in range(len(widths))))
        self.proj = nn.Linear(chans[-1] * stage_lengths(T, len(widths))[-1], out_dim)

    def forward(self, x):
        return self.proj(self.conv(x.transpose(1, 2)).flatten(1))


class PacketDecoder(nn.Module):
    """[n, in_dim] -> [n, T, 10], mirroring a PacketEncoder of the same T and widths."""

    def __init__(self, T: int, widths: list[int], in_dim: int):
        super().__init__()
        widths = [int(w) for w in widths]
        self.L = stage_lengths(T, len(widths))
        self.shape = (widths[-1], self.L[-1])
        self.inp = nn.Sequential(nn.Linear(in_dim, widths[-1] * self.L[-1]), nn.LeakyReLU(0.2))
        outs = [widths[0]] + widths[:-1]  # stage i maps widths[i] -> widths[i-1] (the first keeps widths[0])
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv1d(widths[i], outs[i], 3, padding=1), nn.BatchNorm1d(outs[i]), nn.LeakyReLU(0.2))
            for i in reversed(range(len(widths))))
        self.out = nn.Conv1d(widths[0], N_PACKET_IN, 1)

    def forward(self, z):
        h = self.inp(z).view(len(z), *self.shape)
        for i, stage in enumerate(self.stages):
            h = stage(F.interpolate(h, size=self.L[len(self.stages) - 1 - i], mode="nearest"))
        return self.out(h).transpose(1, 2)


def flow_mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Two hidden layers (LayerNorm + GELU) for the flow-statistics view."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.GELU(),
                         nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, d_out))
