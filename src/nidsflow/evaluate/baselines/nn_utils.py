"""Seeded torch training with early stopping on benign val, shared by the deep baselines."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from nidsflow.evaluate.baselines.common import EPOCH_RTOL, BaselineError, count_parameters, improves  # noqa: F401


def seed_torch(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def batches(n: int, batch_size: int, gen: torch.Generator | None):
    """Index batches over n rows, shuffled with ``gen`` (or in order when gen is None)."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train_early_stopping(module: torch.nn.Module, step, val_loss, n_train: int, epochs: int, batch_size: int,
                         lr: float, seed: int, patience: int, weight_decay: float = 0.0,
                         cosine: bool = False, min_rel_improvement: float = EPOCH_RTOL,
                         min_batch: int = 1) -> tuple[float, int]:
    """Adam on ``step(idx) -> loss`` over shuffled batches; keep the epoch with the lowest ``val_loss()``
    (an epoch counts as better only by a relative margin ``min_rel_improvement``, common.improves).

    ``cosine``: the learning rate decays from ``lr`` to 0 along a half cosine over the ``epochs``
    (constant otherwise). Batches smaller than ``min_batch`` are skipped (2 where BatchNorm or a
    contrastive loss cannot use a single row). Returns (best val loss, best epoch). The module is left
    holding the best epoch's weights. Inside :func:`recording_losses` every epoch's mean training loss and val
    loss are recorded (the summary page's learning curves).
    """
    gen = seed_torch(seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    n_steps = epochs * ((n_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(n_steps, 1)) if cosine else None
    best, best_epoch, best_state, bad = float("inf"), -1, None, 0
    history: list[dict] = []
    for epoch in range(epochs):
        module.train()
        train_sum, train_n = 0.0, 0
        for idx in batches(n_train, batch_size, gen):
            if len(idx) < min_batch:
                continue
            loss = step(idx)
            train_sum, train_n = train_sum + float(loss.detach()) * len(idx), train_n + len(idx)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            if sched is not None:
                sched.step()
        module.eval()
        with torch.no_grad():
            v = float(val_loss())
        history.append({"epoch": epoch + 1, "train_loss": train_sum / max(train_n, 1), "val_loss": v})
        if improves(v, best, min_rel_improvement):
            best, best_epoch, best_state, bad = v, epoch, copy.deepcopy(module.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is None:
        raise BaselineError(f"{type(module).__name__}: validation loss never finite; training diverged")
    module.load_state_dict(best_state)
    module.eval()
    if _RECORDERS:
        _RECORDERS[-1].append((type(module).__name__, history))
    return best, best_epoch


#: Open :func:`recording_losses` blocks, innermost last.
_RECORDERS: list[list] = []


@contextlib.contextmanager
def recording_losses():
    """Collect the per-epoch losses of every :func:`train_early_stopping` run inside the block (a baseline's
    ``fit``: each grid point, a teacher's pretraining, the student). Yields a dict, filled when the block ends:
    network name ("MMRNet", "ModuleList #2" for the second of that name) -> list of {epoch, train_loss,
    val_loss}, in training order."""
    runs: list = []
    out: dict[str, list[dict]] = {}
    _RECORDERS.append(runs)
    try:
        yield out
    finally:
        _RECORDERS.pop()
        seen: dict[str, int] = {}
        for name, hist in runs:
            seen[name] = seen.get(name, 0) + 1
            out[name if seen[name] == 1 else f"{name} #{seen[name]}"] = hist


def packet_tokens(pre, x) -> tuple[torch.Tensor, torch.Tensor]:
    """Packet view -> (tokens [n, T, 10]: the 9 ``PacketPreprocessor`` channels and a valid flag;
    valid mask bool [n, T]). The flag tells padding from an average packet (both are 0 after
    standardisation); a flow has at least one packet, so position 0 is always valid."""
    tok, valid = pre.transform(x.packets, x.lengths)
    valid[:, 0] = True
    tok = np.concatenate([tok, valid[..., None].astype(np.float32)], axis=-1)
    return torch.from_numpy(tok), torch.from_numpy(valid)


@torch.no_grad()
def in_chunks(fn, *tensors: torch.Tensor, size: int = 4096) -> torch.Tensor:
    """fn applied to row chunks of the tensors (bounded memory at scoring time), concatenated."""
    n = len(tensors[0])
    out = [fn(*(t[i:i + size] for t in tensors)) for i in range(0, n, size)]
    return torch.cat(out) if out else torch.zeros(0)
