"""nidsflow watch / nidsflow.deploy: restart-safe, exactly-once scoring of a capture directory, flows stitched
across rotated files, corrupt files, explanations that add up, model directories.

The model is a toy JANUS (d_model 16, one layer, 4 epochs, ~15 s on one core) trained on a generated
benign-only demo capture; the watched directory gets real captures from ../shared/data where present
(nDPI benign traffic, real attack captures) and generated ones (benign, attack-heavy) always. The toy model
is trained on generated traffic, so its alerts are compared on the generated captures: on real captures it
is out of its domain (a toy trained on the 1 170 real nDPI flows did not separate the real attack captures
either: alert rates 0-2 % on them at fpr 0.02), and they serve the exactly-once and stitching checks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nidsflow.scores import JANUS_SCORE_NAMES

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXTRACT = {"T": 8, "idle_timeout_s": 120, "active_timeout_s": 1800}
JANUS = {"T": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "epochs": 4, "batch_size": 64,
         "warmup_steps": 2, "solver": "euler", "solver_steps": 2, "disc_times": [0.5], "score_batch_size": 256, "patience": 2,
         "threads": 1}
REAL_BENIGN = ["pcaps-ndpi/skype.pcap", "pcaps-ndpi/1kxun.pcap", "pcaps-ndpi/pps.pcap"]
REAL_ATTACK = ["attack-pcaps-diverse/test19-malicious-ssh_malicious-ssh-bruteforce.pcap",
               "cicddos2019-attack-pcaps/CIC-DDoS-2019-WebDDoS.pcap"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _store_from_captures(pcaps, root):
    """A benign training store from unlabelled captures, through the same flow code as deployment."""
    from nidsflow.store import StoreWriter
    from nidsflow.deploy.scoring import iter_capture_flows

    parts = [p for pcap in pcaps for p in iter_capture_flows(pcap, EXTRACT)]
    frame = pd.concat([p[0] for p in parts], ignore_index=True).drop(columns=["end_reason"])
    feats = pd.concat([p[1] for p in parts], ignore_index=True)
    w = StoreWriter(root, EXTRACT["T"])
    w.add_shard(np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))
    frame["label"], frame["attack_class"], frame["is_attack"], frame["source_file"] = "BENIGN", "benign", False, "x"
    frame["flow_id"] = np.arange(len(frame))
    w.finish(frame, feats)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A model directory (model.pt, aggregator.json, deploy.yaml) and generated benign / attack captures."""
    from nidsflow.demo.generate import capture_file, generate_domain
    from nidsflow.store import Store
    from nidsflow.deploy.model_dir import model_fingerprint_of, write_deploy_settings
    from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
    from nidsflow.janus.score import score_split
    from nidsflow.janus.train import train_janus
    from nidsflow.splits import make_split

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("deploy")
    generate_domain("demo_a", tmp / "train", seed=1, benign_sessions=500, attack_sessions=0, duration_s=600)
    generate_domain("demo_a", tmp / "benign", seed=2, benign_sessions=60, attack_sessions=0, duration_s=120)
    generate_domain("demo_a", tmp / "attack", seed=3, benign_sessions=1, attack_sessions=40, duration_s=120)
    # the generated captures share a start time; the attack one comes an hour after the benign one, as
    # rotation files follow each other (overlapping files would stitch benign and attack flows together)
    _shift_pcap(tmp / "attack" / capture_file("demo_a"), 3600)
    store = _store_from_captures([tmp / "train" / capture_file("demo_a")], tmp / "store")
    n = len(Store(store).flows)
    split = make_split(Store(store).flows, seed=0, n_train=int(n * 0.6), n_val=int(n * 0.3))
    split.save(tmp / "split.npz")
    md = tmp / "model"
    train_janus(store, tmp / "split.npz", md, JANUS, "full", seed=0, device="cpu", progress=False)
    table = score_split(md / "model.pt", store, tmp / "split.npz", JANUS, device="cpu", progress=False)
    fp = model_fingerprint_of(md / "model.pt")  # as rules fit_aggregator and deploy_settings record it
    save_artifact({**fit_deployable(table, fpr_target=0.02), "model": fp}, md / "aggregator.json")
    write_deploy_settings(md / "deploy.yaml", EXTRACT, JANUS, fp)
    return {"model_dir": md, "benign": tmp / "benign" / capture_file("demo_a"),
            "attack": tmp / "attack" / capture_file("demo_a"), "table": table}


