"""JANUS end to end on small synthetic stores: separation, determinism, resume, variants, cross scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nidsflow.evaluate.phase1 import score_cross, score_phase1
from nidsflow.fixtures import make_scan_flood_store
from nidsflow.janus.data import JanusDataError
from nidsflow.janus.score import score_split
from nidsflow.janus.train import CHECKPOINT_NAME, load_model, train_janus
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import make_split
from nidsflow.store import Store

CFG = {
    "T": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.1, "sigma": 0.1, "cross_sigma": 0.6,
    "lambda_disc": 1.0, "ot": True, "ot_method": "sinkhorn", "ot_reg": 0.05, "ot_pairing": "argmax",
    "dfm_source": "mask", "kappa_power": 1.0, "epochs": 3, "batch_size": 64, "lr": 0.003, "weight_decay": 0.01,
    "warmup_steps": 5, "grad_clip": 1.0, "patience": 3, "solver": "midpoint", "solver_steps": 2,
    "disc_times": [0.0, 0.5], "score_batch_size": 128, "score_seed": 7,
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _store(root, seed, with_packets=True):
    make_scan_flood_store(root / "store", n_benign=500, n_scan=60, n_flood=60, T=10, seed=seed,
                         with_packets=with_packets, shard_flows=300)
    split = make_split(Store(root / "store").flows, seed=42, n_train=320, n_val=100)
    split.save(root / "split.npz")
    return root / "store", root / "split.npz"


@pytest.fixture(scope="module")
def domain_a(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("a"), seed=1)


@pytest.fixture(scope="module")
def trained(domain_a, tmp_path_factory):
    store, split = domain_a
    out = tmp_path_factory.mktemp("full")
    model = train_janus(store, split, out, CFG, "full", 42, progress=False)
    report = score_phase1(model, store, split, out / "phase1_scores.npz", out / "phase1_auroc.json", CFG, progress=False)
    return out, report


def test_trained_model_separates_attacks_and_writes_its_files(trained):
    out, report = trained
    for name in ("model.pt", "train_log.tsv", "loss.png", "phase1_scores.npz", "phase1_auroc.json"):
        assert (out / name).stat().st_size > 0
    table = ScoreTable.load(out / "phase1_scores.npz")
    assert table.score_names == JANUS_SCORE_NAMES and np.isfinite(table.scores).all()
    assert set(table.split) == {"val", "test"}
    assert report["mahalanobis_oas"]["auroc"] > 0.9
    assert report["scores"]["terminal_norm"]["auroc"] > 0.8
    assert set(report["mahalanobis_oas"]["per_class"]) == {"scan", "flood"}
    assert json.loads((out / "phase1_auroc.json").read_text())["mahalanobis_oas"]["auroc"] == report["mahalanobis_oas"]["auroc"]
    log = (out / "train_log.tsv").read_text().splitlines()
    assert log[0].split("\t")[:3] == ["epoch", "train_loss", "train_cfm"] and len(log) == 1 + CFG["epochs"]
    # benign scores near the Gaussian source's typical value; a later epoch does not get worse on val loss
    benign = table.column("terminal_norm")[table.split == "val"]
    assert 0.2 < float(np.median(benign)) < 5.0


def test_same_seed_gives_identical_scores_and_resume_matches_uninterrupted(trained, domain_a, tmp_path):
    """Two runs with one seed agree exactly; a run stopped after epoch 1 and resumed agrees exactly too."""
    store, split = domain_a
    ref = ScoreTable.load(trained[0] / "phase1_scores.npz").scores
    again = train_janus(store, split, tmp_path / "again", CFG, "full", 42, progress=False)
    np.testing.assert_array_equal(score_split(again, store, split, CFG, progress=False).scores, ref)

    assert train_janus(store, split, tmp_path / "resumed", CFG, "full", 42, progress=False, stop_after_epoch=1) is None
    assert (tmp_path / "resumed" / CHECKPOINT_NAME).exists() and not (tmp_path / "resumed" / "model.pt").exists()
    resumed = train_janus(store, split, tmp_path / "resumed", CFG, "full", 42, progress=False)
    np.testing.assert_array_equal(score_split(resumed, store, split, CFG, progress=False).scores, ref)
    h1 = torch.load(again, weights_only=False)["history"]
    h2 = torch.load(resumed, weights_only=False)["history"]
    assert [r["val_loss"] for r in h1] == [r["val_loss"] for r in h2]


def test_another_seed_gives_other_scores(trained, domain_a, tmp_path):
    store, split = domain_a
    other = train_janus(store, split, tmp_path, {**CFG, "epochs": 1}, "full", 43, progress=False)
    assert not np.array_equal(score_split(other, store, split, CFG, progress=False).scores,
                              ScoreTable.load(trained[0] / "phase1_scores.npz").scores)


@pytest.mark.parametrize("variant,nan_columns", [
    ("B1", {"terminal_flow"}),
    ("B3", set(JANUS_SCORE_NAMES[3:])),
    ("B4", set(JANUS_SCORE_NAMES[:3])),
    ("B5", set()),
])
def test_ablation_variants_write_nan_for_missing_heads(variant, nan_columns, domain_a, tmp_path):
    store, split = domain_a
    model = train_janus(store, split, tmp_path, {**CFG, "epochs": 1}, variant, 42, progress=False)
    report = score_phase1(model, store, split, tmp_path / "s.npz", tmp_path / "a.json", CFG, progress=False)
    table = ScoreTable.load(tmp_path / "s.npz")
    nan_cols = {n for j, n in enumerate(table.score_names) if np.isnan(table.scores[:, j]).all()}
    assert nan_cols == nan_columns
    assert np.isfinite(np.delete(table.scores, [table.score_names.index(n) for n in nan_cols], axis=1)).all()
    assert report["mahalanobis_oas"]["auroc"] > 0.7


def test_flow_features_only_variant_runs_on_a_store_without_packets(tmp_path):
    store, split = _store(tmp_path, seed=3, with_packets=False)
    with pytest.raises(JanusDataError, match="no packet sequences"):
        train_janus(store, split, tmp_path / "full", {**CFG, "epochs": 1}, "full", 42, progress=False)
    model = train_janus(store, split, tmp_path / "b2", {**CFG, "epochs": 2}, "B2", 42, progress=False)
    report = score_phase1(model, store, split, tmp_path / "s.npz", tmp_path / "a.json", CFG, progress=False)
    table = ScoreTable.load(tmp_path / "s.npz")
    assert np.isnan(table.column("terminal_packet")).all() and np.isnan(table.column("disc_nll_total")).all()
    np.testing.assert_allclose(table.column("terminal_norm"), table.column("terminal_flow"), rtol=1e-6)
    assert report["mahalanobis_oas"]["auroc"] > 0.7


def test_cross_model_scores_the_target_with_its_own_normalisation(domain_a, tmp_path):
    store_a, split_a = domain_a
    store_b, split_b = _store(tmp_path / "b", seed=9)
    model = train_janus(store_a, split_a, tmp_path / "cross", {**CFG, "epochs": 1}, "cross", 42, progress=False)
    _, norm, meta = load_model(model)
    assert meta["train_settings"]["sigma"] == CFG["cross_sigma"]
    table = score_cross(model, store_b, split_b, tmp_path / "cross_scores.npz", CFG, progress=False)
    sb = np.load(split_b)
    np.testing.assert_array_equal(table.flow_id, np.concatenate([sb["val"], sb["test"]]))
    assert np.isfinite(table.scores).all()
    # the normaliser is the source's: fitted on A's benign train, not B's
    fresh = train_janus(store_b, split_b, tmp_path / "b_model", {**CFG, "epochs": 1}, "cross", 42, progress=False)
    assert load_model(fresh)[1].packet_mean != norm.packet_mean


def test_bf16_scoring_changes_scores_by_rounding_only(trained, domain_a):
    """bfloat16 autocast (score_bf16) is a speed setting: the scores move by rounding, the ranking barely."""
    store, split = domain_a
    fp32 = ScoreTable.load(trained[0] / "phase1_scores.npz")
    bf16 = score_split(trained[0] / "model.pt", store, split, {**CFG, "score_bf16": True}, progress=False)
    assert np.array_equal(bf16.flow_id, fp32.flow_id)
    assert np.isfinite(bf16.scores).all() and not np.array_equal(bf16.scores, fp32.scores)
    for j in range(fp32.scores.shape[1]):
        r = np.corrcoef(fp32.scores[:, j], bf16.scores[:, j])[0, 1]
        assert r > 0.98, (JANUS_SCORE_NAMES[j], r)


def test_a_flows_disc_scores_do_not_depend_on_its_batch(trained, domain_a):
    """Issue 11: corruption was seeded per chunk, so a flow's disc_nll depended on the flows batched with it.
    Seeded per flow_id: scoring every flow alone equals scoring them in batches of 128 (and of 37)."""
    store, split = domain_a
    model = trained[0] / "model.pt"
    ref = score_split(model, store, split, CFG, progress=False)
    for bs in (1, 37):
        other = score_split(model, store, split, {**CFG, "score_batch_size": bs}, progress=False)
        np.testing.assert_array_equal(other.flow_id, ref.flow_id)
        np.testing.assert_allclose(other.scores, ref.scores, rtol=2e-4, atol=1e-5)


def test_a_channel_without_corruption_is_scored_not_filled_with_zero(trained, domain_a):
    """At t = 1 (kappa 1) no position is ever drawn corrupted: the seed wrote 0 (the most benign value) into
    every disc_nll_*. Now the position closest to being drawn is corrupted and the model scores it."""
    store, split = domain_a
    table = score_split(trained[0] / "model.pt", store, split, {**CFG, "disc_times": [1.0]}, progress=False)
    disc = table.scores[:, 3:]
    assert np.isfinite(disc).all()
    assert (disc > 0).all()
    # a benign and an attack flow differ there, as elsewhere: the scores carry the model's evidence
    assert len(np.unique(np.round(table.column("disc_nll_total"), 6))) > 10


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_rerun_after_reextraction_retrains_and_no_stale_checkpoint_is_resumed(tmp_path):
    """Issue 11: the fingerprint covered config + first 50 train ids + store path, and checkpoint.pt survived,
    so retraining after a re-extraction (same path, same ids, other content) resumed the finished run and
    saved the old weights beside the new normaliser. Change the store, rerun: the weights change."""
    import pandas as pd

    cfg = {**CFG, "epochs": 2}
    store, split = _store(tmp_path, seed=1)
    ff = store / "flow_features.parquet"

    def reextract(factor):  # flow features regenerated in place: same path, flows and split, other values
        df = pd.read_parquet(ff)
        cols = [c for c in df.columns if c != "flow_id" and pd.api.types.is_float_dtype(df[c])]
        df[cols] = df[cols] * factor
        df.to_parquet(ff)

    out = tmp_path / "model"
    w1 = _weights(train_janus(store, split, out, cfg, "full", 42, progress=False))
    assert not (out / CHECKPOINT_NAME).exists()  # a finished run leaves no checkpoint to resume
    reextract(3.0)
    w2 = _weights(train_janus(store, split, out, cfg, "full", 42, progress=False))
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)
    fresh = train_janus(store, split, tmp_path / "fresh", cfg, "full", 42, progress=False)
    assert all(torch.equal(w2[k], _weights(fresh)[k]) for k in w2)

    # an interrupted run's checkpoint is not resumed on other data either: the result is a fresh run's
    part = tmp_path / "part"
    assert train_janus(store, split, part, cfg, "full", 42, progress=False, stop_after_epoch=1) is None
    reextract(0.5)
    resumed = _weights(train_janus(store, split, part, cfg, "full", 42, progress=False))
    fresh3 = _weights(train_janus(store, split, tmp_path / "fresh3", cfg, "full", 42, progress=False))
    assert all(torch.equal(resumed[k], fresh3[k]) for k in resumed)


def test_cnf_nll_score_option_adds_a_column_and_leaves_the_10d_vector(trained, domain_a):
    """janus.cnf_nll: an 11th column, the CNF's exact NLL per dim (Hutchinson, probes per flow_id): finite,
    independent of the batch, and the 10-d vector and A1 are exactly those without the option."""
    from nidsflow.evaluate.aggregators import make_aggregator

    store, split = domain_a
    model = trained[0] / "model.pt"
    ref = ScoreTable.load(trained[0] / "phase1_scores.npz")
    on = score_split(model, store, split, {**CFG, "cnf_nll": True}, progress=False)
    assert on.score_names == JANUS_SCORE_NAMES + ("cnf_nll",)
    np.testing.assert_allclose(on.scores[:, :10], ref.scores, rtol=1e-5, atol=1e-6)
    cnf = on.column("cnf_nll")
    assert np.isfinite(cnf).all() and np.std(cnf) > 0
    small = score_split(model, store, split, {**CFG, "cnf_nll": True, "score_batch_size": 37}, progress=False)
    np.testing.assert_allclose(small.column("cnf_nll"), cnf, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(make_aggregator("A1").fit_table(on).score_table(on),
                               make_aggregator("A1").fit_table(ref).score_table(ref), rtol=1e-4)
    assert make_aggregator("A8").fit_table(on).columns == ("cnf_nll",)


def test_nofix_disc_reproduces_the_seeds_batch_dependence_and_zero_fill(trained, domain_a):
    """The nofix_disc ablation (disc_draws "batch") must show the two defects the fix removed: a flow's
    disc_nll changes with the batch size, and at t = 1 (no position corrupted) every channel scores 0."""
    store, split = domain_a
    model = trained[0] / "model.pt"
    seedlike = {**CFG, "disc_draws": "batch"}
    a = score_split(model, store, split, seedlike, progress=False)
    b = score_split(model, store, split, {**seedlike, "score_batch_size": 37}, progress=False)
    assert not np.allclose(a.scores[:, 3:], b.scores[:, 3:])
    np.testing.assert_allclose(a.scores[:, :3], b.scores[:, :3], rtol=2e-4, atol=1e-5)  # continuous side untouched
    zero = score_split(model, store, split, {**seedlike, "disc_times": [1.0]}, progress=False)
    assert (zero.scores[:, 3:] == 0).all()


def test_nofix_variants_are_the_seeds_settings_and_run(domain_a, tmp_path):
    """nofix_iat trains with IAT in seconds (the normaliser's k_iat 1), nofix_ot with the seed's coupling;
    each is the full model otherwise, and its scores differ from the fixed model's."""
    from nidsflow.janus.variants import FIX_ABLATIONS, SEED_COUPLING, is_packet_free, resolve_variant, score_settings

    _, ts = resolve_variant({}, "nofix_ot")
    assert (ts.ot_method, ts.ot_reg, ts.ot_reg_scale, ts.ot_pairing) == tuple(SEED_COUPLING.values())
    assert resolve_variant({}, "nofix_iat")[1].iat_unit_scale == 1.0 and resolve_variant({}, "full")[1].iat_unit_scale == 1e6
    assert score_settings({}, "nofix_disc").disc_draws == "batch" and score_settings({}, "full").disc_draws == "flow"
    assert is_packet_free({}, "B2_nofix_ot") and not is_packet_free({}, "nofix_all")
    assert FIX_ABLATIONS["B2_nofix_ot"] == "B2"
    store, split = domain_a
    cfg = {**CFG, "epochs": 1, "ot_method": "sinkhorn_log", "ot_reg": 0.1, "ot_pairing": "sample_unique"}
    out = {}
    for v in ("full", "nofix_iat"):
        model = train_janus(store, split, tmp_path / v, cfg, v, 42, progress=False)
        _, norm, _ = load_model(model)
        out[v] = (norm.packet_unit_scale, score_split(model, store, split, cfg, progress=False).scores)
    assert out["full"][0] == [1.0, 1e6, 1.0] and out["nofix_iat"][0] == [1.0, 1.0, 1.0]
    assert not np.allclose(out["full"][1], out["nofix_iat"][1])


def test_min_steps_raise_the_epochs_and_hold_off_early_stopping(domain_a, tmp_path):
    """320 train flows at batch 64 = 5 steps per epoch: min_steps 12 needs 3 epochs even with epochs 1
    and patience 1; train_log.tsv has one row per epoch with the steps made."""
    store, split = domain_a
    cfg = {**CFG, "epochs": 1, "patience": 1, "min_steps": 12, "lr": 0.0}  # lr 0: val never improves after epoch 1
    model = train_janus(store, split, tmp_path, cfg, "full", 42, progress=False)
    log = (tmp_path / "train_log.tsv").read_text().splitlines()
    header = log[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in log[1:]]
    assert [int(r["step"]) for r in rows] == [5, 10, 15]
    assert {"epoch", "train_loss", "val_loss", "val_cfm", "val_dfm", "step"} <= set(header)
    assert torch.load(model, weights_only=False)["best_epoch"] == 1


def test_the_weight_average_changes_what_is_validated_and_saved_not_the_training(domain_a, tmp_path):
    store, split = domain_a
    cfg = {**CFG, "epochs": 2}
    a = torch.load(train_janus(store, split, tmp_path / "ema", {**cfg, "ema_decay": 0.99}, "full", 42, progress=False),
                   weights_only=False)
    b = torch.load(train_janus(store, split, tmp_path / "raw", {**cfg, "ema_decay": 0.0}, "full", 42, progress=False),
                   weights_only=False)
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert [h["val_loss"] for h in a["history"]] != [h["val_loss"] for h in b["history"]]
    assert any(not torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_bf16_training_is_deterministic_and_close_to_fp32(domain_a, tmp_path):
    """precision bf16: the forward under bfloat16 autocast (losses in float32) gives the same model twice
    and a first-epoch loss within rounding of the float32 run's (same seed, same draws)."""
    store, split = domain_a
    cfg = {**CFG, "epochs": 1}
    runs = [torch.load(train_janus(store, split, tmp_path / name, {**cfg, "precision": p}, "full", 42, progress=False),
                       weights_only=False) for name, p in (("a", "bf16"), ("b", "bf16"), ("c", "fp32"))]
    a, b, c = runs
    assert a["train_settings"]["precision"] == "bf16" and c["train_settings"]["precision"] == "fp32"
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    ha, hc = a["history"][0], c["history"][0]
    assert np.isfinite(ha["val_loss"]) and ha["train_loss"] != hc["train_loss"]
    assert abs(ha["train_loss"] - hc["train_loss"]) < 0.02 * hc["train_loss"]
    assert abs(ha["val_loss"] - hc["val_loss"]) < 0.02 * hc["val_loss"]


def test_flow_totals_variant_keeps_only_what_the_packets_cannot_give(domain_a, tmp_path):
    from nidsflow.capture.features import FEATURE_NAMES
    from nidsflow.janus.variants import resolve_variant, select_flow_features

    kept = select_flow_features(FEATURE_NAMES, "beyond_packets")
    assert len(kept) == 29 and kept == [n for n in FEATURE_NAMES if n in kept]  # store order
    # whole-flow totals (how much lies beyond packet T) and header fields the tokens lack are kept ...
    assert {"Flow Duration", "Total Fwd Packets", "Total Length of Bwd Packets", "SYN Flag Count", "ACK Flag Count",
            "Fwd Header Length", "URG Flag Count", "ECE Flag Count"} <= set(kept)
    # ... distribution statistics the first T packets show are dropped
    assert not {"Fwd Packet Length Max", "Flow IAT Mean", "Packet Length Std", "Flow Bytes/s", "Init_Win_bytes_forward",
                "Idle Max", "Average Packet Size", "Down/Up Ratio"} & set(kept)
    assert select_flow_features(FEATURE_NAMES, "all") == list(FEATURE_NAMES)
    with pytest.raises(ValueError, match="flow_features"):
        select_flow_features(FEATURE_NAMES, "some")
    assert resolve_variant(CFG, "flow_totals")[1].flow_features == "beyond_packets"

    store, split = domain_a
    with pytest.raises(ValueError, match="keeps none of the store's 12 flow features"):
        train_janus(store, split, tmp_path / "toy", {**CFG, "epochs": 1}, "flow_totals", 42, progress=False)
    # the same flows with the 78 CICFlowMeter columns (seeded values: only which columns are read matters here)
    import shutil

    import pandas as pd

    shutil.copytree(store, tmp_path / "store")
    store = tmp_path / "store"
    ids = pd.read_parquet(store / "flow_features.parquet")["flow_id"].to_numpy()
    rng = np.random.default_rng(0)
    cic = pd.DataFrame({"flow_id": ids, **{n: rng.lognormal(size=len(ids)) for n in FEATURE_NAMES}})
    cic.to_parquet(store / "flow_features.parquet", index=False)
    model = train_janus(store, split, tmp_path / "m", {**CFG, "epochs": 1}, "flow_totals", 42, progress=False)
    m, norm, meta = load_model(model)
    store_cols = list(Store(store).flow_features.columns)
    assert len(store_cols) == 78
    assert norm.feature_names == select_flow_features(store_cols, "beyond_packets")
    assert m.cfg.n_flow_features == len(norm.feature_names) < len(store_cols)
    table = score_split(model, store, split, CFG, progress=False)
    assert np.isfinite(table.scores).all()


def test_variants_differing_only_in_scoring_share_the_trained_model():
    from nidsflow.janus.variants import trained_as

    assert trained_as(CFG, "nofix_disc") == "full"          # disc_draws is a scoring key
    assert trained_as(CFG, "full") == "full"
    for v in ("nofix_iat", "nofix_ot", "nofix_all", "B1", "B3", "flow_totals", "B2_nofix_ot"):
        assert trained_as(CFG, v) == v
    assert trained_as(CFG, "cross") == "cross"               # cross_sigma 0.6 != sigma 0.1
    assert trained_as({**CFG, "cross_sigma": CFG["sigma"]}, "cross") == "full"
    over = {**CFG, "variant_overrides": {"more_steps": {"solver_steps": 8}, "other_lr": {"lr": 0.01},
                                         "full": {"lr": 0.01}}}
    assert trained_as(over, "more_steps") == "nofix_disc"    # the first variant trained like it (full is not)
    assert trained_as(over, "other_lr") == "full"            # full itself is overridden to lr 0.01
    assert trained_as(over, "nofix_disc") == "nofix_disc"   # no longer trained like full


def test_nofix_disc_scored_with_fulls_model_equals_its_own_training(trained, domain_a, tmp_path):
    """Training does not depend on a scoring key: nofix_disc's own run is full's bit for bit, so scoring full's
    model as nofix_disc gives exactly nofix_disc's scores, and the workflow trains it once (janus_model)."""
    out, _ = trained
    store, split = domain_a
    own = train_janus(store, split, tmp_path, CFG, "nofix_disc", 42, progress=False)
    a, b = torch.load(out / "model.pt", weights_only=False), torch.load(own, weights_only=False)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    shared = score_split(out / "model.pt", store, split, CFG, progress=False, variant="nofix_disc")
    np.testing.assert_array_equal(shared.scores, score_split(own, store, split, CFG, progress=False).scores)
    assert not np.array_equal(shared.scores, score_split(out / "model.pt", store, split, CFG, progress=False).scores)
    with pytest.raises(ValueError, match="trained otherwise"):
        score_split(out / "model.pt", store, split, CFG, progress=False, variant="B3")


def test_the_log_says_whether_the_val_loss_had_flattened(caplog):
    from nidsflow.janus.train import log_convergence

    def hist(vals):
        return [{"val_loss": v, "step": 10 * (i + 1)} for i, v in enumerate(vals)]

    with caplog.at_level("INFO", logger="nidsflow.janus.train"):
        log_convergence(hist([2.0, 1.5, 1.2, 1.1, 1.1, 1.1, 1.099, 1.1, 1.1]), 7)
    assert "change over the last 5 epochs +0.00 %" in caplog.text and "still falling" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="nidsflow.janus.train"):
        log_convergence(hist([2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2]), 7)
    assert "still falling at the end (-33.3 % over the last 5 epochs)" in caplog.text
