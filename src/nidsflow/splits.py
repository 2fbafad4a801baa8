"""Benign-train / benign-val / test splits of a store, seeded, shared by every detector of a dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.store import UNMATCHED

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


#: How benign flows are divided between train, val and test (config split.group_by).
GROUP_BY = ("none", "source_file", "time")


def make_split(flows: pd.DataFrame, seed: int, n_train: int, n_val: int,
               max_test_benign: int | None = None, max_test_per_class: int | None = None,
               source: str = "store", group_by: str = "none", min_test_benign: int | None = None) -> Split:
    """Draw disjoint benign train/val sets and a test set of held-out benign + every attack class.

    ``group_by`` says how the benign flows are divided (attacks always go to the test set):

    * ``"none"``: a seeded random permutation of the benign flows (flow-level split);
    * ``"source_file"``: whole capture files go to one part (:func:`_assign_files`), so the test benign
      traffic comes from captures the model never saw; needs at least 3 benign capture files;
    * ``"time"``: benign flows ordered by start time (``first_ts``, ties by ``flow_id``): train the
      earliest, val the next, test the latest (the seed only draws the capped test subsets).

    Flows labelled UNMATCHED are excluded (and counted in the log). Test benign and per-class
    attack counts are capped when a cap is given, so one huge class cannot dominate.

    Sizes (:func:`split_sizes`): with ``min_test_benign`` set, the split is "up to ``n_train`` train,
    ``n_val`` val, at least ``min_test_benign`` test": when the benign flows are too few for all three,
    train shrinks first. Without it (or when even that leaves train smaller than val), train and val
    shrink in proportion and at least ``MIN_TEST_BENIGN_FRACTION`` of the benign flows stay for test.
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"{source}: split.group_by {group_by!r} is not one of {list(GROUP_BY)}")
    rng = np.random.default_rng(seed)
    unmatched = flows["label"].to_numpy() == UNMATCHED
    if unmatched.any():
        log.warning("%s: %d of %d flows are %s and excluded from every split", source, unmatched.sum(), len(flows), UNMATCHED)
    usable = flows[~unmatched]
    benign_rows = usable[~usable["is_attack"]]
    benign = benign_rows["flow_id"].to_numpy()
    if len(benign) == 0:
        raise ValueError(f"{source}: no benign flows; an unsupervised detector needs benign training traffic")
    if group_by != "none" and len(benign) < 3:
        raise ValueError(f"{source}: split.group_by {group_by}: only {len(benign)} benign flows; train, val and "
                         f"test need at least one each")
    n_train, n_val = split_sizes(len(benign), n_train, n_val, min_test_benign, max_test_benign, source)
    if group_by == "none":
        benign = rng.permutation(benign)
        train, val, rest = benign[:n_train], benign[n_train:n_train + n_val], benign[n_train + n_val:]
        if max_test_benign is not None and len(rest) > max_test_benign:
            rest = rest[:max_test_benign]
    elif group_by == "source_file":
        train, val, rest = _split_by_file(benign_rows, rng, n_train, n_val, max_test_benign, source,
                                          balanced=min_test_benign is not None)
    else:
        train, val, rest = _split_by_time(benign_rows, rng, n_train, n_val, max_test_benign, source)
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
    if min_test_benign is not None and len(rest) < min_test_benign:
        log.warning("%s: only %d benign test flows (split.min_test_benign %d): the benign flows (or, with "
                    "group_by source_file, their capture files) do not allow more", source, len(rest), min_test_benign)
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    log.info("%s: split seed %d (group_by %s): train %d, val %d, test %d (benign %d)", source, seed, group_by,
             len(train), len(val), len(test), len(rest))
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64), test)


def split_sizes(n_benign: int, n_train: int, n_val: int, min_test_benign: int | None = None,
                max_test_benign: int | None = None, source: str = "store") -> tuple[int, int]:
    """The train and val sizes to aim at for ``n_benign`` benign flows (the test set takes the rest).

    * enough flows (``n_train + n_val + min_test_benign``, or ``(n_train + n_val) / 0.8`` without a test
      floor): ``n_train``, ``n_val`` as asked;
    * ``min_test_benign`` set and ``n_benign - n_val - min_test_benign >= n_val``: train takes what is left
      after val and the test floor ("up to n_train", "at least min_test_benign");
    * otherwise train and val shrink in proportion, keeping ``MIN_TEST_BENIGN_FRACTION`` for the test set
      (a handful of benign test flows would make every AUROC meaningless).
    """
    if min_test_benign is not None:
        if max_test_benign is not None and max_test_benign < min_test_benign:
            raise ValueError(f"{source}: split.max_test_benign {max_test_benign} < split.min_test_benign "
                             f"{min_test_benign}")
        room = n_benign - n_val - min_test_benign
        if room >= n_train:
            return n_train, n_val
        if room >= n_val:
            log.warning("%s: %d benign flows: train %d (of n_train=%d), val %d, test at least %d", source,
                        n_benign, room, n_train, n_val, min_test_benign)
            return room, n_val
    elif n_benign >= (n_train + n_val) / (1 - MIN_TEST_BENIGN_FRACTION):
        return n_train, n_val
    scale = (1 - MIN_TEST_BENIGN_FRACTION) * n_benign / (n_train + n_val)
    new_train, new_val = max(1, int(n_train * scale)), max(1, int(n_val * scale))
    log.warning("%s: only %d benign flows for n_train=%d + n_val=%d + test; using %d / %d and %d for test",
                source, n_benign, n_train, n_val, new_train, new_val, n_benign - new_train - new_val)
    return new_train, new_val