def _drop(src: Path, directory: Path, name: str, mtime: float) -> Path:
    """Move a capture into the watched directory the way a rotation finisher would: write aside, rename."""
    tmp = directory / f".{name}.tmp"
    shutil.copyfile(src, tmp)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, directory / name)
    return directory / name


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _key(r: dict) -> tuple:
    return (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"], round(r["first_ts"], 6))


def _flow(r: dict) -> tuple:
    """What identifies a flow: 5-tuple, first and last packet time, packet count."""
    return (*_key(r), round(r["last_ts"], 6), r["packets"])


def _detector(model_dir):
    from nidsflow.deploy.model_dir import validate_model_dir
    from nidsflow.deploy.scoring import Detector

    return Detector.from_model_dir(validate_model_dir(model_dir), device="cpu")


def _watch_cmd(directory, model_dir, *extra):
    return [sys.executable, "-m", "nidsflow.cli", "watch", str(directory), "--model-dir", str(model_dir),
            "--quiet-s", "0.3", "--poll-s", "0.1", "--all-flows", "--threads", "1", *extra]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1")


def _records(raw: bytes) -> tuple[str, list[int]]:
    """(struct byte order, offset of each record header) of a classic pcap."""
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
              b"\xa1\xb2\x3c\x4d": ">"}[raw[:4]]
    pos, offsets = 24, []
    while pos + 16 <= len(raw):
        offsets.append(pos)
        pos += 16 + struct.unpack(endian + "IIII", raw[pos:pos + 16])[2]
    return endian, offsets


def _shift_pcap(path: Path, seconds: int) -> None:
    """Move every packet of a classic pcap ``seconds`` later (in place)."""
    raw = bytearray(path.read_bytes())
    endian, offsets = _records(bytes(raw))
    for pos in offsets:
        struct.pack_into(endian + "I", raw, pos, struct.unpack_from(endian + "I", raw, pos)[0] + seconds)
    path.write_bytes(bytes(raw))


def _split_pcap(src: Path, out1: Path, out2: Path, at: float = 0.5) -> int:
    """Write the first ``at`` of a classic pcap's records to out1 and the rest to out2 (same header)."""
    raw = src.read_bytes()
    _, offsets = _records(raw)
    cut = offsets[int(len(offsets) * at)]
    out1.write_bytes(raw[:cut])
    out2.write_bytes(raw[:24] + raw[cut:])
    return len(offsets)


# ---------------------------------------------------------------- the watch, restarted midway

