"""JANUS inputs: read flows from a store and normalise them with statistics fitted on benign train only.

State of one flow (SPEC "JANUS"):

* continuous: the flow-feature vector (on the FLOW token) and per packet (size, iat, win);
* binary: per packet (dir, syn, fin, rst, psh, ack) in {0, 1}.

Normalisation (:class:`Normaliser`, saved inside every JANUS checkpoint):

* packet channels c in (size, iat, win):  z = (log1p(k_c max(x, 0)) - mu_c) / sd_c, with mu_c, sd_c the
  mean / std over the *valid* (non-padding) packets of benign train and k_c the channel's unit
  (``PACKET_UNIT_SCALE``): size in bytes (k 1), iat in seconds read as microseconds (k 1e6), TCP window
  in bytes (k 1). log1p resolves a quantity from about one unit upwards and compresses it above, so
  the unit is what decides which differences survive: IAT in seconds through log1p made 1 ms and
  10 ms differ by 0.009 (all sub-100 ms timing erased); in microseconds they differ by log(10) = 2.3,
  and 1 us .. 1 h spans log1p 0 .. 22. Sizes (1 .. 65 535 bytes) and windows (0 .. 2^30) are integers
  of one byte already: log1p of them resolves single bytes at the low end;
* flow feature f:  y = sign(x) log1p(|x|)  (signed log1p), then the robust standardisation
  z = clip((y - median_f) / (1.4826 MAD_f), -clip, clip); a feature whose MAD is 0 uses its std, and a
  constant feature scale 1;
* binary channels are thresholded at 0.5 to {0, 1}; padding is zero in every channel and masked.

The store's T may exceed the model's T: packets beyond the model's T are truncated.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from nidsflow.scaling import signed_log1p
from nidsflow.store import BINARY_CHANNELS, CHANNELS, CONTINUOUS_CHANNELS, Store

log = logging.getLogger(__name__)

N_CONT = len(CONTINUOUS_CHANNELS)
N_BIN = len(BINARY_CHANNELS)
_MAD_TO_SD = 1.4826
_MIN_SCALE = 1e-6
#: Unit multiplier per continuous packet channel before log1p (size bytes, iat s -> us, win bytes).
PACKET_UNIT_SCALE: tuple[float, ...] = (1.0, 1e6, 1.0)
#: The scale of models saved before the unit was introduced (iat in seconds): they keep their own.
_LEGACY_UNIT_SCALE: tuple[float, ...] = (1.0, 1.0, 1.0)


class JanusDataError(ValueError):
    """The store does not hold what a JANUS model needs (features, packets, columns)."""


@dataclass
class JanusBatch:
    """Tensors of a batch of flows, already normalised.

    flow  float [B, F]      standardised flow features (F = 0 when unused)
    pkt   float [B, T, 3]   standardised (size, iat, win), 0 at padding
    bits  long  [B, T, 6]   (dir, syn, fin, rst, psh, ack) in {0, 1}, 0 at padding
    valid bool  [B, T]      True where a real packet is

    Optional (set by :meth:`Normaliser.transform`, read by the training options of flow_nll,
    ``cont_dequantise`` / ``cont_fixed_clean``): ``flow_cell`` [B, F] / ``pkt_cell`` [B, T, 3], the width
    in z of the raw value's integer cell, z(x + 1) - z(x) (0 on real-valued, clipped and padding
    coordinates), and ``flow_fixed`` / ``pkt_fixed`` (bool, same shapes), the coordinates fixed by
    the others (:meth:`Normaliser.density_inputs`).
    """

    flow: torch.Tensor
    pkt: torch.Tensor
    bits: torch.Tensor
    valid: torch.Tensor
    flow_cell: torch.Tensor | None = None
    pkt_cell: torch.Tensor | None = None
    flow_fixed: torch.Tensor | None = None
    pkt_fixed: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.flow.shape[0]

    def _map(self, f_rows, f_pkt) -> "JanusBatch":
        opt = lambda t, f: None if t is None else f(t)  # noqa: E731
        return JanusBatch(f_rows(self.flow), f_pkt(self.pkt), f_pkt(self.bits), f_pkt(self.valid),
                          opt(self.flow_cell, f_rows), opt(self.pkt_cell, f_pkt),
                          opt(self.flow_fixed, f_rows), opt(self.pkt_fixed, f_pkt))

    def index(self, idx) -> "JanusBatch":
        return self._map(lambda t: t[idx], lambda t: t[idx])

    def trimmed(self) -> "JanusBatch":
        """The batch cut after its longest flow's last valid packet (at least one position).

        Exact for the model: padding is never a key for a valid packet and causal attention never
        looks right, so valid outputs do not depend on trailing padding; only compute is saved.
        """
        if self.valid.shape[1] == 0:
            return self
        L = max(1, int(self.valid.sum(1).max()))
        if L == self.valid.shape[1]:
            return self
        return self._map(lambda t: t, lambda t: t[:, :L])

    @property
    def lengths(self) -> torch.Tensor:
        return self.valid.sum(1)

    def to(self, device) -> "JanusBatch":
        return self._map(lambda t: t.to(device), lambda t: t.to(device))


#: Packet channels whose raw values are integers (size and window in bytes; IAT is real).
_INTEGER_PACKET_CHANNELS: tuple[bool, ...] = (True, False, True)


@dataclass
class DensityInputs:
    """:meth:`Normaliser.density_inputs`: z of the dequantised raw values (float64 flow [n, F], pkt [n, T, 3]), which
    coordinates a density models (same shapes, bool) and log |dz/dx| summed over them (float64 [n])."""

    flow: torch.Tensor
    flow_modelled: torch.Tensor
    pkt: torch.Tensor
    pkt_modelled: torch.Tensor
    log_jac: torch.Tensor


@dataclass
class Normaliser:
    """Statistics of benign train; ``transform`` turns raw store arrays into a :class:`JanusBatch`."""

    feature_names: list[str]
    feature_median: list[float]
    feature_scale: list[float]
    feature_clip: float
    packet_mean: list[float]
    packet_std: list[float]
    T: int
    packet_unit_scale: list[float] = None  # None -> PACKET_UNIT_SCALE (set in __post_init__)
    feature_integer: list[bool] = None     # integer-valued on benign train (dequantised by density_inputs)
    feature_constant: list[bool] = None    # constant on benign train (not modelled by density_inputs)

    def __post_init__(self):
        if self.packet_unit_scale is None:
            self.packet_unit_scale = list(PACKET_UNIT_SCALE)
        self.packet_unit_scale = [float(v) for v in self.packet_unit_scale]
        if len(self.packet_unit_scale) != N_CONT or min(self.packet_unit_scale) <= 0:
            raise JanusDataError(f"packet_unit_scale must be {N_CONT} positive numbers, got {self.packet_unit_scale}")
        F = len(self.feature_names)
        # saved before flow_nll: no feature is known to be integer or constant (nothing dequantised or left out)
        self.feature_integer = [bool(v) for v in (self.feature_integer or [False] * F)]
        self.feature_constant = [bool(v) for v in (self.feature_constant or [False] * F)]

    def packet_log(self, x: np.ndarray) -> np.ndarray:
        """log1p(k_c max(x_c, 0)) of the continuous packet channels (last axis = (size, iat, win))."""
        return np.log1p(np.maximum(x[..., :N_CONT], 0.0) * np.asarray(self.packet_unit_scale))

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, features: pd.DataFrame | None, packets: np.ndarray | None, lengths: np.ndarray | None,
            T: int, feature_clip: float = 10.0, source: str = "store",
            packet_unit_scale: tuple[float, ...] = PACKET_UNIT_SCALE) -> "Normaliser":
        """``packet_unit_scale``: k_c of the module docstring (the default reads IAT in microseconds; (1, 1, 1),
        IAT in seconds, is the seed's transform, kept for the before/after ablation of issue 11)."""
        names, med, scale, integer, constant = [], [], [], [], []
        if features is not None:
            numeric = features.select_dtypes(include=[np.number, bool])
            dropped = [c for c in features.columns if c not in numeric.columns]
            if dropped:
                log.info("%s: %d non-numeric flow-feature columns ignored: %s", source, len(dropped), dropped)
            y = signed_log1p(_finite_features(numeric.to_numpy(dtype=np.float64), list(numeric.columns), source))
            names = [str(c) for c in numeric.columns]
            med = np.median(y, axis=0)
            mad = np.median(np.abs(y - med), axis=0) * _MAD_TO_SD
            sd = y.std(axis=0)
            scale = np.where(mad > _MIN_SCALE, mad, np.where(sd > _MIN_SCALE, sd, 1.0))
            n_const = int((sd <= _MIN_SCALE).sum())
            if n_const:
                log.info("%s: %d flow features are constant on benign train (scale 1)", source, n_const)
            med, scale = med.tolist(), scale.tolist()
            raw = numeric.to_numpy(dtype=np.float64)
            integer = (np.isfinite(raw) & (raw == np.round(raw))).all(axis=0).tolist()
            constant = (sd <= _MIN_SCALE).tolist()
        pmean, pstd = [0.0] * N_CONT, [1.0] * N_CONT
        if packets is not None:
            x, valid = _truncate(packets, lengths, T)
            z = np.log1p(np.maximum(x[..., :N_CONT], 0.0) * np.asarray(packet_unit_scale, dtype=np.float64))[valid]
            if len(z) == 0:
                raise JanusDataError(f"{source}: benign train has no valid packets")
            pmean = z.mean(axis=0).tolist()
            pstd = np.maximum(z.std(axis=0), _MIN_SCALE).tolist()
        return cls(names, [float(v) for v in med], [float(v) for v in scale], float(feature_clip),
                   [float(v) for v in pmean], [float(v) for v in pstd], int(T), list(packet_unit_scale),
                   [bool(v) for v in integer], [bool(v) for v in constant])

    @property
    def reads_context(self) -> bool:
        """Whether the modelled flow features include host-level context columns (the ``context`` variant)."""
        from nidsflow.janus.variants import is_context_column

        return any(is_context_column(c) for c in self.feature_names)

    # ------------------------------------------------------------------ transform
    def transform(self, features: pd.DataFrame | None, packets: np.ndarray | None, lengths: np.ndarray | None,
                  n: int, source: str = "store") -> JanusBatch:
        """Raw store rows -> normalised tensors (Eqs. in the module docstring)."""
        if self.feature_names and features is not None:
            missing = [c for c in self.feature_names if c not in features.columns]
            if missing:
                raise JanusDataError(f"{source}: flow_features lacks {len(missing)} columns the model was "
                                     f"trained on, e.g. {missing[:5]}")
            raw = _finite_features(features[self.feature_names].to_numpy(dtype=np.float64), self.feature_names, source)
            med, sc, c = np.asarray(self.feature_median), np.asarray(self.feature_scale), self.feature_clip
            z = (signed_log1p(raw) - med) / sc
            flow = torch.from_numpy(np.clip(z, -c, c).astype(np.float32))
            up = np.clip((signed_log1p(raw + 1.0) - med) / sc, -c, c)
            integer = np.asarray(self.feature_integer, dtype=bool)
            cell_f = np.where(integer & (np.abs(z) < c), up - np.clip(z, -c, c), 0.0)
            fixed_f = np.broadcast_to(np.asarray(self.feature_constant, dtype=bool), z.shape).copy()
        else:
            flow = torch.zeros((n, len(self.feature_names)), dtype=torch.float32)
            cell_f, fixed_f = np.zeros((n, len(self.feature_names))), np.zeros((n, len(self.feature_names)), dtype=bool)
        cell_f, fixed_f = torch.from_numpy(cell_f.astype(np.float32)), torch.from_numpy(fixed_f)
        if packets is not None:
            x, valid = _truncate(packets, lengths, self.T)
            mean, std = np.asarray(self.packet_mean), np.asarray(self.packet_std)
            cont = (self.packet_log(x) - mean) / std
            cont = np.where(valid[..., None], cont, 0.0).astype(np.float32)
            bits = ((x[..., N_CONT:] > 0.5) & valid[..., None]).astype(np.int64)
            up = (np.log1p((np.maximum(x[..., :N_CONT], 0.0) + 1.0) * np.asarray(self.packet_unit_scale)) - mean) / std
            cell_p = np.where(valid[..., None] & np.asarray(_INTEGER_PACKET_CHANNELS), up - cont, 0.0)
            fixed_p = valid[..., None] & ~_modelled_packet_coords(x, valid)
            return JanusBatch(flow, torch.from_numpy(cont), torch.from_numpy(bits), torch.from_numpy(valid),
                              cell_f, torch.from_numpy(cell_p.astype(np.float32)), fixed_f, torch.from_numpy(fixed_p))
        return JanusBatch(flow, torch.zeros((n, 0, N_CONT)), torch.zeros((n, 0, N_BIN), dtype=torch.long),
                          torch.zeros((n, 0), dtype=torch.bool), cell_f, torch.zeros((n, 0, N_CONT)), fixed_f,
                          torch.zeros((n, 0, N_CONT), dtype=torch.bool))

    def density_inputs(self, features: pd.DataFrame | None, packets: np.ndarray | None, lengths: np.ndarray | None,
                       n: int, u_feat: np.ndarray, u_pkt: np.ndarray, source: str = "store") -> "DensityInputs":
        """The model's continuous state of raw values x + u (integer channels dequantised, u [n, F] / [n, T, 3]
        in [0, 1), 0 on real-valued channels), the coordinates a density models, and the log-Jacobian.

        Integer channels: packet size and TCP window (bytes) and the flow features integer-valued on
        benign train (``feature_integer``); IAT is real. The transform is the module docstring's (a bijection
        of each coordinate inside the feature clip, so the density is one of the raw values there):

            packets:  z = (log1p(k (x + u)) - mu) / sd,      dz/dx = k / ((1 + k (x + u)) sd)
            features: z = (slog1p(x + u) - median) / scale,  dz/dx = 1 / ((1 + |x + u|) scale)

        A feature beyond the clip (+-``feature_clip``) sits at the clip, as in training, with the same
        dz/dx: a bounded surrogate (without the clip, a value 300 robust units out costs 45 000 nats,
        measured on the demo, and swamps every other coordinate of the flow).

        ``log_jac`` [n] = sum over modelled coordinates of log dz/dx, so log p_x(x + u) = log p_z(z) + log_jac.
        Coordinates fixed by the others are not modelled (held at their value, no density): padding, the
        first packet's IAT (always 0), the window of every packet of a flow with no TCP flag and window 0
        throughout (not TCP), and the flow features constant on benign train (``feature_constant``).
        """
        F = len(self.feature_names)
        if F and features is not None:
            raw = _finite_features(features[self.feature_names].to_numpy(dtype=np.float64), self.feature_names, source)
            xd = raw + u_feat * np.asarray(self.feature_integer, dtype=np.float64)
            # clipped as the model was trained: beyond the clip the transform is flat (an atom the CNF never saw
            # spread out); the coordinate keeps the Jacobian of the unclipped map there, a bounded surrogate
            zf = np.clip((signed_log1p(xd) - np.asarray(self.feature_median)) / np.asarray(self.feature_scale),
                         -self.feature_clip, self.feature_clip)
            mf = np.broadcast_to(~np.asarray(self.feature_constant, dtype=bool), zf.shape)
            jf = -np.log1p(np.abs(xd)) - np.log(np.asarray(self.feature_scale))
            log_jac = np.where(mf, jf, 0.0).sum(1)
        else:
            zf, mf, log_jac = np.zeros((n, F)), np.zeros((n, F), dtype=bool), np.zeros(n)
        if packets is not None:
            x, valid = _truncate(packets, lengths, self.T)
            k = np.asarray(self.packet_unit_scale)
            xd = np.maximum(x[..., :N_CONT], 0.0) + u_pkt * np.asarray(_INTEGER_PACKET_CHANNELS, dtype=np.float64)
            zp = (np.log1p(k * xd) - np.asarray(self.packet_mean)) / np.asarray(self.packet_std)
            mp = _modelled_packet_coords(x, valid)
            jp = np.log(k) - np.log1p(k * xd) - np.log(np.asarray(self.packet_std))
            log_jac = log_jac + np.where(mp, jp, 0.0).sum(axis=(1, 2))
            zp = np.where(mp, zp, 0.0)
        else:
            zp, mp = np.zeros((n, 0, N_CONT)), np.zeros((n, 0, N_CONT), dtype=bool)
        return DensityInputs(torch.from_numpy(np.asarray(zf, dtype=np.float64)), torch.from_numpy(mf.copy()),
                             torch.from_numpy(zp.astype(np.float64)), torch.from_numpy(mp), torch.from_numpy(log_jac))

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, d: dict) -> "Normaliser":
        d = dict(d)
        d.setdefault("packet_unit_scale", list(_LEGACY_UNIT_SCALE))  # saved before units: iat in seconds
        return cls(**d)


