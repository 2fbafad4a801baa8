"""Joint training of JANUS on benign flows: loss = L_cfm + lambda_disc * L_dfm (SPEC "JANUS").

One step (paths in :mod:`nidsflow.janus.paths`):

1. t_cont, t_disc ~ U[0, 1] independently (t_cont = 1 for a variant without the CFM head, t_disc = 1
   without the DFM head: that state is then given clean);
2. x0 ~ N(0, I) for every continuous dim; noise rows re-paired with the data rows by the minibatch OT
   plan (Eq. C4); x_t, u_t by Eqs. C1/C2; padding dims zero and masked;
3. bits corrupted by the mixture path (Eq. D1); L_dfm by Eq. D2 on corrupted valid positions;
4. AdamW, linear warm-up then cosine decay of the learning rate, gradient-norm clipping;
5. an exponential moving average of the weights (``ema_decay``, :class:`nidsflow.training.WeightEMA`):
   the averaged weights are the ones validated, kept as the best and saved in model.pt for scoring.

The run makes at least ``min_steps`` optimiser steps (``epochs`` is raised to reach them, as for the
STFPM-style and RD4AD baselines; early stopping only once they are made). With ``precision`` bf16 (or
auto on hardware with native bfloat16) the network's forward runs under bfloat16 autocast and the
losses are computed in float32 from its float32-cast outputs.

Every epoch ends with the benign-val loss of the averaged weights (fixed seeded noise, so epochs are
comparable) and, at most every ``CHECKPOINT_EVERY_S`` seconds, a checkpoint (model, averaged weights,
optimiser, scheduler, all RNG states, epoch, best weights, early-stopping counter, history). A run finding a checkpoint with the same fingerprint (variant, seed, settings and
a hash of the normaliser and of every train/val tensor, :func:`data_fingerprint`) resumes from it and
gives exactly the result of an uninterrupted run on CPU; the checkpoint is removed once model.pt is
written, so a finished run is never resumed. Early stopping after ``patience`` epochs without
a better val loss; the saved model holds the best epoch's averaged weights. train_log.tsv beside
model.pt has one row per epoch (:data:`TRAIN_LOG_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nidsflow.janus.data import PACKET_UNIT_SCALE, JanusBatch, Normaliser, load_raw
from nidsflow.janus.model import JanusConfig, JanusModel
from nidsflow.janus.nll import LengthModel
from nidsflow.janus.paths import ConditionalOTPath, MixtureDiscretePath, OTPlanCoupler, bit_nll, masked_mse
from nidsflow.janus.variants import TrainSettings, resolve_variant, select_flow_features
from nidsflow.splits import Split
from nidsflow.store import Store
from nidsflow.training import WeightEMA, autocast, epochs_for_min_steps, use_bf16

log = logging.getLogger(__name__)

MODEL_FORMAT = "nidsflow-janus-1"
CHECKPOINT_NAME = "checkpoint.pt"
#: seconds of training between two checkpoints (see train_janus)
CHECKPOINT_EVERY_S = 30.0
#: train_log.tsv's columns: losses are per flow (L, L_cfm, L_dfm), train ones averaged over the epoch's
#: steps with the trained weights, val ones on the benign-val flows with the averaged (EMA) weights;
#: ``step`` is the optimiser steps made by the epoch's end, ``seconds`` the epoch's wall time.
TRAIN_LOG_COLUMNS = ("epoch", "train_loss", "train_cfm", "train_dfm", "val_loss", "val_cfm", "val_dfm",
                     "lr", "seconds", "step")


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_determinism() -> None:
    """Deterministic kernels where PyTorch has them (warn, not fail, where it has none)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@dataclass
class LossParts:
    total: torch.Tensor
    cfm: torch.Tensor
    dfm: torch.Tensor


