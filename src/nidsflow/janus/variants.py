"""JANUS settings from the ``janus:`` config section, and the variants (full, cross, group-B ablations).

A variant is a name mapped to overrides of the section's keys. The defaults below may be changed or
extended in the config with ``janus.variant_overrides: {name: {key: value}}``; the ``cross`` variant
is the full model trained with ``sigma = janus.cross_sigma`` (the model used across datasets).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields

#: The seed's minibatch coupling (issue 11): Sinkhorn-Knopp with reg 0.05 on the max-normalised cost, argmax pairing.
SEED_COUPLING = {"ot_method": "sinkhorn", "ot_reg": 0.05, "ot_reg_scale": "max", "ot_pairing": "argmax"}

#: name -> overrides of the janus section (model flags, training or scoring keys).
DEFAULT_VARIANT_OVERRIDES: dict[str, dict] = {
    "full": {},
    "cross": {},  # sigma <- cross_sigma, see resolve_variant
    "B1": {"flow_token": False},                          # no FLOW token (flow features not modelled)
    "B2": {"use_packets": False, "disc_head": False},     # no packet sequence: flow features only
    "B3": {"disc_head": False},                           # no discrete head
    "B4": {"cont_head": False},                           # no continuous head
    "B5": {"separate_backbones": True},                   # the heads trained on two backbones
    # Issue 11's before/after ablation: the full model (or B2) with one bias fix undone, the seed's behaviour.
    "nofix_iat": {"iat_unit_scale": 1.0},                 # IAT through log1p in seconds, not microseconds
    "nofix_ot": dict(SEED_COUPLING),                      # the seed's blurred Sinkhorn plan and argmax pairing
    "nofix_disc": {"disc_draws": "batch"},                # disc_nll drawn per score batch, empty channels scored 0
    "nofix_all": {"iat_unit_scale": 1.0, **SEED_COUPLING, "disc_draws": "batch"},
    "B2_nofix_ot": {"use_packets": False, "disc_head": False, **SEED_COUPLING},
    # the flow token's weight (issue 23): FLOW keeps only what the first T packets cannot give
    "flow_totals": {"flow_features": "beyond_packets"},
    # Issue 24: the FLOW token also models the host-level context at the flow's first and last packet
    "context": {"context": True},
    # Issue 23: the full model trained for flow_nll's density (dequantised integers, fixed coordinates clean)
    "nll": {"cont_dequantise": True, "cont_fixed_clean": True, "flow_nll": True},
}

#: Flow features (capture.features.FEATURE_NAMES) the packet tokens cannot give, kept by
#: ``flow_features: beyond_packets``. The packet tokens carry each of the first T packets' size, IAT,
#: window, direction and SYN/FIN/RST/PSH/ACK bits. Kept: (1) whole-flow totals, additive over packets, so
#: for a flow longer than T they say how much lies beyond packet T (total minus what the tokens show):
#: duration, packet and byte counts per direction (and the subflow copies), per-direction IAT totals,
#: flag counts, data-packet count; (2) features of header fields the tokens do not carry: header
#: lengths, minimum segment size, URG / CWR / ECE counts. Dropped (49): the distribution statistics of
#: lengths and IATs (min / max / mean / std / variance, averages and ratios of totals, rates), bulk,
#: active / idle periods and the initial windows: the packet sequence shows them for the first T packets.
BEYOND_PACKET_FEATURES: tuple[str, ...] = (
    "Flow Duration", "Total Fwd Packets", "Total Backward Packets",
    "Total Length of Fwd Packets", "Total Length of Bwd Packets", "Fwd IAT Total", "Bwd IAT Total",
    "Subflow Fwd Packets", "Subflow Fwd Bytes", "Subflow Bwd Packets", "Subflow Bwd Bytes",
    "Fwd PSH Flags", "Bwd PSH Flags", "Fwd RST Flags", "Bwd RST Flags",
    "FIN Flag Count", "SYN Flag Count", "RST Flag Count", "PSH Flag Count", "ACK Flag Count", "act_data_pkt_fwd",
    "Fwd Header Length", "Bwd Header Length", "min_seg_size_forward",
    "Fwd URG Flags", "Bwd URG Flags", "URG Flag Count", "CWR Flag Count", "ECE Flag Count",
)
FLOW_FEATURE_SETS = ("all", "beyond_packets")


def select_flow_features(names, setting: str) -> list[str]:
    """The flow-feature columns a variant models, in store order: all of them, or (``beyond_packets``)
    those of :data:`BEYOND_PACKET_FEATURES` (and the host-level context columns, which are not flow statistics)."""
    if setting not in FLOW_FEATURE_SETS:
        raise ValueError(f"janus.flow_features must be one of {FLOW_FEATURE_SETS}, got {setting!r}")
    names = list(names)
    return names if setting == "all" else [n for n in names if n in BEYOND_PACKET_FEATURES or is_context_column(n)]


def is_context_column(name: str) -> bool:
    """Whether a feature column is host-level context (context_features.parquet), not a flow statistic."""
    return str(name) in _context_column_set()


@functools.lru_cache(maxsize=1)
def _context_column_set() -> frozenset:
    from nidsflow.capture.context import context_columns  # numba kernels: loaded only when asked

    return frozenset(context_columns())

#: variant -> the variant it undoes a fix of (the row it is compared with in the table ``fixes``).
FIX_ABLATIONS: dict[str, str] = {"nofix_iat": "full", "nofix_ot": "full", "nofix_disc": "full",
                                 "nofix_all": "full", "B2_nofix_ot": "B2"}

MODEL_KEYS = ("T", "d_model", "n_layers", "n_heads", "mlp_ratio", "dropout",
              "flow_token", "use_packets", "cont_head", "disc_head", "separate_backbones")


@dataclass
class TrainSettings:
    sigma: float = 0.1
    lambda_disc: float = 1.0
    ot: bool = True
    ot_method: str = "sinkhorn_log"
    ot_reg: float = 0.1
    ot_reg_scale: str = "centred_std"
    ot_pairing: str = "sample_unique"
    ot_max_iter: int = 50
    dfm_source: str = "mask"
    kappa_power: float = 1.0
    epochs: int = 50
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    grad_clip: float = 1.0
    patience: int = 5
    feature_clip: float = 10.0
    val_max_flows: int = 4000
    iat_unit_scale: float = 1e6      # IAT multiplier before log1p (data.PACKET_UNIT_SCALE); 1.0 is the seed's seconds
    min_steps: int = 0               # epochs raised to make at least this many optimiser steps
    ema_decay: float = 0.999         # EMA of the weights (validated, saved, scored); 0 = the last weights
    precision: str = "fp32"          # fp32 | bf16 | auto (bf16 autocast where native: training.use_bf16)
    flow_features: str = "all"       # all | beyond_packets (BEYOND_PACKET_FEATURES only)
    context: bool = False            # the FLOW token also models the host-level context (needs extract.context)
    cont_dequantise: bool = False    # flow_nll: integer channels trained as x + u, u ~ U[0, 1) in their z cell
    cont_fixed_clean: bool = False   # flow_nll: coordinates fixed by the others held clean, out of the CFM loss

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScoreSettings:
    solver: str = "midpoint"
    solver_steps: int = 8
    disc_times: tuple = (0.0, 0.5)
    score_batch_size: int = 1024
    score_seed: int = 12345
    score_bf16: bool | str = False   # or "auto": on where bfloat16 is native (score.bf16_enabled)
    cnf_nll: bool = False            # score option: the CNF's exact NLL per dim (score.cnf_log_likelihood)
    cnf_probes: int = 1              # Hutchinson probes per ODE evaluation
    disc_draws: str = "flow"         # "flow": per-flow generators; "batch": the seed's per-batch draws (ablation)
    flow_nll: bool = False           # score option: the flow's NLL in nats (janus.nll; columns scores.FLOW_NLL_SCORES)
    flow_nll_trace: str = "hutchinson"  # or "exact" (one product per modelled dim: 18x the time on the demo, same AUROC)
    flow_nll_probes: int = 4         # Hutchinson probes per ODE evaluation (flow_nll_trace hutchinson)
    flow_nll_dequant_draws: int = 1  # dequantisation draws per flow (each one ODE integration)
    flow_nll_disc_draws: int = 4     # masked-diffusion NELBO draws per flow (each one DFM forward)

    def to_dict(self) -> dict:
        return asdict(self)


def _pick(cls, d: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def _variant_config(janus_cfg: dict, variant: str) -> dict:
    """The ``janus:`` section with ``variant``'s overrides applied."""
    table = {k: dict(v) for k, v in DEFAULT_VARIANT_OVERRIDES.items()}
    for name, over in (janus_cfg.get("variant_overrides") or {}).items():
        table.setdefault(name, {}).update(over or {})
    if variant not in table:
        raise ValueError(f"unknown JANUS variant {variant!r}; known: {sorted(table)}")
    merged = dict(janus_cfg)
    if variant == "cross":
        merged["sigma"] = janus_cfg.get("cross_sigma", 0.6)
    merged.update(table[variant])
    return merged


