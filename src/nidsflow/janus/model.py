"""The JANUS network: a packet-causal, time-conditioned Transformer with a CFM and a DFM head.

Tokens: [FLOW] (a projection of the noisy flow-feature vector) followed by one token per packet
(projection of the noisy (size, iat, win) + an embedding of each binary channel's state in
{0, 1, mask} + a learned position embedding).

Attention (packet-causal): packet i attends to [FLOW] and to packets j <= i; [FLOW] attends only to
itself. If [FLOW] could read the packets, packet i would read packet j > i through [FLOW] at the next
layer, so the causal property of the packet outputs would break. Padded packets are never keys
(except for themselves, so every query row has a key).

Time conditioning: t_cont (continuous path) and t_disc (binary path) each get a sinusoidal
embedding (Vaswani et al. 2017, emb_k(t) = [sin(t w_k), cos(t w_k)], w_k = 1000 * 10000^(-k/half)),
passed through an MLP and summed into c. Each block is adaptive-LayerNorm (DiT adaLN-Zero,
Peebles & Xie 2023):

    h = h + g1 * Attn(LN(h) * (1 + s1) + b1),   h = h + g2 * MLP(LN(h) * (1 + s2) + b2),
    (b1, s1, g1, b2, s2, g2) = Linear(SiLU(c))   (zero-initialised, so each block starts as identity)

Heads: the CFM head outputs the velocity of every continuous dim (flow features on [FLOW]; size,
iat, win on packet tokens); the DFM head outputs one clean-bit logit per binary channel per packet.

Variants (one class, :class:`JanusConfig` flags): ``flow_token`` (B1 = False), ``use_packets``
(B2 = False), ``disc_head`` (B3 = False), ``cont_head`` (B4 = False), ``separate_backbones`` (B5 = True:
the CFM head and the DFM head each read their own backbone).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nidsflow.janus.data import N_BIN, N_CONT


@dataclass
class JanusConfig:
    n_flow_features: int
    T: int = 64
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1  # the schema's janus.dropout (tests/test_config_schema.py checks they agree)
    flow_token: bool = True
    use_packets: bool = True
    cont_head: bool = True
    disc_head: bool = True
    separate_backbones: bool = False

    def __post_init__(self):
        if not (self.flow_token or self.use_packets):
            raise ValueError("a JANUS variant needs the FLOW token or the packet sequence")
        if not (self.cont_head or self.disc_head):
            raise ValueError("a JANUS variant needs at least one head")
        if self.disc_head and not self.use_packets:
            raise ValueError("the discrete head models packet bits: it needs use_packets")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


class SinusoidalTimeEmbedding(nn.Module):
    """emb(t) = [sin(1000 t w_k), cos(1000 t w_k)], w_k = 10000^(-k / (dim/2)) (Vaswani et al., Eq. PE)."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half), persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 1000.0 * t.float()[:, None] * self.freqs[None, :]
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
        return F.pad(emb, (0, self.dim - emb.shape[-1]))


class TimeConditioner(nn.Module):
    """c = MLP(emb(t_cont)) + MLP(emb(t_disc))."""

    def __init__(self, d: int):
        super().__init__()
        self.emb = SinusoidalTimeEmbedding(d)
        self.mlp_cont = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.mlp_disc = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t_cont: torch.Tensor, t_disc: torch.Tensor) -> torch.Tensor:
        return self.mlp_cont(self.emb(t_cont)) + self.mlp_disc(self.emb(t_disc))


