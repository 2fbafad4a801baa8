"""Issue 26 item 8: a flow's random score draws are seeded by the flow itself (5-tuple, first-packet time),
so extraction-time scoring, ``score-capture`` and ``watch`` give the same flow the same scores, wherever it
sits in the store, the capture or the stream.

The model is a toy JANUS (d_model 16, one layer, 2 epochs) on a generated benign capture; the store is built
from the capture with the deployment's own flow code, so the same flows are scored both ways.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nidsflow.scores import JANUS_SCORE_NAMES

EXTRACT = {"T": 8, "idle_timeout_s": 120, "active_timeout_s": 1800}
JANUS = {"T": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "epochs": 2, "batch_size": 64,
         "warmup_steps": 2, "solver": "euler", "solver_steps": 2, "disc_times": [0.3, 0.7], "score_batch_size": 64,
         "patience": 2}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from nidsflow.demo.generate import capture_file, generate_domain
    from nidsflow.deploy.scoring import iter_capture_flows
    from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
    from nidsflow.janus.score import score_split
    from nidsflow.janus.train import train_janus
    from nidsflow.splits import make_split
    from nidsflow.store import Store, StoreWriter

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("seed")
    generate_domain("demo_a", tmp / "gen", seed=5, benign_sessions=150, attack_sessions=0, duration_s=300)
    capture = tmp / "gen" / capture_file("demo_a")
    parts = list(iter_capture_flows(capture, EXTRACT))
    frame = pd.concat([p[0] for p in parts], ignore_index=True).drop(columns=["end_reason"])
    feats = pd.concat([p[1] for p in parts], ignore_index=True)
    channels, lengths = np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
    # the store holds the flows in another order than the capture (as extraction of several captures
    # does): a flow's flow_id is not its position in the capture
    perm = np.random.default_rng(0).permutation(len(frame))
    w = StoreWriter(tmp / "store", EXTRACT["T"])
    w.add_shard(channels[perm], lengths[perm])
    store_frame = frame.iloc[perm].reset_index(drop=True)
    store_frame["label"], store_frame["attack_class"], store_frame["is_attack"] = "BENIGN", "benign", False
    store_frame["source_file"], store_frame["flow_id"] = "x", np.arange(len(frame))
    w.finish(store_frame, feats.iloc[perm].reset_index(drop=True))
    n = len(frame)
    split = make_split(Store(tmp / "store").flows, seed=0, n_train=int(n * 0.5), n_val=int(n * 0.3))
    split.save(tmp / "split.npz")
    md = tmp / "model"
    train_janus(tmp / "store", tmp / "split.npz", md, JANUS, "full", seed=0, device="cpu", progress=False)
    table = score_split(md / "model.pt", tmp / "store", tmp / "split.npz", JANUS, device="cpu", progress=False)
    save_artifact(fit_deployable(table, fpr_target=0.05), md / "aggregator.json")
    yield {"capture": capture, "perm": perm, "model": md / "model.pt", "aggregator": md / "aggregator.json", "table": table,
           "frame": frame, "feats": feats, "channels": channels, "lengths": lengths}
    torch.set_num_threads(n_threads)


def _detector(d):
    from nidsflow.deploy.scoring import Detector

    return Detector(d["model"], d["aggregator"], EXTRACT, JANUS, device="cpu")


def test_flow_keys_depend_on_the_flow_only():
    from nidsflow.janus.data import flow_keys

    f = pd.DataFrame({"src_ip": ["10.0.0.1", "10.0.0.2", "10.0.0.1"], "src_port": [1234, 1234, 1234],
                      "dst_ip": ["10.0.0.9"] * 3, "dst_port": [80, 80, 80], "protocol": [6, 6, 6],
                      "first_ts": [1.5, 1.5, 1.5000004]})
    k = flow_keys(f)
    assert k.dtype == np.int64 and (k >= 0).all()
    assert k[0] != k[1]                          # another address: another key
    assert k[0] == k[2]                          # the same microsecond: the same flow
    np.testing.assert_array_equal(flow_keys(f.iloc[::-1]), k[::-1])  # order does not matter
    wide = f.astype({"src_port": np.int32, "protocol": np.uint8})    # nor the integer widths a reader uses
    np.testing.assert_array_equal(flow_keys(wide), k)


def test_a_flow_gets_the_same_scores_wherever_it_is_scored(deployed):
    """Today's code seeded the draws by the flow's running index (0..n-1 per Detector.score call, the
    capture's running position in score-capture, the stream's in watch, flow_id at extraction): the same
    flow, scored at another position, got other disc_nll scores. Now each of the three agrees."""
    d = deployed
    det = _detector(d)
    frame, feats, ch, ln = d["frame"], d["feats"], d["channels"], d["lengths"]
    whole = det.score(frame, feats, ch, ln, explain=False)
    k = 7  # the same flows after dropping the first k: every position shifts by k
    tail = det.score(frame.iloc[k:], feats.iloc[k:], ch[k:], ln[k:], explain=False)
    disc = [c for c in JANUS_SCORE_NAMES if c.startswith("disc_")]
    np.testing.assert_allclose(tail[disc].to_numpy(), whole[disc].to_numpy()[k:], rtol=1e-5, atol=1e-6)
    # reversed order: positions and batches change, scores do not
    rev = det.score(frame.iloc[::-1], feats.iloc[::-1], ch[::-1], ln[::-1], explain=False)
    np.testing.assert_allclose(rev[list(JANUS_SCORE_NAMES)].to_numpy()[::-1], whole[list(JANUS_SCORE_NAMES)].to_numpy(),
                               rtol=1e-4, atol=1e-5)
    # extraction-time scoring (score_split over the store's val and test rows) gives those flows the same scores
    table = d["table"]
    S = whole[list(JANUS_SCORE_NAMES)].to_numpy()[d["perm"][table.flow_id]]
    np.testing.assert_allclose(table.scores[:, :10], S, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(det.score(frame, feats, ch, ln, explain=False)["deployable_score"],
                               whole["deployable_score"], rtol=1e-6)


def test_score_capture_scores_a_flow_as_extraction_did(deployed, tmp_path):
    """score-capture passed its running index as the seed: the CSV's disc scores differed from the
    extraction-time scores of the same flows."""
    from nidsflow.deploy.scoring import score_capture

    d = deployed
    capture = d["capture"]
    out = tmp_path / "s.csv"
    score_capture(capture, d["model"], d["aggregator"], out, EXTRACT, JANUS, device="cpu")
    csv = pd.read_csv(out)
    table = d["table"]
    frame = d["frame"]
    key = ["src_ip", "src_port", "dst_ip", "dst_port", "protocol"]
    merged = frame.iloc[d["perm"][table.flow_id]][key + ["first_ts"]].reset_index(drop=True)
    for j, name in enumerate(JANUS_SCORE_NAMES):
        merged[name + "_x"] = table.scores[:, j]
    m = merged.merge(csv, on=key + ["first_ts"], how="inner")
    assert len(m) == len(table.flow_id)
    for name in JANUS_SCORE_NAMES:
        np.testing.assert_allclose(m[name + "_x"], m[name], rtol=1e-4, atol=1e-5, err_msg=name)