def resolve_variant(janus_cfg: dict, variant: str) -> tuple[dict, TrainSettings]:
    """(model keyword overrides, training settings) of ``variant`` under the ``janus:`` section."""
    merged = _variant_config(janus_cfg, variant)
    model_kw = {k: merged[k] for k in MODEL_KEYS if k in merged}
    return model_kw, _pick(TrainSettings, merged)


def training_config(janus_cfg: dict, variant: str) -> dict:
    """``variant``'s section less the scoring-only keys (ScoreSettings): all that its trained model depends on."""
    score_keys = {f.name for f in fields(ScoreSettings)}
    return {k: v for k, v in _variant_config(janus_cfg, variant).items() if k not in score_keys}


def trained_as(janus_cfg: dict, variant: str) -> str:
    """The variant whose trained model ``variant`` is scored with: the first variant (defaults' order, then
    the config's own) whose :func:`training_config` equals ``variant``'s, so variants that differ only in
    how they score (``nofix_disc``: disc_draws) share one training run instead of repeating it bit for bit
    (training is seeded by the seed alone, never by the variant's name)."""
    mine = training_config(janus_cfg, variant)
    names = list(DEFAULT_VARIANT_OVERRIDES) + [n for n in (janus_cfg.get("variant_overrides") or {})
                                               if n not in DEFAULT_VARIANT_OVERRIDES]
    for name in names:
        if name == variant or training_config(janus_cfg, name) == mine:
            return name
    return variant


def is_packet_free(janus_cfg: dict, variant: str) -> bool:
    """Whether ``variant`` reads no packet sequence (so it can run on a flow-table store)."""
    return not _variant_config(janus_cfg, variant).get("use_packets", True)


def score_settings(janus_cfg: dict, variant: str | None = None) -> ScoreSettings:
    """Scoring settings of the ``janus:`` section (with ``variant``'s overrides, when one is named)."""
    s = _pick(ScoreSettings, janus_cfg if variant is None else _variant_config(janus_cfg, variant))
    if s.disc_draws not in ("flow", "batch"):
        raise ValueError(f"janus.disc_draws must be 'flow' or 'batch', got {s.disc_draws!r}")
    if s.flow_nll_trace not in ("exact", "hutchinson"):
        raise ValueError(f"janus.flow_nll_trace must be 'exact' or 'hutchinson', got {s.flow_nll_trace!r}")
    s.disc_times = tuple(float(t) for t in s.disc_times)
    return s