class AdaLNBlock(nn.Module):
    """Pre-LN Transformer block with time-conditioned scale/shift/gate (adaLN-Zero, see module doc)."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b1, s1, g1, b2, s2, g2 = self.ada(c)[:, None, :].chunk(6, dim=-1)
        x = self.norm1(h) * (1 + s1) + b1
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # under CPU bf16 autocast the attention itself stays float32: torch's bf16 flash-attention
            # backward on CPU is several times slower than the float32 one (measured, docs/benchmarks.md)
            with torch.autocast("cpu", enabled=False):
                a = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        h = h + g1 * self.drop(self.proj(a.transpose(1, 2).reshape(B, L, D)))
        x = self.norm2(h) * (1 + s2) + b2
        return h + g2 * self.drop(self.mlp(x))


def packet_causal_mask(valid: torch.Tensor, flow_token: bool) -> torch.Tensor:
    """Boolean [B, 1, L, L] attention mask (True = may attend), L = T (+1 with [FLOW] first).

    Packet i sees [FLOW] and valid packets j <= i (and itself); [FLOW] sees only itself.
    """
    B, T = valid.shape
    dev = valid.device
    causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    eye = torch.eye(T, dtype=torch.bool, device=dev)
    pk = causal[None] & (valid[:, None, :] | eye[None])  # [B, T(query), T(key)]
    if not flow_token:
        return pk[:, None]
    L = T + 1
    m = torch.zeros(B, L, L, dtype=torch.bool, device=dev)
    m[:, :, 0] = True          # everyone sees FLOW
    m[:, 0, 1:] = False        # FLOW sees no packet
    m[:, 1:, 1:] = pk
    return m[:, None]


class JanusBackbone(nn.Module):
    """Token embeddings + adaLN blocks + final adaLN modulation; returns (flow_h [B,D] | None, pkt_h [B,T,D] | None)."""

    def __init__(self, cfg: JanusConfig):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        if cfg.flow_token:
            self.flow_in = nn.Linear(max(cfg.n_flow_features, 1), d)
            self.flow_type = nn.Parameter(torch.zeros(d))
        if cfg.use_packets:
            self.pkt_in = nn.Linear(N_CONT, d)
            self.bit_emb = nn.Embedding(N_BIN * 3, d)  # channel c, state s in {0, 1, mask} -> c * 3 + s
            self.register_buffer("bit_offset", torch.arange(N_BIN) * 3, persistent=False)
            self.pos = nn.Embedding(cfg.T, d)
            nn.init.normal_(self.pos.weight, std=0.02)
        self.time = TimeConditioner(d)
        self.blocks = nn.ModuleList(AdaLNBlock(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        nn.init.zeros_(self.ada_out[1].weight)
        nn.init.zeros_(self.ada_out[1].bias)

    def forward(self, x_flow, x_pkt, bits, valid, t_cont, t_disc):
        cfg = self.cfg
        tokens = []
        if cfg.flow_token:
            xf = x_flow if cfg.n_flow_features else x_flow.new_zeros(len(t_cont), 1)
            tokens.append((self.flow_in(xf) + self.flow_type)[:, None, :])
        if cfg.use_packets:
            T = x_pkt.shape[1]
            e = self.pkt_in(x_pkt) + self.bit_emb(bits + self.bit_offset).sum(dim=2) + self.pos.weight[:T][None]
            tokens.append(e)
        h = torch.cat(tokens, dim=1)
        if cfg.use_packets:
            mask = packet_causal_mask(valid, cfg.flow_token)
        else:
            mask = torch.ones(h.shape[0], 1, 1, 1, dtype=torch.bool, device=h.device)
        c = self.time(t_cont, t_disc)
        for blk in self.blocks:
            h = blk(h, c, mask)
        shift, scale = self.ada_out(c)[:, None, :].chunk(2, dim=-1)
        h = self.norm_out(h) * (1 + scale) + shift
        flow_h = h[:, 0] if cfg.flow_token else None
        pkt_h = (h[:, 1:] if cfg.flow_token else h) if cfg.use_packets else None
        return flow_h, pkt_h


class JanusModel(nn.Module):
    """Backbone(s) + CFM head + DFM head; ``forward`` returns a dict of the heads' outputs.

    Inputs: x_flow [B, F] noisy flow features, x_pkt [B, T, 3] noisy packet channels, bits [B, T, 6]
    long in {0, 1, 2 = mask}, valid [B, T], t_cont [B], t_disc [B].
    Outputs: ``v_flow`` [B, F], ``v_pkt`` [B, T, 3] (0 at padding), ``bit_logits`` [B, T, 6]; a key is
    absent when the variant has no such output.
    """

    def __init__(self, cfg: JanusConfig):
        super().__init__()
        self.cfg = cfg
        n_backbones = 2 if cfg.separate_backbones and cfg.cont_head and cfg.disc_head else 1
        self.backbones = nn.ModuleList(JanusBackbone(cfg) for _ in range(n_backbones))
        d = cfg.d_model
        if cfg.cont_head:
            if cfg.flow_token and cfg.n_flow_features:
                self.v_flow_head = nn.Linear(d, cfg.n_flow_features)
            if cfg.use_packets:
                self.v_pkt_head = nn.Linear(d, N_CONT)
        if cfg.disc_head:
            self.bit_head = nn.Linear(d, N_BIN)

    @property
    def models_flow(self) -> bool:
        return self.cfg.cont_head and self.cfg.flow_token and self.cfg.n_flow_features > 0

    @property
    def models_packets(self) -> bool:
        return self.cfg.cont_head and self.cfg.use_packets

    def forward(self, x_flow, x_pkt, bits, valid, t_cont, t_disc, want_cont: bool = True,
                want_disc: bool = True) -> dict[str, torch.Tensor]:
        """``want_cont`` / ``want_disc`` = False skip a head (and, with two backbones, its backbone)."""
        cfg = self.cfg
        out: dict[str, torch.Tensor] = {}
        want_cont, want_disc = want_cont and cfg.cont_head, want_disc and cfg.disc_head
        two = len(self.backbones) == 2
        flow_h = pkt_h = None
        if want_cont or (want_disc and not two):
            flow_h, pkt_h = self.backbones[0](x_flow, x_pkt, bits, valid, t_cont, t_disc)
        if want_cont:
            if self.models_flow:
                out["v_flow"] = self.v_flow_head(flow_h)
            if cfg.use_packets:
                out["v_pkt"] = self.v_pkt_head(pkt_h) * valid[..., None].to(pkt_h.dtype)
        if want_disc:
            if two:
                _, pkt_h = self.backbones[1](x_flow, x_pkt, bits, valid, t_cont, t_disc)
            out["bit_logits"] = self.bit_head(pkt_h)
        return out