class JanusObjective:
    """Draws the paths of one minibatch and returns L = L_cfm + lambda_disc * L_dfm (Eqs. C3, D2)."""

    def __init__(self, model: JanusModel, settings: TrainSettings, bf16: bool = False):
        self.model = model
        self.s = settings
        self.bf16 = bf16  # forward under bfloat16 autocast; the losses below stay float32
        self.cpath = ConditionalOTPath(settings.sigma)
        self.dpath = MixtureDiscretePath(settings.dfm_source, settings.kappa_power)
        self.coupler = OTPlanCoupler(settings.ot_method, settings.ot_reg, settings.ot_pairing,
                                     settings.ot_reg_scale, settings.ot_max_iter) if settings.ot else None

    def __call__(self, batch: JanusBatch, gen: torch.Generator, np_rng: np.random.Generator,
                 device: torch.device) -> LossParts:
        cfg = self.model.cfg
        B = len(batch)
        zero = torch.zeros((), device=device)
        # all random numbers are drawn on the CPU from ``gen`` so CPU and CUDA runs draw the same ones
        t_cont = torch.rand(B, generator=gen) if cfg.cont_head else torch.ones(B)
        t_disc = torch.rand(B, generator=gen) if cfg.disc_head else torch.ones(B)
        x_flow, x_pkt = batch.flow, batch.pkt
        cont_parts = []
        if cfg.cont_head:
            use_flow, use_pkt = self.model.models_flow, cfg.use_packets
            x1 = torch.cat([batch.flow.reshape(B, -1) if use_flow else batch.flow[:, :0],
                            batch.pkt.reshape(B, -1) if use_pkt else batch.pkt.reshape(B, -1)[:, :0]], dim=1)
            m = torch.cat([torch.ones_like(batch.flow) if use_flow else batch.flow[:, :0],
                           batch.valid[..., None].expand_as(batch.pkt).reshape(B, -1).float() if use_pkt
                           else batch.pkt.reshape(B, -1)[:, :0]], dim=1)
            x1, m, fixed = flow_nll_training_state(batch, x1, m, use_flow, use_pkt, self.s, gen)
            x0 = torch.randn(x1.shape, generator=gen)
            if self.coupler is not None and B > 1:
                x0 = x0[torch.from_numpy(self.coupler.pair(x0, x1, m, np_rng))]
            eps = torch.randn(x1.shape, generator=gen)
            xt = self.cpath.sample(x0, x1, t_cont, eps) * m
            if fixed is not None:  # fixed coordinates: given clean, as flow_nll holds them when scoring
                xt = torch.where(fixed, x1, xt)
            ut = self.cpath.target_velocity(x0, x1)
            F = batch.flow.shape[1] if use_flow else 0
            if use_flow:
                x_flow = xt[:, :F]
            if use_pkt:
                x_pkt = xt[:, F:].reshape(batch.pkt.shape)
            cont_parts = (ut.to(device), m.to(device), F)
        bits = batch.bits
        corrupted = None
        if cfg.disc_head:
            bits, corrupted = self.dpath.sample(batch.bits, t_disc, gen)
        with autocast(self.bf16, device):
            out = self.model(x_flow.to(device), x_pkt.to(device), bits.to(device), batch.valid.to(device),
                             t_cont.to(device), t_disc.to(device))
        out = {k: v.float() for k, v in out.items()}
        l_cfm = l_dfm = zero
        if cfg.cont_head:
            ut, m, F = cont_parts
            pred = torch.cat([out["v_flow"] if "v_flow" in out else ut[:, :0],
                              out["v_pkt"].reshape(B, -1) if "v_pkt" in out else ut[:, :0]], dim=1)
            sse, cnt = masked_mse(pred, ut, m)
            l_cfm = sse / cnt.clamp_min(1)
        if cfg.disc_head:
            w = (corrupted & batch.valid[..., None]).to(device)
            nll = bit_nll(out["bit_logits"], batch.bits.to(device))
            l_dfm = (nll * w).sum() / w.sum().clamp_min(1)
        total = l_cfm + (self.s.lambda_disc * l_dfm if cfg.disc_head else 0.0)
        return LossParts(total, l_cfm, l_dfm)


