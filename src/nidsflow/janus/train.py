"""Joint training of JANUS on benign flows: loss = L_cfm + lambda_disc * L_dfm (SPEC "JANUS").

One step (paths in :mod:`nidsflow.janus.paths`):

1. t_cont, t_disc ~ U[0, 1] independently (t_cont = 1 for a variant without the CFM head, t_disc = 1
   without the DFM head: that state is then given clean);
2. x0 ~ N(0, I) for every continuous dim; noise rows re-paired with the data rows by the minibatch OT
   plan (Eq. C4); x_t, u_t by Eqs. C1/C2; padding dims zero and masked;
3. bits corrupted by the mixture path (Eq. D1); L_dfm by Eq. D2 on corrupted valid positions;
4. AdamW, linear warm-up then cosine decay of the learning rate, gradient-norm clipping.

Every epoch ends with the benign-val loss (fixed seeded noise, so epochs are comparable) and a
checkpoint (model, optimiser, scheduler, all RNG states, epoch, best weights, early-stopping
counter, history). A run finding a checkpoint with the same fingerprint (variant, seed, settings and
a hash of the normaliser and of every train/val tensor, :func:`data_fingerprint`) resumes from it and
gives exactly the result of an uninterrupted run on CPU; the checkpoint is removed once model.pt is
written, so a finished run is never resumed. Early stopping after ``patience`` epochs without
a better val loss; the saved model holds the best weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
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
from nidsflow.janus.variants import TrainSettings, resolve_variant
from nidsflow.splits import Split
from nidsflow.store import Store

log = logging.getLogger(__name__)

MODEL_FORMAT = "nidsflow-janus-1"
CHECKPOINT_NAME = "checkpoint.pt"


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

    def __init__(self, model: JanusModel, settings: TrainSettings):
        self.model = model
        self.s = settings
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
        out = self.model(x_flow.to(device), x_pkt.to(device), bits.to(device), batch.valid.to(device),
                         t_cont.to(device), t_disc.to(device))
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


def load_training_data(store: Store, split: Split, model_kw: dict, settings: TrainSettings, seed: int,
                       ) -> tuple[Normaliser, JanusBatch, JanusBatch]:
    """Normaliser fitted on benign train; normalised train and (capped) benign-val batches."""
    use_flow = model_kw.get("flow_token", True)
    use_pkt = model_kw.get("use_packets", True)
    T = int(model_kw.get("T", 64))
    if use_pkt and store.T < T:
        log.warning("%s: store keeps %d packets per flow, model T is %d: the rest is padding", store.root, store.T, T)
    feats, pk, ln = load_raw(store, split.train, True, use_pkt)
    units = (PACKET_UNIT_SCALE[0], float(settings.iat_unit_scale), PACKET_UNIT_SCALE[2])
    norm = Normaliser.fit(feats if use_flow else None, pk, ln, T, settings.feature_clip, source=str(store.root),
                          packet_unit_scale=units)
    train = norm.transform(feats, pk, ln, len(split.train), source=str(store.root))
    val_ids = split.val
    if len(val_ids) > settings.val_max_flows:
        val_ids = np.sort(np.random.default_rng(seed).choice(val_ids, settings.val_max_flows, replace=False))
        log.info("benign val loss on %d of %d val flows", len(val_ids), len(split.val))
    fv, pv, lv = load_raw(store, val_ids, True, use_pkt)
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
    objective = JanusObjective(model, settings)
    log.info("JANUS %s seed %d on %s: %d train / %d val flows, %d flow features, T=%d, %d parameters, device %s",
             variant, seed, store.root, len(train), len(val), n_feat, mcfg.T,
             sum(p.numel() for p in model.parameters()), dev)

    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(settings.warmup_steps, settings.epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "best_state": None, "bad_epochs": 0, "history": []}
    fp = _fingerprint(variant, seed, mcfg.to_dict(), settings.to_dict(), data_fingerprint(norm, train, val))
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("fingerprint") == fp:
            model.load_state_dict(ck["model"])
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
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        sums = np.zeros(3)
        bar = tqdm(range(steps_per_epoch), desc=f"janus {variant} epoch {epoch}", file=sys.stderr,
                   disable=not progress, mininterval=5.0, leave=False)
        for k in bar:
            b = train.index(perm[k * settings.batch_size:(k + 1) * settings.batch_size]).trimmed()
            parts = objective(b, gen, np_rng, dev)
            opt.zero_grad(set_to_none=True)
            parts.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            sched.step()
            sums += np.array([float(parts.total.detach()), float(parts.cfm.detach()), float(parts.dfm.detach())]) * len(b)
            bar.set_postfix(loss=f"{float(parts.total.detach()):.4f}", refresh=False)
        if not np.all(np.isfinite(sums)):
            raise FloatingPointError(f"JANUS {variant} seed {seed}: training loss is not finite in epoch {epoch}; "
                                     "lower janus.lr or check the store's features")
        tr = sums / len(train)
        va = _evaluate(objective, val, settings.batch_size, seed, dev)
        improved = va[0] < state["best_val"]
        if improved:
            state.update(best_val=va[0], best_epoch=epoch, bad_epochs=0,
                         best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "train_loss": tr[0], "train_cfm": tr[1], "train_dfm": tr[2],
                                 "val_loss": va[0], "val_cfm": va[1], "val_dfm": va[2],
                                 "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        log.info("epoch %d: train %.5f (cfm %.5f, dfm %.5f) val %.5f (cfm %.5f, dfm %.5f)%s", epoch, *tr, *va,
                 " *" if improved else "")
        _save_atomic({"fingerprint": fp, "model": model.state_dict(), "optimizer": opt.state_dict(),
                      "scheduler": sched.state_dict(), "gen": gen.get_state(), "np_rng": np_rng.bit_generator.state,
                      "torch_rng": torch.get_rng_state(), "state": state}, ckpt_path)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < settings.epochs:
            stopped = True
            break
    if stopped:
        log.info("stopped after epoch %d on request; rerun to resume", state["epoch"])
        return None
    if objective.coupler is not None and objective.coupler.n_unconverged:
        log.info("OT: %d minibatch plans stopped at ot_max_iter=%d with marginals > 1 %% off (paired by %s)",
                 objective.coupler.n_unconverged, settings.ot_max_iter, settings.ot_pairing)
    if state["bad_epochs"] >= settings.patience:
        log.info("early stop after epoch %d (best val %.5f at epoch %d)", state["epoch"], state["best_val"], state["best_epoch"])
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


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    """(model in eval mode, its normaliser, the checkpoint's metadata) from a model.pt."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or ck.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a JANUS model file (format {ck.get('format') if isinstance(ck, dict) else None!r})")
    model = JanusModel(JanusConfig(**ck["model_config"]))
    model.load_state_dict(ck["state_dict"])
    model.to(pick_device(device)).eval()
    return model, Normaliser.from_state_dict(ck["normaliser"]), ck