def _assign_files(sizes: pd.Series, rng: np.random.Generator, n_train: int, n_val: int) -> dict[str, list]:
    """Whole files -> "train" / "val" / "test", aiming at n_train and n_val benign flows.

    In a seeded random order each file goes to train if it still fits there (the first file always does), else
    to val if it fits there, else to test; so train and val come close to their sizes without overshooting and
    the captures left over are the test set. A part left without a file then takes the smallest file of the
    part with most files (at least 3 files, so one has two)."""
    order = list(sizes.index[rng.permutation(len(sizes))])
    parts = {"train": [], "val": [], "test": []}
    count = {"train": 0, "val": 0, "test": 0}
    for f in order:
        n = int(sizes[f])
        part = ("train" if not parts["train"] or count["train"] + n <= n_train
                else "val" if count["val"] + n <= n_val else "test")
        parts[part].append(f)
        count[part] += n
    return _fill_empty_parts(parts, sizes)


def _fill_empty_parts(parts: dict[str, list], sizes: pd.Series) -> dict[str, list]:
    """A part left without a file takes the smallest file of the part with most files (at least 3 files)."""
    for empty in parts:
        if not parts[empty]:
            donor = max(parts, key=lambda p: len(parts[p]))
            f = min(parts[donor], key=lambda g: (int(sizes[g]), g))
            parts[donor].remove(f)
            parts[empty].append(f)
    return parts


def _assign_files_balanced(sizes: pd.Series, rng: np.random.Generator, n_train: int, n_val: int) -> dict[str, list]:
    """Whole files -> "train" / "val" / "test", each part filled in proportion to its target.

    The targets are n_train, n_val and the rest (n_benign - n_train - n_val). In a seeded random order each file
    goes to the part that is least full (flows / target) among those it still fits in, or, fitting in none, to
    the part least full after taking it. Every part so draws files of every size from the whole pool: the
    test captures are a random sample of the captures, not the large ones left over when train and val are full
    (what :func:`_assign_files` gives when a few captures hold thousands of flows). Val or test left under its
    target then takes from train the smallest file that makes up the difference (or the largest, and again),
    so val and test are "at least" their targets and train "up to" its own."""
    order = list(sizes.index[rng.permutation(len(sizes))])
    names = ("train", "val", "test")
    target = dict(zip(names, (n_train, n_val, max(1, int(sizes.sum()) - n_train - n_val))))
    parts = {p: [] for p in names}
    count = dict.fromkeys(names, 0)
    for f in order:
        n = int(sizes[f])
        fits = [p for p in names if count[p] + n <= target[p]]
        part = (min(fits, key=lambda p: count[p] / target[p]) if fits
                else min(names, key=lambda p: (count[p] + n) / target[p]))
        parts[part].append(f)
        count[part] += n
    for short in ("val", "test"):  # "at least": a part left under its target takes files from train
        while count[short] < target[short] and len(parts["train"]) > 1:
            deficit = target[short] - count[short]
            by_size = sorted(parts["train"], key=lambda g: (int(sizes[g]), g))
            f = next((g for g in by_size if int(sizes[g]) >= deficit), by_size[-1])  # the least overshoot
            parts["train"].remove(f)
            parts[short].append(f)
            count["train"] -= int(sizes[f])
            count[short] += int(sizes[f])
    return _fill_empty_parts(parts, sizes)


def _split_by_file(benign: pd.DataFrame, rng, n_train, n_val, max_test_benign, source, balanced: bool = False):
    """Benign train / val / test flow ids with each capture file's benign flows in one part only
    (``balanced``: :func:`_assign_files_balanced`, else :func:`_assign_files`)."""
    if "source_file" not in benign:
        raise ValueError(f"{source}: split.group_by source_file needs the flows' source_file column")
    sizes = benign.groupby("source_file", sort=True).size()
    if len(sizes) < 3:
        raise ValueError(f"{source}: split.group_by source_file needs benign flows from at least 3 capture files "
                         f"(train, val and test one each); found {len(sizes)}: {list(sizes.index)}")
    parts = (_assign_files_balanced if balanced else _assign_files)(sizes, rng, n_train, n_val)
    caps = {"train": n_train, "val": n_val, "test": max_test_benign}
    out = {}
    for part, files in parts.items():
        ids = rng.permutation(benign.loc[benign["source_file"].isin(files), "flow_id"].to_numpy())
        cap = caps[part]
        if cap is not None and len(ids) > cap:
            # the surplus of a part's captures is left out of every part (never moved to another: disjoint files)
            log.info("%s: %s: %d benign flows of its captures left unused (cap %d)", source, part, len(ids) - cap, cap)
            ids = ids[:cap]
        out[part] = ids
        log.info("%s: %s: %d benign flows from %d capture files", source, part, len(ids), len(files))
    return out["train"], out["val"], out["test"]


def _split_by_time(benign: pd.DataFrame, rng, n_train, n_val, max_test_benign, source):
    """Benign train = the earliest flows, val the next, test the latest (capped by a seeded subsample)."""
    if "first_ts" not in benign:
        raise ValueError(f"{source}: split.group_by time needs the flows' first_ts column")
    ordered = benign.sort_values(["first_ts", "flow_id"], kind="stable")["flow_id"].to_numpy()
    train, val, rest = ordered[:n_train], ordered[n_train:n_train + n_val], ordered[n_train + n_val:]
    if max_test_benign is not None and len(rest) > max_test_benign:
        rest = rng.choice(rest, max_test_benign, replace=False)
    return train, val, rest