def flow_nll_training_state(batch: JanusBatch, x1: torch.Tensor, m: torch.Tensor, use_flow: bool, use_pkt: bool,
                            settings: TrainSettings, gen: torch.Generator,
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x1, loss mask, fixed) of the continuous state under the flow_nll training options (issue 23).

    ``cont_dequantise``: integer coordinates as x1 + u * cell, u ~ U[0, 1), ``cell`` the width of the raw
    value's integer cell in z (:class:`data.JanusBatch`): the model learns the density of x + u that
    flow_nll evaluates (Theis et al. 2016; Ho et al. 2019), not spikes on integer atoms.
    ``cont_fixed_clean``: coordinates fixed by the others (first IAT, a non-TCP flow's window, constant
    features) leave the loss mask and are returned as ``fixed`` so the path keeps them clean: the model
    conditions on them and is never asked for their velocity, as flow_nll scores them.
    With both off nothing changes and no random number is drawn."""
    B = x1.shape[0]

    def flat(f, p):
        parts = [f.reshape(B, -1) if use_flow else f[:, :0]] if f is not None else []
        parts.append(p.reshape(B, -1) if use_pkt else p.reshape(B, -1)[:, :0])
        return torch.cat(parts, 1)

    fixed = None
    if settings.cont_dequantise and batch.pkt_cell is not None:
        cell = flat(batch.flow_cell, batch.pkt_cell).to(x1.dtype)
        x1 = x1 + torch.rand(x1.shape, generator=gen) * cell
    if settings.cont_fixed_clean and batch.pkt_fixed is not None:
        fixed = flat(batch.flow_fixed, batch.pkt_fixed).bool()
        m = m * (~fixed).to(m.dtype)
    return x1, m, fixed


def warmup_cosine(warmup_steps: int, total_steps: int):
    """lr factor: (s + 1) / warmup for s < warmup, then 0.5 (1 + cos(pi * progress))."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def make_optimizer(model: JanusModel, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW, with torch's fused kernel where it has one (a single pass over all parameters instead of a
    dozen small ops per tensor: measured faster on CPU, docs/benchmarks.md)."""
    kw = {"lr": settings.lr, "weight_decay": settings.weight_decay}
    try:
        return torch.optim.AdamW(model.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # a torch or device without the fused kernel
        return torch.optim.AdamW(model.parameters(), **kw)


def train_step(objective: JanusObjective, batch: JanusBatch, opt: torch.optim.Optimizer, sched, ema: WeightEMA,
               gen: torch.Generator, np_rng: np.random.Generator, device) -> LossParts:
    """One optimisation step: loss, backward, gradient-norm clip, AdamW, learning-rate schedule, EMA."""
    parts = objective(batch, gen, np_rng, device)
    opt.zero_grad(set_to_none=True)
    parts.total.backward()
    torch.nn.utils.clip_grad_norm_(objective.model.parameters(), objective.s.grad_clip)
    opt.step()
    sched.step()
    ema.update(objective.model)
    return parts


def load_training_data(store: Store, split: Split, model_kw: dict, settings: TrainSettings, seed: int,
                       ) -> tuple[Normaliser, JanusBatch, JanusBatch]:
    """Normaliser fitted on benign train; normalised train and (capped) benign-val batches."""
    use_flow = model_kw.get("flow_token", True)
    use_pkt = model_kw.get("use_packets", True)
    T = int(model_kw.get("T", 64))
    if use_pkt and store.T < T:
        log.warning("%s: store keeps %d packets per flow, model T is %d: the rest is padding", store.root, store.T, T)
    feats, pk, ln = load_raw(store, split.train, True, use_pkt, settings.context)
    if feats is not None and settings.flow_features != "all":
        kept = select_flow_features(feats.columns, settings.flow_features)
        if not kept:
            raise ValueError(f"{store.root}: flow_features {settings.flow_features!r} keeps none of the store's "
                             f"{feats.shape[1]} flow features (it selects CICFlowMeter names, e.g. 'Flow Duration')")
        log.info("flow_features %s: the FLOW token models %d of %d flow features", settings.flow_features,
                 len(kept), feats.shape[1])
        feats = feats[kept]  # the normaliser keeps these names, so scoring reads the same columns
    units = (PACKET_UNIT_SCALE[0], float(settings.iat_unit_scale), PACKET_UNIT_SCALE[2])
    norm = Normaliser.fit(feats if use_flow else None, pk, ln, T, settings.feature_clip, source=str(store.root),
                          packet_unit_scale=units)
    train = norm.transform(feats, pk, ln, len(split.train), source=str(store.root))
    val_ids = split.val
    if len(val_ids) > settings.val_max_flows:
        val_ids = np.sort(np.random.default_rng(seed).choice(val_ids, settings.val_max_flows, replace=False))
        log.info("benign val loss on %d of %d val flows", len(val_ids), len(split.val))
    fv, pv, lv = load_raw(store, val_ids, True, use_pkt, settings.context)
    val = norm.transform(fv, pv, lv, len(val_ids), source=str(store.root))
    return norm, train, val


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(norm: Normaliser, *batches: JanusBatch) -> str:
    """sha256 of the normaliser's statistics and of every tensor the run trains and validates on.

    A checkpoint resumes only a run on exactly this data: a re-extracted store (same path, same ids,
    other content) or another split changes it.
    """
    h = hashlib.sha256(json.dumps(norm.state_dict(), sort_keys=True).encode())
    for b in batches:
        for t in (b.flow, b.pkt, b.bits, b.valid):
            a = t.detach().cpu().contiguous().numpy()
            h.update(repr((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def _evaluate(objective: JanusObjective, val: JanusBatch, batch_size: int, seed: int, device) -> tuple[float, float, float]:
    """Benign-val loss with noise from a generator re-seeded every call (comparable across epochs)."""
    model = objective.model
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    np_rng = np.random.default_rng(seed + 1_000_003)
    tot = cfm = dfm = 0.0
    n = 0
    with torch.no_grad():
        for start in range(0, len(val), batch_size):
            b = val.index(slice(start, start + batch_size)).trimmed()
            parts = objective(b, gen, np_rng, device)
            k = len(b)
            tot += float(parts.total) * k
            cfm += float(parts.cfm) * k
            dfm += float(parts.dfm) * k
            n += k
    model.train()
    return tot / max(n, 1), cfm / max(n, 1), dfm / max(n, 1)


def train_janus(store_root: str | Path, split_path: str | Path, out_dir: str | Path, janus_cfg: dict,
                variant: str, seed: int, device: str | None = None, stop_after_epoch: int | None = None,
                progress: bool = True) -> Path | None:
    """Train (or resume) one JANUS model; writes model.pt, train_log.tsv, loss.png in ``out_dir``.

    ``stop_after_epoch`` ends the run after that epoch as an interruption would (checkpoint kept,
    no model.pt): for tests of resume. Returns the model path, or None when stopped early that way.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_determinism()
    dev = pick_device(device)
    store = Store(store_root)
    split = Split.load(split_path)
    model_kw, settings = resolve_variant(janus_cfg, variant)
    torch.manual_seed(seed)
    norm, train, val = load_training_data(store, split, model_kw, settings, seed)
    n_feat = len(norm.feature_names) if model_kw.get("flow_token", True) else 0
    mcfg = JanusConfig(n_flow_features=n_feat, **model_kw)
    model = JanusModel(mcfg).to(dev)
    bf16 = use_bf16(settings.precision, dev)
    objective = JanusObjective(model, settings, bf16)
    ema = WeightEMA(model, settings.ema_decay)
    val_objective = JanusObjective(ema.module, settings, bf16)  # the val loss is the averaged weights'
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    epochs = epochs_for_min_steps(settings.epochs, settings.min_steps, steps_per_epoch)
    log.info("JANUS %s seed %d on %s: %d train / %d val flows (every benign train flow of the split), %d flow "
             "features, T=%d, %d parameters, device %s, %s; up to %d epochs of %d steps (epochs %d, min_steps %d), "
             "EMA decay %g", variant, seed, store.root, len(train), len(val), n_feat, mcfg.T,
             sum(p.numel() for p in model.parameters()), dev, "bf16 autocast" if bf16 else "fp32", epochs,
             steps_per_epoch, settings.epochs, settings.min_steps, settings.ema_decay)

    opt = make_optimizer(model, settings)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(settings.warmup_steps, epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "best_state": None, "bad_epochs": 0, "history": []}
    fp = _fingerprint(variant, seed, mcfg.to_dict(), settings.to_dict(), data_fingerprint(norm, train, val))
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck.get("fingerprint") == fp:
            model.load_state_dict(ck["model"])
            ema.load_state_dict(ck["ema"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            gen.set_state(ck["gen"])
            np_rng.bit_generator.state = ck["np_rng"]
            torch.set_rng_state(ck["torch_rng"])
            state = ck["state"]
            log.info("resuming from %s after epoch %d (best val %.5f at epoch %d)", ckpt_path, state["epoch"],
                     state["best_val"], state["best_epoch"])
        else:
            log.warning("%s belongs to another configuration or data; starting afresh", ckpt_path)

    stopped = False
    last_save = time.perf_counter()

    def may_stop() -> bool:  # early stopping only once the minimum number of steps is made
        return state["bad_epochs"] >= settings.patience and state["epoch"] * steps_per_epoch >= settings.min_steps

    while state["epoch"] < epochs and not may_stop():
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        sums = np.zeros(3)
        bar = tqdm(range(steps_per_epoch), desc=f"janus {variant} epoch {epoch}", file=sys.stderr,
                   disable=not progress, mininterval=5.0, leave=False)
        for k in bar:
            b = train.index(perm[k * settings.batch_size:(k + 1) * settings.batch_size]).trimmed()
            parts = train_step(objective, b, opt, sched, ema, gen, np_rng, dev)
            sums += np.array([float(parts.total.detach()), float(parts.cfm.detach()), float(parts.dfm.detach())]) * len(b)
            bar.set_postfix(loss=f"{float(parts.total.detach()):.4f}", refresh=False)
        if not np.all(np.isfinite(sums)):
            raise FloatingPointError(f"JANUS {variant} seed {seed}: training loss is not finite in epoch {epoch}; "
                                     "lower janus.lr or check the store's features")
        tr = sums / len(train)
        va = _evaluate(val_objective, val, settings.batch_size, seed, dev)
        improved = va[0] < state["best_val"]
        if improved:
            state.update(best_val=va[0], best_epoch=epoch, bad_epochs=0,
                         best_state={k: v.detach().cpu().clone() for k, v in ema.module.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "train_loss": tr[0], "train_cfm": tr[1], "train_dfm": tr[2],
                                 "val_loss": va[0], "val_cfm": va[1], "val_dfm": va[2],
                                 "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
                                 "step": epoch * steps_per_epoch})
        log.info("epoch %d/%d (step %d): train %.5f (cfm %.5f, dfm %.5f) val (EMA) %.5f (cfm %.5f, dfm %.5f)%s",
                 epoch, epochs, epoch * steps_per_epoch, *tr, *va, " *" if improved else "")
        stopped = stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < epochs
        # a checkpoint at most every CHECKPOINT_EVERY_S (and on a requested stop): at the demo's size an
        # epoch takes a fraction of a second and saving after each cost about a tenth of the run; a
        # resumed run replays the epochs since the last one exactly
        if stopped or time.perf_counter() - last_save >= CHECKPOINT_EVERY_S:
            _save_atomic({"fingerprint": fp, "model": model.state_dict(), "ema": ema.state_dict(),
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "gen": gen.get_state(),
                          "np_rng": np_rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "state": state},
                         ckpt_path)
            last_save = time.perf_counter()
        if stopped:
            break
    if stopped:
        log.info("stopped after epoch %d on request; rerun to resume", state["epoch"])
        return None
    if objective.coupler is not None and objective.coupler.n_unconverged:
        log.info("OT: %d minibatch plans stopped at ot_max_iter=%d with marginals > 1 %% off (paired by %s)",
                 objective.coupler.n_unconverged, settings.ot_max_iter, settings.ot_pairing)
    if may_stop() and state["epoch"] < epochs:
        log.info("early stop after epoch %d (best val %.5f at epoch %d)", state["epoch"], state["best_val"], state["best_epoch"])
    log_convergence(state["history"], state["best_epoch"])
    model_path = out_dir / "model.pt"
    _save_atomic({"format": MODEL_FORMAT, "variant": variant, "seed": seed, "model_config": mcfg.to_dict(),
                  "train_settings": settings.to_dict(), "normaliser": norm.state_dict(),
                  "state_dict": state["best_state"], "best_epoch": state["best_epoch"],
                  "history": state["history"], "store": str(store_root),
                  # flow_nll's length part: counts of benign train flows (janus.nll.LengthModel)
                  "length_model": LengthModel.fit(store.flows["n_packets"].to_numpy()[split.train], mcfg.T).state_dict()},
                 model_path)
    write_train_log(state["history"], out_dir / "train_log.tsv", out_dir / "loss.png", f"JANUS {variant} seed {seed}")
    # the run is finished: its checkpoint must not be resumed by a later run (it would skip training)
    ckpt_path.unlink(missing_ok=True)
    return model_path


class ModelFileError(ValueError):
    """A model.pt or checkpoint.pt cannot be loaded (unreadable, truncated, or holding more than data)."""


def _plain(obj):
    """``obj`` with numpy scalars made Python numbers (recursively through dicts, lists, tuples), so a saved
    file holds only what ``torch.load(weights_only=True)`` reads without an allow-list."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def log_convergence(history: list[dict], best_epoch: int, window: int = 5) -> None:
    """One line telling whether the val loss had flattened: its relative change over the last ``window``
    epochs; a warning when it still fell by more than 2 % (the run wanted more steps)."""
    if not history:
        return
    last = history[-1]["val_loss"]
    ref = history[max(0, len(history) - 1 - window)]["val_loss"]
    change = (last - ref) / abs(ref) if ref else 0.0
    log.info("val loss %.5f after %d epochs (%d steps), best at epoch %d; change over the last %d epochs %+.2f %%",
             last, len(history), history[-1]["step"], best_epoch, min(window, len(history) - 1), 100 * change)
    if change < -0.02:
        log.warning("the val loss was still falling at the end (%+.1f %% over the last %d epochs): more steps "
                    "(janus.min_steps or janus.epochs) would likely lower it", 100 * change, min(window, len(history) - 1))


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(_plain(obj), tmp)
    os.replace(tmp, path)


def _numpy_safe_globals() -> list:
    """What files saved before :func:`_plain` need besides tensors and containers: numpy float scalars
    (the train history) and their dtypes. Rebuilding a numpy scalar from its bytes runs no user code."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray.scalar, np.dtype,
            *(type(np.dtype(c)) for c in ("float64", "float32", "int64", "int32", "bool"))]


def load_torch_file(path: str | Path, what: str = "JANUS model") -> dict:
    """``torch.load`` restricted to data (``weights_only=True``: tensors, numbers, strings, containers and the
    numpy scalars of :func:`_numpy_safe_globals`), so a model file received from elsewhere cannot run code
    when it is loaded (an ordinary unpickling would call whatever the file names). Raises
    :class:`ModelFileError` naming the file on any problem."""
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ModelFileError(
                f"{path}: refused: the {what} file holds objects other than tensors, numbers, strings and "
                f"containers, which could run code when loaded (nothing of it was run). Use a file written by "
                f"nidsflow's training. ({first})") from None
        raise ModelFileError(f"{path}: not a readable {what} file ({e})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, IndexError) as e:
        raise ModelFileError(f"{path}: not a readable {what} file ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict):
        raise ModelFileError(f"{path}: not a {what} file (holds a {type(ck).__name__}, not a mapping)")
    return ck


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint (:func:`load_torch_file`, data only)."""
    return load_torch_file(path, "JANUS checkpoint")


def write_train_log(history: list[dict], tsv: Path, png: Path, title: str) -> None:
    import pandas as pd

    from nidsflow.plotting import plt

    df = pd.DataFrame(history)
    df.to_csv(tsv, sep="\t", index=False, float_format="%.6g")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for col, style in (("train_loss", "-"), ("val_loss", "-"), ("train_cfm", ":"), ("val_cfm", ":"),
                       ("train_dfm", "--"), ("val_dfm", "--")):
        if col in df and df[col].abs().sum() > 0:
            ax.plot(df["epoch"], df[col], style, label=col)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def load_model(path: str | Path, device: str | None = None) -> tuple[JanusModel, Normaliser, dict]:
    """(model in eval mode, its normaliser, the checkpoint's metadata) from a model.pt (data-only loading:
    :func:`load_torch_file`; every problem is a :class:`ModelFileError` naming the file)."""
    ck = load_torch_file(path)
    if ck.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a JANUS model file (format {ck.get('format')!r}, expected {MODEL_FORMAT!r})")
    try:
        model = JanusModel(JanusConfig(**ck["model_config"]))
        model.load_state_dict(ck["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ModelFileError(f"{path}: inconsistent JANUS model file ({type(e).__name__}: {e})") from None
    model.to(pick_device(device)).eval()
    return model, Normaliser.from_state_dict(ck["normaliser"]), ck
