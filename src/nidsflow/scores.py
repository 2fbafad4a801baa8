"""One on-disk format for per-flow anomaly scores, shared by JANUS, cross scoring and baselines.

A scores file (``.npz``) holds, row-aligned:
    flow_id      int64   flow ids in the dataset's store
    split        str     "val" (benign validation rows, for fitting aggregators and thresholds) or "test"
    label        str     the flow's label as extracted
    attack_class str     "benign" or the attack family
    is_attack    bool
    score_names  str     [k] column names of ``scores``
    scores       float32 [n, k] higher = more anomalous
    n_packets    int64   (optional) each flow's packet count, for the length-aware benign reference
                         (``evaluate.aggregators.LengthReference``); files written before it lack it
Labels travel with the scores only so evaluation can read them; nothing that fits a model or an
aggregator may read ``label``, ``attack_class`` or ``is_attack`` of ``split == "test"`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: The 10-d JANUS score vector, in order.
JANUS_SCORE_NAMES: tuple[str, ...] = (
    "terminal_norm", "terminal_flow", "terminal_packet",
    "disc_nll_total", "disc_nll_dir", "disc_nll_syn", "disc_nll_fin", "disc_nll_rst", "disc_nll_psh", "disc_nll_ack",
)
#: Score options of JANUS: extra columns after the seed's 10-d vector, written when enabled in the config.
CNF_SCORE = "cnf_nll"
#: Score option ``janus.flow_nll``: the flow's NLL in nats (total, then its continuous, discrete and length parts,
#: then flow_nll_z: the total without the feature transform's log-Jacobian, i.e. in the model's coordinates).
FLOW_NLL_SCORE = "flow_nll"
FLOW_NLL_Z_SCORE = "flow_nll_z"
FLOW_NLL_SCORES: tuple[str, ...] = (FLOW_NLL_SCORE, "flow_nll_cont", "flow_nll_disc", "flow_nll_len", FLOW_NLL_Z_SCORE)
OPTION_SCORES: tuple[str, ...] = (CNF_SCORE, *FLOW_NLL_SCORES)


@dataclass
class ScoreTable:
    flow_id: np.ndarray
    split: np.ndarray
    label: np.ndarray
    attack_class: np.ndarray
    is_attack: np.ndarray
    score_names: tuple[str, ...]
    scores: np.ndarray
    #: Each flow's packet count (None: unknown, e.g. a file written before the column existed).
    n_packets: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.flow_id)
        optional = () if self.n_packets is None else ("n_packets",)
        for name in ("split", "label", "attack_class", "is_attack") + optional:
            if len(getattr(self, name)) != n:
                raise ValueError(f"score table column {name} has {len(getattr(self, name))} rows, flow_id {n}")
        if self.scores.shape != (n, len(self.score_names)):
            raise ValueError(f"scores shape {self.scores.shape} != ({n}, {len(self.score_names)})")

    @classmethod
    def from_flows(cls, flows: pd.DataFrame, flow_ids: np.ndarray, split: np.ndarray,
                   score_names, scores: np.ndarray) -> "ScoreTable":
        """Build from a store's flows table (indexed by position = flow_id)."""
        rows = flows.iloc[np.asarray(flow_ids)]
        return cls(np.asarray(flow_ids, dtype=np.int64), np.asarray(split, dtype=str),
                   rows["label"].to_numpy(dtype=str), rows["attack_class"].to_numpy(dtype=str),
                   rows["is_attack"].to_numpy(dtype=bool), tuple(score_names),
                   np.asarray(scores, dtype=np.float32),
                   rows["n_packets"].to_numpy(dtype=np.int64) if "n_packets" in rows else None)

    def column(self, name: str) -> np.ndarray:
        return self.scores[:, self.score_names.index(name)]

    def subset(self, mask: np.ndarray) -> "ScoreTable":
        return ScoreTable(self.flow_id[mask], self.split[mask], self.label[mask], self.attack_class[mask],
                          self.is_attack[mask], self.score_names, self.scores[mask],
                          None if self.n_packets is None else self.n_packets[mask])

    @property
    def val(self) -> "ScoreTable":
        return self.subset(self.split == "val")

    @property
    def test(self) -> "ScoreTable":
        return self.subset(self.split == "test")

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, flow_id=self.flow_id, split=self.split, label=self.label,
                            attack_class=self.attack_class, is_attack=self.is_attack,
                            score_names=np.array(self.score_names), scores=self.scores,
                            **({} if self.n_packets is None else {"n_packets": self.n_packets}))

    @classmethod
    def load(cls, path: str | Path) -> "ScoreTable":
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable scores file ({e})") from e
        return cls(z["flow_id"], z["split"], z["label"], z["attack_class"], z["is_attack"],
                   tuple(str(s) for s in z["score_names"]), z["scores"],
                   z["n_packets"] if "n_packets" in z.files else None)