def test_watch_restarted_midway_scores_every_flow_once_and_alerts_name_the_attack_flows(demo, tmp_path, caplog):
    from nidsflow.deploy.watch import Watcher, WatchSettings

    files = [(demo["benign"], "gen_benign.pcap")]
    if DATA.is_dir():
        files += [(DATA / f, Path(f).name) for f in REAL_BENIGN[:2]]
        files += [(DATA / REAL_ATTACK[0], Path(REAL_ATTACK[0]).name)]
        files += [(DATA / f, Path(f).name) for f in REAL_BENIGN[2:]]
        files += [(DATA / REAL_ATTACK[1], Path(REAL_ATTACK[1]).name)]
    files += [(demo["attack"], "gen_attack.pcap")]
    base = time.time() - 1000
    watched = tmp_path / "watched"
    watched.mkdir()
    half = len(files) // 2
    for i, (src, name) in enumerate(files[:half]):
        _drop(src, watched, name, base + i)

    # 1: a running watch scores the first files; a file arrives; SIGTERM at once (finished or abandoned)
    p = subprocess.Popen(_watch_cmd(watched, demo["model_dir"]), env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(_lines(watched / "summary.jsonl")) < half and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert len(_lines(watched / "summary.jsonl")) == half, p.stderr.read() if p.poll() is not None else "timeout"
    _drop(files[half][0], watched, files[half][1], base + half)
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "stopping after the current file" in err
    assert (watched / ".nidsflow-watch-state.npz").exists()

    # 2: the rest arrives while it is down; a restart processes everything once, then ends the open flows
    for i, (src, name) in enumerate(files[half + 1:], start=half + 1):
        _drop(src, watched, name, base + i)
    det = _detector(demo["model_dir"])
    settings = WatchSettings(quiet_s=0.3, all_flows=True)
    with caplog.at_level(logging.INFO, logger="nidsflow.deploy.watch"):
        Watcher(watched, det, settings=settings).run(once=True, flush=True)
    assert any("resumed" in r.getMessage() for r in caplog.records)
    # 3: once more: nothing new, nothing written
    before = (watched / "alerts.jsonl").read_bytes()
    Watcher(watched, det, settings=settings).run(once=True)
    assert (watched / "alerts.jsonl").read_bytes() == before

    # the same files scored in one uninterrupted pass
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    for i, (src, name) in enumerate(files):
        _drop(src, ref_dir, name, base + i)
    Watcher(ref_dir, det, settings=WatchSettings(quiet_s=0.0, all_flows=True)).run(once=True, flush=True)

    got, ref = _lines(watched / "alerts.jsonl"), _lines(ref_dir / "alerts.jsonl")
    # as multisets: a capture can hold two identical one-packet flows (skype.pcap has a duplicated RST)
    assert Counter(map(_flow, got)) == Counter(map(_flow, ref)), "the restarted watch lost or repeated flows"
    assert [x["flow"] for x in got] == list(range(len(got)))
    # the same scores: one flow order per file, whatever the restarts did to the meter's slots
    assert Counter((*_flow(x), round(x["d2"], 6), tuple(x["source_files"])) for x in got) == \
        Counter((*_flow(x), round(x["d2"], 6), tuple(x["source_files"])) for x in ref)
    assert all(x["alert"] == (x["d2"] > x["threshold"]) for x in got)
    summaries = [s for s in _lines(watched / "summary.jsonl") if s["file"] is not None]
    assert sorted(s["file"] for s in summaries) == sorted(name for _, name in files), "a file was skipped or repeated"
    assert sum(s["flows_scored"] for s in _lines(watched / "summary.jsonl")) == len(got)

    # every flow of the generated captures is counted once; the attack capture's flows are the alerted ones
    def rate(name):
        mine = [x for x in got if name in x["source_files"]]
        assert mine
        return np.mean([x["alert"] for x in mine])

    assert rate("gen_attack.pcap") > 0.25 and rate("gen_attack.pcap") > 2 * rate("gen_benign.pcap")
    alerts = [x for x in got if x["alert"]]
    assert any("gen_attack.pcap" in x["source_files"] for x in alerts)
    for x in alerts:  # every alert carries its explanation
        assert np.isclose(sum(v for v in x["contributions"].values() if v is not None), x["d2"], rtol=1e-6)
        # the DFM cells; none only where no bit of the flow was corrupted at the disc_times (NLL 0)
        assert x["dfm_top"] or x["scores"]["disc_nll_total"] == 0
        assert all({"packet", "channel", "nll", "contribution"} == set(c) for c in x["dfm_top"])
    assert sum(bool(x["dfm_top"]) for x in alerts) > len(alerts) / 2


# ---------------------------------------------------------------- stitching, corrupt files

def test_a_flow_split_over_two_rotated_files_is_one_flow(demo, tmp_path):
    """Split one real capture in two files: the watch finds the flows of the unsplit capture."""
    from nidsflow.deploy.scoring import iter_capture_flows, score_capture
    from nidsflow.deploy.watch import Watcher, WatchSettings

    src = DATA / "attack-pcaps-diverse/test-cc_test-cc-capture-1.pcap"
    if not src.exists():
        src = demo["benign"]
    watched = tmp_path / "w"
    watched.mkdir()
    _split_pcap(src, tmp_path / "rot.pcap", tmp_path / "rot.pcap1")
    det = _detector(demo["model_dir"])
    settings = WatchSettings(quiet_s=0.0, all_flows=True)
    _drop(tmp_path / "rot.pcap", watched, "rot.pcap", time.time() - 10)
    first = Watcher(watched, det, settings=settings)
    first.run(once=True)
    assert first.meter.n_alive > 0  # flows left open at the rotation, kept in the state file
    # the next file arrives; a restarted watch (a new process: the meter comes from the state file) goes on
    _drop(tmp_path / "rot.pcap1", watched, "rot.pcap1", time.time() - 5)
    Watcher(watched, det, settings=settings).run(once=True, flush=True)
    got = _lines(watched / "alerts.jsonl")

    md = demo["model_dir"]
    score_capture(src, md / "model.pt", md / "aggregator.json", tmp_path / "one.csv", EXTRACT, JANUS, "cpu")
    one = pd.read_csv(tmp_path / "one.csv")
    one_flows = [(r.src_ip, int(r.src_port), r.dst_ip, int(r.dst_port), int(r.protocol), round(r.first_ts, 6),
                  round(r.last_ts, 6), int(r.n_packets)) for r in one.itertuples()]
    assert Counter(map(_flow, got)) == Counter(one_flows)
    terminal = dict(zip(one_flows, one["terminal_norm"]))
    for x in got:  # the same packets give the same (deterministic) ODE score
        assert np.isclose(x["scores"]["terminal_norm"], terminal[_flow(x)], rtol=1e-4)
    spanning = [x for x in got if x["source_files"] == ["rot.pcap", "rot.pcap1"]]
    assert spanning, "no flow spans the two files"
    # without stitching, the two halves would give more (broken) flows
    halves = sum(len(f[0]) for part in ("rot.pcap", "rot.pcap1") for f in iter_capture_flows(tmp_path / part, EXTRACT))
    assert halves > len(got)


def test_a_corrupt_file_is_a_logged_error_and_the_watch_goes_on(demo, tmp_path, caplog):
    from nidsflow.deploy.watch import Watcher, WatchSettings

    watched = tmp_path / "w"
    watched.mkdir()
    t = time.time() - 100
    _drop(demo["benign"], watched, "a.pcap", t)
    (watched / "b.pcap").write_bytes(np.random.default_rng(0).bytes(5000))
    os.utime(watched / "b.pcap", (t + 1, t + 1))
    raw = bytearray(demo["attack"].read_bytes())  # a record length field destroyed mid-file
    pos = 24
    for _ in range(200):
        pos += 16 + struct.unpack("<I", raw[pos + 8:pos + 12])[0]
    raw[pos + 8:pos + 16] = struct.pack("<II", 0x7FFFFFF0, 0x7FFFFFF0)
    (watched / "c.pcap").write_bytes(bytes(raw))
    os.utime(watched / "c.pcap", (t + 2, t + 2))
    _drop(demo["attack"], watched, "d.pcap", t + 3)
    (watched / "notes.txt").write_text("not a capture name: ignored")

    det = _detector(demo["model_dir"])
    w = Watcher(watched, det, settings=WatchSettings(quiet_s=0.0))
    w.run(once=True)
    s = {x["file"]: x for x in _lines(watched / "summary.jsonl")}
    assert list(s) == ["a.pcap", "b.pcap", "c.pcap", "d.pcap"]
    assert s["b.pcap"]["status"] == "error" and "not a pcap" in s["b.pcap"]["error"]
    assert s["c.pcap"]["status"] == "error" and s["c.pcap"]["packets"] >= 200  # the part before it is kept
    assert s["a.pcap"]["status"] == s["d.pcap"]["status"] == "ok" and s["d.pcap"]["flows_scored"] > 0
    assert any("b.pcap" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    # a restart with the state: nothing is scored twice
    size = (watched / "summary.jsonl").stat().st_size
    Watcher(watched, det, settings=WatchSettings(quiet_s=0.0)).run(once=True)
    assert (watched / "summary.jsonl").stat().st_size == size


def test_an_uncommitted_tail_is_cut_and_the_file_scored_again(demo, tmp_path):
    """A crash after the alert lines were written but before the state was replaced: no duplicate."""
    from nidsflow.deploy.watch import Watcher, WatchSettings

    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 100)
    det = _detector(demo["model_dir"])
    settings = WatchSettings(quiet_s=0.0, all_flows=True)
    Watcher(watched, det, settings=settings).run(once=True)
    committed = (watched / "alerts.jsonl").read_bytes()
    _drop(demo["attack"], watched, "b.pcap", time.time() - 50)
    w = Watcher(watched, det, settings=settings)
    w._save_state = lambda: (_ for _ in ()).throw(KeyboardInterrupt())  # dies just before the commit
    with pytest.raises(KeyboardInterrupt):
        w.run(once=True)
    assert len((watched / "alerts.jsonl").read_bytes()) > len(committed)
    Watcher(watched, det, settings=settings).run(once=True)
    lines = _lines(watched / "alerts.jsonl")
    assert [x["flow"] for x in lines] == list(range(len(lines)))
    assert len(lines) == sum(x["flows_scored"] for x in _lines(watched / "summary.jsonl"))
    assert (watched / "alerts.jsonl").read_bytes().startswith(committed)


# ---------------------------------------------------------------- explanations

def test_axis_contributions_are_the_mahalanobis_decomposition():
    from nidsflow.deploy.explain import axis_contributions
    from nidsflow.evaluate.aggregators import make_aggregator

    rng = np.random.default_rng(0)
    A = rng.normal(size=(10, 10))
    S_val = rng.normal(size=(300, 10)) @ A
    S_val[:, 2] = np.nan  # a variant without that score: the axis is not used
    agg = make_aggregator("A1").fit(S_val, JANUS_SCORE_NAMES)
    S = rng.normal(size=(50, 10)) @ A * 1.5
    C = axis_contributions(agg, S, JANUS_SCORE_NAMES)
    used = [i for i in range(10) if i != 2]
    z = S[:, used] - agg.location_
    P = np.linalg.inv(agg.covariance_)  # closed form, from the covariance rather than the stored precision
    assert np.allclose(C[:, used], z * (z @ P), rtol=1e-6, atol=1e-8)
    assert np.isnan(C[:, 2]).all()
    assert np.allclose(np.nansum(C, axis=1), agg.score(S, JANUS_SCORE_NAMES), rtol=1e-9)
    for name in ("A5", "A7"):
        other = make_aggregator(name).fit(S_val, JANUS_SCORE_NAMES)
        assert np.allclose(np.nansum(axis_contributions(other, S, JANUS_SCORE_NAMES), axis=1),
                           other.score(S, JANUS_SCORE_NAMES))
    # A1L: the same decomposition on the scores referenced to their length band, about the bands' medians
    n_val, n = rng.integers(1, 20, size=len(S_val)), rng.integers(1, 30, size=len(S))
    a1l = make_aggregator("A1L").fit(S_val, JANUS_SCORE_NAMES, n_val)
    r = a1l.referenced(S[:, [JANUS_SCORE_NAMES.index(c) for c in a1l.columns]], n)
    C = axis_contributions(a1l, S, JANUS_SCORE_NAMES, n)
    assert np.allclose(C[:, used], r * (r @ np.linalg.inv(a1l.inner.covariance_)), rtol=1e-6, atol=1e-8)
    assert np.allclose(np.nansum(C, axis=1), a1l.score(S, JANUS_SCORE_NAMES, n), rtol=1e-9)


def test_dfm_positions_add_up_to_the_scores_and_change_nothing(demo):
    from nidsflow.store import BINARY_CHANNELS
    from nidsflow.deploy.explain import top_positions
    from nidsflow.deploy.scoring import iter_capture_flows
    from nidsflow.janus.score import scorer_for

    det = _detector(demo["model_dir"])
    frame, feats, ch, ln = next(iter_capture_flows(demo["attack"], EXTRACT))
    data = det.norm.transform(feats, ch, ln, len(frame))
    S = det.scorer.score(data)
    plain, _, _ = scorer_for(demo["model_dir"] / "model.pt", JANUS, "cpu", progress=False)
    assert np.array_equal(S, plain.score(data), equal_nan=True)
    sc = det.scorer
    assert np.allclose(sc.position_contributions().sum(axis=(1, 2)), S[:, 3], atol=1e-6)
    for c, name in enumerate(BINARY_CHANNELS):
        s, n = sc.pos_nll_sum[:, :, c].sum(1), sc.pos_count[:, :, c].sum(1)
        per = np.where(n > 0, s / np.maximum(n, 1), 0.0)
        assert np.allclose(per, S[:, JANUS_SCORE_NAMES.index(f"disc_nll_{name}")], atol=1e-6)
    top = top_positions(sc, np.arange(len(frame)), k=3)
    for r, t in enumerate(top):
        contribs = [x["contribution"] for x in t]
        assert contribs == sorted(contribs, reverse=True)
        assert all(1 <= x["packet"] <= min(ln[r], EXTRACT["T"]) for x in t)


# ---------------------------------------------------------------- model directory, command line

def test_model_directory_names_missing_files_and_the_cli_names_bad_arguments(demo, tmp_path, capsys):
    from nidsflow.deploy.model_dir import ModelDirError, validate_model_dir

    md = validate_model_dir(demo["model_dir"])
    assert md.extract == EXTRACT and md.model.name == "model.pt"
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(demo["model_dir"] / "model.pt", partial)
    with pytest.raises(ModelDirError, match=r"aggregator\.json.*deploy\.yaml"):
        validate_model_dir(partial)

    from nidsflow.cli import main

    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        return e.value.code, capsys.readouterr().err

    code, err = cli("watch", str(tmp_path / "nope"), "--model-dir", str(demo["model_dir"]))
    assert code == 2 and "DIR" in err and "not a directory" in err
    code, err = cli("watch", str(tmp_path), "--model-dir", str(partial))
    assert code == 2 and "--model-dir" in err and "aggregator.json" in err
    code, err = cli("watch", str(tmp_path), "--model-dir", str(demo["model_dir"]), "--quiet-s", "-1")
    assert code == 2 and "--quiet-s" in err
    code, err = cli("watch", str(tmp_path), "--model-dir", str(demo["model_dir"]), "--flush")
    assert code == 2 and "--flush needs --once" in err
    code, err = cli("watch", str(tmp_path), "--model", str(partial / "model.pt"))
    assert code == 2 and "--aggregator" in err
    # score-capture from the model directory alone: the CSV carries the explanation columns
    assert main(["score-capture", "--model-dir", str(demo["model_dir"]), "--capture", str(demo["attack"]),
                 "--out", str(tmp_path / "s.csv")]) == 0
    df = pd.read_csv(tmp_path / "s.csv")
    contrib = df[[f"contrib_{n}" for n in JANUS_SCORE_NAMES]].sum(axis=1)
    assert np.allclose(contrib, df["deployable_score"], rtol=1e-6)
    assert df["dfm_top1_channel"].notna().any()


def test_a_length_aware_model_directory_compares_each_flow_with_benign_flows_of_its_length(demo, tmp_path):
    """evaluate.aggregator A1L deployed: score-capture passes each flow's packet count to the length reference,
    the axis contributions still add up to d^2, and a damaged reference is refused naming the file."""
    from nidsflow.cli import main
    from nidsflow.deploy.model_dir import ModelDirError, model_fingerprint_of
    from nidsflow.evaluate.aggregators import fit_deployable, load_artifact, save_artifact

    md = tmp_path / "a1l"
    shutil.copytree(demo["model_dir"], md)
    artifact = {**fit_deployable(demo["table"], fpr_target=0.02, name="A1L"),
                "model": model_fingerprint_of(md / "model.pt")}
    save_artifact(artifact, md / "aggregator.json")
    assert main(["score-capture", "--model-dir", str(md), "--capture", str(demo["attack"]),
                 "--out", str(tmp_path / "s.csv")]) == 0
    df = pd.read_csv(tmp_path / "s.csv")
    agg, threshold, _ = load_artifact(md / "aggregator.json")
    S, n = df[list(JANUS_SCORE_NAMES)].to_numpy(), df["n_packets"].to_numpy()
    assert agg.name == "A1L" and len(set(n)) > 1
    assert np.allclose(df["deployable_score"], agg.score(S, JANUS_SCORE_NAMES, n), rtol=1e-6)
    # the packet count is read: the same scores with other flows' counts give other d^2
    other = agg.score(S, JANUS_SCORE_NAMES, np.random.default_rng(0).permutation(n))
    assert not np.allclose(other, df["deployable_score"], rtol=1e-3)
    assert (df["alert"] == (df["deployable_score"] > threshold)).all()
    contrib = df[[f"contrib_{c}" for c in JANUS_SCORE_NAMES]].sum(axis=1)
    assert np.allclose(contrib, df["deployable_score"], rtol=1e-6)

    artifact["params"]["reference"]["band_scale"][0][0] = 0.0
    save_artifact(artifact, md / "aggregator.json")
    with pytest.raises(ModelDirError, match=r"aggregator\.json.*scale <= 0"):
        _detector(md)


def test_a_stop_while_a_file_is_scored_abandons_it_and_a_restart_scores_it_once(demo, tmp_path, monkeypatch):
    from nidsflow.deploy import watch
    from nidsflow.deploy.watch import Watcher, WatchSettings

    monkeypatch.setattr(watch, "SCORE_SLICE", 16)  # several slices per file: the stop is seen between two

    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 100)
    _drop(demo["attack"], watched, "b.pcap", time.time() - 50)
    det = _detector(demo["model_dir"])
    settings = WatchSettings(quiet_s=0.0, all_flows=True)
    w = Watcher(watched, det, settings=settings)
    score = det.score

    def score_then_signal(*args, **kwargs):  # SIGINT arrives while b.pcap's first slice is being scored
        out = score(*args, **kwargs)
        if kwargs.get("source") == "b.pcap":
            w.stop_requested = True
        return out

    det.score = score_then_signal
    w.run(once=True)
    assert [x["file"] for x in _lines(watched / "summary.jsonl")] == ["a.pcap"]  # b.pcap left no trace
    n_a = len(_lines(watched / "alerts.jsonl"))
    det.score = score
    Watcher(watched, det, settings=settings).run(once=True, flush=True)
    assert [x["file"] for x in _lines(watched / "summary.jsonl")] == ["a.pcap", "b.pcap", None]
    lines = _lines(watched / "alerts.jsonl")
    assert len(lines) > n_a and [x["flow"] for x in lines] == list(range(len(lines)))


