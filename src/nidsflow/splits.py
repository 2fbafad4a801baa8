"""Benign-train / benign-val / test splits of a store, seeded, shared by every detector of a dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.capture.store import UNMATCHED

log = logging.getLogger(__name__)

#: Share of benign flows always held out for the test set when there are fewer than asked for.
MIN_TEST_BENIGN_FRACTION = 0.2


@dataclass
class Split:
    train: np.ndarray  # benign flow ids
    val: np.ndarray    # benign flow ids
    test: np.ndarray   # benign + attack flow ids

    def save(self, path: str | Path) -> None:
        np.savez(path, train=self.train, val=self.val, test=self.test)

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        z = np.load(path)
        return cls(z["train"], z["val"], z["test"])


def make_split(flows: pd.DataFrame, seed: int, n_train: int, n_val: int,
               max_test_benign: int | None = None, max_test_per_class: int | None = None,
               source: str = "store") -> Split:
    """Draw disjoint benign train/val sets and a test set of held-out benign + every attack class.

    Flows labelled UNMATCHED are excluded (and counted in the log). Test benign and per-class
    attack counts are capped when a cap is given, so one huge class cannot dominate.
    """
    rng = np.random.default_rng(seed)
    unmatched = flows["label"].to_numpy() == UNMATCHED
    if unmatched.any():
        log.warning("%s: %d of %d flows are %s and excluded from every split", source, unmatched.sum(), len(flows), UNMATCHED)
    usable = flows[~unmatched]
    benign = usable.loc[~usable["is_attack"], "flow_id"].to_numpy()
    if len(benign) == 0:
        raise ValueError(f"{source}: no benign flows; an unsupervised detector needs benign training traffic")
    if len(benign) < (n_train + n_val) / (1 - MIN_TEST_BENIGN_FRACTION):
        # Too few benign flows: shrink train and val in proportion, keeping a share for the test set
        # (a handful of benign test flows would make every AUROC meaningless).
        scale = (1 - MIN_TEST_BENIGN_FRACTION) * len(benign) / (n_train + n_val)
        new_train, new_val = max(1, int(n_train * scale)), max(1, int(n_val * scale))
        log.warning("%s: only %d benign flows for n_train=%d + n_val=%d + test; using %d / %d and %d for test",
                    source, len(benign), n_train, n_val, new_train, new_val, len(benign) - new_train - new_val)
        n_train, n_val = new_train, new_val
    benign = rng.permutation(benign)
    train, val, rest = benign[:n_train], benign[n_train:n_train + n_val], benign[n_train + n_val:]
    if max_test_benign is not None and len(rest) > max_test_benign:
        rest = rest[:max_test_benign]
    test_parts = [rest]
    attacks = usable[usable["is_attack"]]
    for cls, group in attacks.groupby("attack_class", sort=True):
        ids = rng.permutation(group["flow_id"].to_numpy())
        if max_test_per_class is not None and len(ids) > max_test_per_class:
            ids = ids[:max_test_per_class]
        log.info("%s: test class %s: %d flows", source, cls, len(ids))
        test_parts.append(ids)
    if len(attacks) == 0:
        log.warning("%s: no attack flows; the test set is benign only and AUROC is undefined", source)
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    log.info("%s: split seed %d: train %d, val %d, test %d (benign %d)", source, seed, len(train), len(val),
             len(test), len(rest))
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64), test)