def _modelled_packet_coords(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[n, T, 3] bool: the packet coordinates a density models -- valid packets, except the first packet's IAT
    (always 0) and the window of every packet of a flow with window 0 and no TCP flag throughout (not TCP)."""
    flags = x[..., N_CONT + 1:] > 0.5                       # syn, fin, rst, psh, ack
    not_tcp = ~(((x[..., 2] > 0) | flags.any(-1)) & valid).any(1)
    mp = np.repeat(valid[..., None], N_CONT, axis=2)
    if mp.shape[1]:
        mp[:, 0, 1] = False
    mp[not_tcp, :, 2] = False
    return mp


def _truncate(packets: np.ndarray, lengths: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    if packets.shape[-1] != len(CHANNELS):
        raise JanusDataError(f"packet array has {packets.shape[-1]} channels, expected {len(CHANNELS)}")
    x = np.asarray(packets[:, :T], dtype=np.float64)
    if x.shape[1] < T:  # the store keeps fewer packets than the model: pad (masked)
        x = np.concatenate([x, np.zeros((len(x), T - x.shape[1], x.shape[2]))], axis=1)
    n = np.minimum(np.asarray(lengths, dtype=np.int64), min(T, packets.shape[1]))
    valid = np.arange(T)[None, :] < n[:, None]
    x = np.where(np.isfinite(x), x, 0.0)
    return x, valid


def _finite_features(a: np.ndarray, names, source: str) -> np.ndarray:
    bad = ~np.isfinite(a)
    if bad.any():
        cols = [names[j] for j in np.nonzero(bad.any(axis=0))[0]]
        log.warning("%s: %d non-finite flow-feature values (in %d flows, columns %s) set to 0",
                    source, int(bad.sum()), int(bad.any(axis=1).sum()), cols[:8])
        a = np.where(bad, 0.0, a)
    return a


def load_raw(store: Store, flow_ids: np.ndarray, use_features: bool, use_packets: bool, context: bool = False,
             ) -> tuple[pd.DataFrame | None, np.ndarray | None, np.ndarray | None]:
    """Flow features / packets / lengths of ``flow_ids`` (None where the model does not use them);
    ``context``: the flow features with the host-level context of the flow's first and last packet appended
    (context_features.parquet, ``first_*`` / ``last_*`` columns; the ``context`` variant)."""
    flow_ids = np.asarray(flow_ids, dtype=np.int64)
    feats = store.flow_features.iloc[flow_ids] if use_features else None
    if feats is not None and context:
        if not store.has_context:
            raise JanusDataError(f"{store.root}: the model reads the host-level context, which this store lacks; "
                                 "extract it with extract.context: true")
        ctx = store.read_context(rows=flow_ids)
        ctx.index = feats.index
        feats = pd.concat([feats, ctx.astype(np.float64)], axis=1)
    if use_packets:
        if not store.has_packets:
            raise JanusDataError(f"{store.root}: the store has no packet sequences; only the flow-features "
                                 "variant (B2) runs on it")
        pk, ln = store.packets(flow_ids)
        return feats, pk, ln
    return feats, None, None


#: The flows-table columns that identify a flow for :func:`flow_keys` (5-tuple and first-packet time).
FLOW_KEY_COLUMNS: tuple[str, ...] = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_ts")


def flow_keys(frame: pd.DataFrame) -> np.ndarray:
    """A seed key per flow (int64 >= 0) from the flow itself: its 5-tuple and first-packet time.

    key = the first 63 bits of blake2b("src_ip|src_port|dst_ip|dst_port|protocol|first_ts in us"). The
    scorer seeds a flow's random draws (DFM corruption, Hutchinson probes, dequantisation) from
    (score_seed, key), so extraction-time scoring (flow_id order), ``score-capture`` (its running
    position in the capture) and ``watch`` (its position in the stream, rotations, restarts) draw the
    same numbers for the same flow and give it the same scores (issue 26 item 8). The time is rounded
    to the microsecond, the resolution every capture format shares.
    """
    missing = [c for c in FLOW_KEY_COLUMNS if c not in frame.columns]
    if missing:
        raise JanusDataError(f"flow table lacks {missing}: flows cannot be keyed for their scores' seeds")
    us = np.rint(frame["first_ts"].to_numpy(dtype=np.float64) * 1e6).astype(np.int64)
    cols = [frame[c].astype(str).to_numpy() if c in ("src_ip", "dst_ip") else frame[c].to_numpy(dtype=np.int64)
            for c in FLOW_KEY_COLUMNS[:5]]
    out = np.empty(len(frame), dtype=np.int64)
    for r in range(len(frame)):
        text = "|".join(str(c[r]) for c in cols) + f"|{us[r]}"
        out[r] = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
    return out