def _replay_through_snapshot(src, tracker=None, npz=None):
    """(rows of one meter fed the whole capture, rows of a meter snapshotted halfway and restored, the halfway
    snapshot): keys, accumulators, channels and (with ``tracker``, a ContextTracker factory) the context, in a
    canonical order. ``npz``: the snapshot goes through this file, as the watch's state does."""
    from nidsflow.capture.flows import FlowChunk, FlowConfig, FlowMeter
    from nidsflow.capture.pcap import CaptureReader

    cfg = FlowConfig.from_extract_config(dict(EXTRACT, initial_slots=16))  # small: the restore must grow
    batches = list(CaptureReader(src, batch_packets=500))
    meter = (lambda: FlowMeter(cfg, tracker())) if tracker else (lambda: FlowMeter(cfg))
    one = meter()
    ref = [c for b in batches for c in one.add_batch(b)] + one.flush()
    a = meter()
    got = [c for b in batches[: len(batches) // 2] for c in a.add_batch(b)]
    snap = a.snapshot()
    if npz is not None:
        np.savez(npz, **snap)
        with np.load(npz) as z:
            snap = {k: z[k] for k in z.files}
    b = FlowMeter.from_snapshot(cfg, {k: np.array(v) for k, v in snap.items()})
    assert (b.context is None) == (tracker is None)
    assert len(snap["keys"]) == a.n_alive > 16
    got += [c for bt in batches[len(batches) // 2:] for c in b.add_batch(bt)] + b.flush()

    def rows(chunks):
        c = FlowChunk.concat(chunks, cfg.T)
        order = np.lexsort((*c.keys.T, c.state[:, 0]))
        return [c.keys[order], c.state[order], c.channels[order]] + ([c.context[order]] if tracker else [])

    return rows(ref), rows(got), snap


def _snapshot_source(demo):
    src = DATA / "attack-pcaps-diverse/test-cc_test-cc-capture-1.pcap"
    return src if src.exists() else demo["benign"]


def test_flow_meter_snapshot_and_restore_continue_like_one_meter(demo):
    """FlowMeter.snapshot / from_snapshot (what the state file keeps): same flows as a meter that never stopped."""
    ref, got, snap = _replay_through_snapshot(_snapshot_source(demo))
    assert "flow_context" not in snap  # no tracker, no context in the state
    for x, y in zip(got, ref):
        assert np.array_equal(x, y)


def test_flow_meter_snapshot_carries_the_host_context(demo, tmp_path):
    """With a context tracker, the snapshot (through the state file's npz) keeps the tracker's statistics and
    the open flows' first-packet context: the restored meter gives the context of one that never stopped."""
    from nidsflow.capture.context import ContextTracker

    ref, got, snap = _replay_through_snapshot(_snapshot_source(demo), lambda: ContextTracker(initial_ids=16),
                                              tmp_path / "snap.npz")
    assert {"flow_context", "context_lambdas", "context_stream_state", "context_pair_state"} <= set(snap)
    assert len(snap["context_stream_keys"]) > 16  # the restore must grow its tables
    for x, y in zip(got, ref):
        assert np.array_equal(x, y)
    assert np.abs(ref[3]).sum() > 0
    with pytest.raises(ValueError, match="context snapshot: stream_state"):  # what the watch reports as damaged
        ContextTracker.from_snapshot({**snap, "context_stream_state": snap["context_stream_state"][:, :2]})


@pytest.fixture(scope="module")
def context_model(demo, tmp_path_factory):
    """A model directory of the context variant (its FLOW token reads the host-level context), trained on a
    store extracted with extract.context."""
    from nidsflow.capture.extract import extract_dataset
    from nidsflow.demo.generate import capture_file
    from nidsflow.deploy.model_dir import model_fingerprint_of, write_deploy_settings
    from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
    from nidsflow.janus.score import score_split
    from nidsflow.janus.train import train_janus
    from nidsflow.splits import make_split
    from nidsflow.store import Store

    tmp = tmp_path_factory.mktemp("context_model")
    train = demo["model_dir"].parent / "train" / capture_file("demo_a")
    extract = dict(EXTRACT, context=True)
    extract_dataset("ctx", {"driver": "per_file", "captures": [str(train)], "labels": {str(train): "BENIGN"}},
                    dict(extract, label_tolerance_s=2.0, time_offset_s="auto"), tmp / "store")
    flows = Store(tmp / "store").flows
    make_split(flows, seed=0, n_train=int(len(flows) * 0.6), n_val=int(len(flows) * 0.3)).save(tmp / "split.npz")
    md = tmp / "model"
    train_janus(tmp / "store", tmp / "split.npz", md, JANUS, "context", seed=0, device="cpu", progress=False)
    table = score_split(md / "model.pt", tmp / "store", tmp / "split.npz", JANUS, device="cpu", progress=False)
    fp = model_fingerprint_of(md / "model.pt")
    save_artifact({**fit_deployable(table, fpr_target=0.02), "model": fp}, md / "aggregator.json")
    write_deploy_settings(md / "deploy.yaml", extract, JANUS, fp)
    return md


def test_watch_carries_the_context_across_rotated_files_and_a_restart(demo, context_model, tmp_path):
    """A capture split into two rotated files, the watch restarted between them: every flow's scores equal
    score-capture's on the unsplit capture, so the context its model read is the whole stream's; scored from
    the second file alone (no history), most of its flows score otherwise."""
    from nidsflow.deploy.scoring import score_capture
    from nidsflow.deploy.watch import Watcher, WatchSettings

    src = demo["attack"]
    watched = tmp_path / "w"
    watched.mkdir()
    _split_pcap(src, tmp_path / "rot.pcap", tmp_path / "rot.pcap1")
    det = _detector(context_model)
    assert det.norm.reads_context and det.extract_cfg["context"] is True
    assert "context" not in _detector(demo["model_dir"]).extract_cfg  # computed only for a model that reads it
    settings = WatchSettings(quiet_s=0.0, all_flows=True)
    _drop(tmp_path / "rot.pcap", watched, "rot.pcap", time.time() - 10)
    Watcher(watched, det, settings=settings).run(once=True)
    with np.load(watched / ".nidsflow-watch-state.npz") as z:
        assert "context_stream_state" in z.files
    _drop(tmp_path / "rot.pcap1", watched, "rot.pcap1", time.time() - 5)
    Watcher(watched, det, settings=settings).run(once=True, flush=True)
    recs = _lines(watched / "alerts.jsonl")
    got = {_flow(x): x["scores"] for x in recs}

    md = context_model
    score_capture(src, md / "model.pt", md / "aggregator.json", tmp_path / "one.csv", dict(EXTRACT, context=True),
                  JANUS, "cpu")
    one = pd.read_csv(tmp_path / "one.csv")
    keys = [(r.src_ip, int(r.src_port), r.dst_ip, int(r.dst_port), int(r.protocol), round(r.first_ts, 6),
             round(r.last_ts, 6), int(r.n_packets)) for r in one.itertuples()]
    assert Counter(map(_flow, recs)) == Counter(keys) and len(keys) > 20
    for name in ("terminal_norm", "flow_nll_cont") if "flow_nll_cont" in one else ("terminal_norm",):
        ref = dict(zip(keys, one[name]))
        assert all(np.isclose(got[k][name], ref[k], rtol=1e-4) for k in keys)
    # the second file alone (a watch that forgot the first file's context) scores its flows otherwise
    score_capture(tmp_path / "rot.pcap1", md / "model.pt", md / "aggregator.json", tmp_path / "half.csv",
                  dict(EXTRACT, context=True), JANUS, "cpu")
    half = pd.read_csv(tmp_path / "half.csv")
    half_keys = [(r.src_ip, int(r.src_port), r.dst_ip, int(r.dst_port), int(r.protocol), round(r.first_ts, 6),
                  round(r.last_ts, 6), int(r.n_packets)) for r in half.itertuples()]
    ref = dict(zip(keys, one["terminal_norm"]))
    both = [(k, v) for k, v in zip(half_keys, half["terminal_norm"]) if k in ref]
    assert len(both) > 10 and sum(not np.isclose(v, ref[k], rtol=1e-4) for k, v in both) > len(both) // 2


# ---------------------------------------------------------------- worker processes

def test_workers_compute_flow_nll_from_the_raw_values_like_one_process(demo):
    """flow_nll's continuous part is a density of raw values: the pool sends each batch's raw rows to the
    workers, whose score matrix (flow_nll columns included) equals the in-process scorer's."""
    from nidsflow.deploy.model_dir import validate_model_dir
    from nidsflow.deploy.parallel import ScoringPool
    from nidsflow.deploy.scoring import Detector, iter_capture_flows
    from nidsflow.janus.data import flow_keys

    janus = dict(JANUS, score_batch_size=16, flow_nll=True)
    md = validate_model_dir(demo["model_dir"])
    det = Detector(md.model, md.aggregator, EXTRACT, janus, "cpu")
    frame, feats, channels, lengths = next(iter_capture_flows(demo["attack"], EXTRACT))
    n = min(len(frame), 48)
    frame, feats, channels, lengths = frame.iloc[:n], feats.iloc[:n], channels[:n], lengths[:n]
    ids = flow_keys(frame)
    data = det.normalise(feats, channels, lengths, n)
    ref = det.scorer.score(data, flow_ids=ids, raw=(feats, channels, lengths))
    col = det.scorer.score_names.index("flow_nll_cont")
    assert np.isfinite(ref[:, col]).all()
    with ScoringPool(det, workers=2) as pool:
        got = pool.submit(data, ids, (feats, channels, lengths)).result()[0]
        without = pool.submit(data, ids).result()[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.isnan(without[:, col]).all()  # what the watch's workers gave before the raw rows went along


def test_workers_score_exactly_as_one_process_and_a_stopped_pipeline_restarts_exactly_once(demo, tmp_path, monkeypatch):
    """--workers 2: the same alert lines, byte for byte, as one process with one torch thread (score batches
    are the in-process scorer's, each flow's draws its own); a stop with files in flight leaves no trace of
    them and a restart scores each once."""
    import yaml

    from nidsflow.cli import main
    from nidsflow.deploy.model_dir import validate_model_dir
    from nidsflow.deploy.parallel import ScoringPool
    from nidsflow.deploy.scoring import Detector
    from nidsflow.deploy.watch import Watcher, WatchSettings

    janus = dict(JANUS, score_batch_size=8)  # several score batches per file: they go to different workers
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml.safe_dump({"extract": EXTRACT, "janus": janus}))
    md = validate_model_dir(demo["model_dir"])
    det = Detector(md.model, md.aggregator, EXTRACT, janus, "cpu")
    parts = []
    for src, stem in ((demo["benign"], "b"), (demo["attack"], "a")):
        _split_pcap(src, tmp_path / f"{stem}1", tmp_path / f"{stem}2")
        parts += [tmp_path / f"{stem}1", tmp_path / f"{stem}2"]
    base = time.time() - 100

    def fill(d):
        d.mkdir()
        for i, p in enumerate(parts):
            _drop(p, d, f"cap.pcap{i or ''}", base + i)
        return d

    def flows_lines(d):
        return (d / "alerts.jsonl").read_bytes()

    def summaries(d):
        return [{k: v for k, v in s.items() if k not in ("seconds", "time")} for s in _lines(d / "summary.jsonl")]

    ref = fill(tmp_path / "one")
    Watcher(ref, det, settings=WatchSettings(quiet_s=0.0, all_flows=True)).run(once=True, flush=True)
    assert len(_lines(ref / "alerts.jsonl")) > 4 * 8
    assert max(s["flows_scored"] for s in _lines(ref / "summary.jsonl")) > 2 * 8

    # the command line, with its own pool of two workers
    cli_dir = fill(tmp_path / "cli")
    assert main(["watch", str(cli_dir), "--model-dir", str(demo["model_dir"]), "--config", str(cfg), "--once",
                 "--flush", "--all-flows", "--quiet-s", "0", "--workers", "2"]) == 0
    assert flows_lines(cli_dir) == flows_lines(ref)
    assert summaries(cli_dir) == summaries(ref)

    # a stop once the first file is committed, later files in flight; a restart goes on from the state
    with ScoringPool(det, 2) as pool:
        stopped = fill(tmp_path / "stopped")
        w = Watcher(stopped, det, settings=WatchSettings(quiet_s=0.0, all_flows=True), pool=pool)
        commit = w._commit

        def commit_then_stop(job):
            commit(job)
            w.stop_requested = True

        monkeypatch.setattr(w, "_commit", commit_then_stop)
        w.run(once=True, flush=True)
        assert [s["file"] for s in _lines(stopped / "summary.jsonl")] == ["cap.pcap"]
        w2 = Watcher(stopped, det, settings=WatchSettings(quiet_s=0.0, all_flows=True), pool=pool)
        w2.run(once=True, flush=True)
    assert flows_lines(stopped) == flows_lines(ref)
    assert summaries(stopped) == summaries(ref)
