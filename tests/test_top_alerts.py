"""Why JANUS alerted: the top test flows of a real (tiny) JANUS run, explained by the deployment path; and the
deep baselines' per-epoch losses that the summary's learning curves read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
from nidsflow.evaluate.phase1 import score_phase1
from nidsflow.fixtures import make_scan_flood_store
from nidsflow.janus.train import train_janus
from nidsflow.scores import ScoreTable
from nidsflow.splits import make_split
from nidsflow.store import Store
from nidsflow.top_alerts import explain_top_flows, rank_test_flows, read_alerts, write_alerts

CFG = {"T": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "epochs": 2, "batch_size": 64, "warmup_steps": 2,
       "solver": "euler", "solver_steps": 2, "disc_times": [0.5], "score_batch_size": 128, "patience": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("alerts")
    make_scan_flood_store(tmp / "store", n_benign=400, n_scan=40, n_flood=40, T=8, seed=3, shard_flows=300)
    make_split(Store(tmp / "store").flows, seed=42, n_train=240, n_val=80).save(tmp / "split.npz")
    md = tmp / "janus"
    train_janus(tmp / "store", tmp / "split.npz", md, CFG, "full", 42, device="cpu", progress=False)
    score_phase1(md / "model.pt", tmp / "store", tmp / "split.npz", md / "scores.npz", md / "auroc.json", CFG,
                 device="cpu", progress=False)
    save_artifact(fit_deployable(ScoreTable.load(md / "scores.npz"), fpr_target=0.02), md / "aggregator.json")
    return tmp, md


def test_the_top_test_flows_are_explained_as_the_deployment_path_explains_them(run, tmp_path):
    tmp, md = run
    table = ScoreTable.load(md / "scores.npz")
    rows, d2 = rank_test_flows(table, md / "aggregator.json", 5)
    assert np.all(table.split[rows] == "test") and np.all(np.diff(d2) <= 0)
    records = explain_top_flows(md / "scores.npz", md / "aggregator.json", md / "model.pt", tmp / "store", CFG)
    assert [r["rank"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["flow_id"] for r in records] == list(table.flow_id[rows])
    flows = Store(tmp / "store").flows
    for r in records:
        f = flows.iloc[r["flow_id"]]
        assert r["category"] == f["attack_class"] and r["n_packets"] == f["n_packets"]
        assert r["flow"].startswith(f"{f['src_ip']}:{int(f['src_port'])} → {f['dst_ip']}:{int(f['dst_port'])}")
        # the axis contributions are the exact decomposition of the deployment path's d^2
        contrib = [v for v in r["axis_contribution"].values() if v is not None]
        assert sum(contrib) == pytest.approx(r["d2_rescored"], rel=1e-6)
        assert sum(v for v in r["axis_share"].values() if v is not None) == pytest.approx(1.0, rel=1e-6)
        assert 1 <= len(r["dfm_top"]) <= 3 and all(1 <= c["packet"] <= 8 for c in r["dfm_top"])
        assert r["alert"] == (r["d2_rescored"] > r["threshold"])
    # scan and flood are easy: the highest-scoring test flows are attacks
    assert sum(r["category"] != "benign" for r in records) >= 4
    write_alerts(records, tmp_path / "top.json", "ds", "JANUS full seed 42")
    back = read_alerts(tmp_path / "top.json")
    assert back["dataset"] == "ds" and back["flows"] == json.loads(json.dumps(records))
    assert read_alerts(tmp_path / "absent.json")["flows"] == []


def test_deep_baselines_keep_each_epochs_train_and_val_loss():
    from nidsflow.evaluate.baselines.nn_utils import recording_losses, train_early_stopping

    torch.manual_seed(0)
    x = torch.randn(200, 4)
    net = torch.nn.Linear(4, 4)

    def fit(epochs):
        return train_early_stopping(net, lambda idx: ((net(x[idx]) - x[idx]) ** 2).mean(),
                                    lambda: ((net(x) - x) ** 2).mean(), 200, epochs=epochs, batch_size=50, lr=0.05,
                                    seed=0, patience=10)

    fit(2)  # outside a recording block: nothing kept
    with recording_losses() as hist:
        best, epoch = fit(6)
        fit(3)
    assert list(hist) == ["Linear", "Linear #2"] and len(hist["Linear #2"]) == 3
    h = hist["Linear"]
    assert [e["epoch"] for e in h] == [1, 2, 3, 4, 5, 6]
    assert h[epoch]["val_loss"] == pytest.approx(best) and h[-1]["train_loss"] < h[0]["train_loss"]
