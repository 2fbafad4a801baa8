"""Issue 26: a model directory from elsewhere cannot run code, bad files are refused naming the file, and
``watch`` survives what a live capture directory does to it (unreadable files, quiet-then-growing files,
symlinks, a second watcher, its own outputs, a killed parent).

Code-execution tests plant a harmless payload: unpickling it creates a marker file in the test's tmp folder;
the test asserts the marker is absent. The model directory is test_watch's toy model (trained here once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from test_watch import (EXTRACT, JANUS, _detector, _drop, _env, _lines, _one_thread, _records,  # noqa: F401
                        _watch_cmd, demo)


class _Payload:
    """Unpickled, it opens (creates) ``marker``: a stand-in for any code a crafted file could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _copy_model_dir(demo, dest: Path) -> Path:
    shutil.copytree(demo["model_dir"], dest)
    return dest


# ---------------------------------------------------------------- 1: no code runs when loading

def test_a_model_pt_carrying_code_is_refused_and_the_code_never_runs(demo, tmp_path, capsys):
    from nidsflow.deploy.scoring import main as score_main
    from nidsflow.janus.train import ModelFileError, load_checkpoint, load_model

    md = _copy_model_dir(demo, tmp_path / "md")
    # a freshly trained model.pt is plain data: loads with weights_only and no allow-list at all
    ck = torch.load(md / "model.pt", map_location="cpu", weights_only=True)
    marker = tmp_path / "PWNED"
    ck["extra"] = _Payload(marker)
    torch.save(ck, md / "model.pt")
    rc = score_main(["--model-dir", str(md), "--capture", str(demo["benign"]), "--out", str(tmp_path / "o.csv"),
                     "--device", "cpu"])
    err = capsys.readouterr().err
    assert not marker.exists(), "loading model.pt ran the payload"
    assert rc != 0 and str(md / "model.pt") in err and "refused" in err
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(ModelFileError, match="refused"):
        load_model(md / "model.pt")
    torch.save({"fingerprint": "x", "model": _Payload(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ModelFileError, match="checkpoint.pt: refused"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_a_bad_or_truncated_model_pt_is_a_message_naming_it(demo, tmp_path, capsys):
    from nidsflow.deploy.scoring import main as score_main

    md = _copy_model_dir(demo, tmp_path / "md")
    raw = (md / "model.pt").read_bytes()
    (md / "model.pt").write_bytes(raw[:len(raw) // 2])
    rc = score_main(["--model-dir", str(md), "--capture", str(demo["benign"]), "--out", str(tmp_path / "o.csv"),
                     "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{md / 'model.pt'}: not a readable JANUS model file" in err and "Traceback" not in err


def test_validate_refuses_a_meta_joblib_unless_trusted_and_never_unpickles_it(tmp_path):
    import joblib

    from nidsflow.hikari.validation import UntrustedArtifactError, load_artifacts, main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "meta_prob_test.npy", rng.random(20))
    np.save(tmp_path / "y_test.npy", np.arange(20) % 2)
    np.save(tmp_path / "oof_X.npy", rng.random((30, 5)))
    np.save(tmp_path / "oof_y.npy", np.arange(30) % 2)
    marker = tmp_path / "PWNED"
    joblib.dump(_Payload(marker), tmp_path / "meta.joblib")
    with pytest.raises(SystemExit, match="meta.joblib: refused: a joblib pickle"):
        main([str(tmp_path)])
    with pytest.raises(UntrustedArtifactError):
        load_artifacts(tmp_path)
    assert not marker.exists()
    load_artifacts(tmp_path, trust_pickle=True)  # the workflow's own file: read (here: the payload runs)
    assert marker.exists()


# ---------------------------------------------------------------- 7: the files of one model, sane values

def _edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def test_an_aggregator_or_settings_of_another_model_and_bad_values_are_refused_naming_the_file(demo, tmp_path):
    import yaml

    from nidsflow.deploy.model_dir import ModelDirError, validate_model_dir
    from nidsflow.deploy.scoring import Detector
    from nidsflow.janus.model import JanusConfig, JanusModel

    def detector(md):
        return Detector.from_model_dir(validate_model_dir(md), device="cpu")

    assert detector(demo["model_dir"]).fingerprint["variant"] == "full"  # the workflow's files pass
    # a B2 model (no packet sequence, no DFM head) beside the full model's aggregator
    b2 = _copy_model_dir(demo, tmp_path / "b2")
    ck = torch.load(b2 / "model.pt", map_location="cpu", weights_only=True)
    cfg = JanusConfig(**{**ck["model_config"], "use_packets": False, "disc_head": False})
    ck.update(variant="B2", model_config=cfg.to_dict(), state_dict=JanusModel(cfg).state_dict())
    torch.save(ck, b2 / "model.pt")
    with pytest.raises(ModelDirError, match=r"aggregator.json belongs to another model .*variant: 'full' there"):
        detector(b2)
    _edit_json(b2 / "aggregator.json", lambda d: d.pop("model"))  # an older artifact: no fingerprint
    yaml_d = yaml.safe_load((b2 / "deploy.yaml").read_text())
    yaml_d.pop("model")
    (b2 / "deploy.yaml").write_text(yaml.safe_dump(yaml_d))
    with pytest.raises(ModelDirError, match=r"uses score columns \[.*disc_nll_total.*\] that the model"):
        detector(b2)

    def refused(edit, match, name="aggregator.json"):
        md = _copy_model_dir(demo, tmp_path / f"m{len(list(tmp_path.iterdir()))}")
        if name == "aggregator.json":
            _edit_json(md / name, edit)
        else:
            d = yaml.safe_load((md / name).read_text())
            edit(d)
            (md / name).write_text(yaml.safe_dump(d))
        with pytest.raises(ModelDirError, match=match) as e:
            detector(md)
        assert str(md / name) in str(e.value)

    refused(lambda d: d["model"].update(seed=7), r"seed: 7 there, 0 in the model")          # another seed's
    refused(lambda d: d["model"].update(dataset="results/x/other/store"), "dataset")         # another dataset's
    refused(lambda d: d.update(threshold=float("nan")), "threshold must be a finite number")
    refused(lambda d: d.update(threshold=None), "threshold must be a finite number, got None")
    refused(lambda d: d["params"].update(precision=(-np.asarray(d["params"]["precision"])).tolist()),
            "not symmetric positive definite")
    refused(lambda d: d.update(columns=d["columns"][:-1]), r"9 columns but location has shape \(10,\)")
    refused(lambda d: d["model"].update(variant="B1"), "variant: 'B1' there", name="deploy.yaml")
    refused(lambda d: d["janus"].update(solvr="euler"), "janus.solvr is not known; did you mean janus.solver",
            name="deploy.yaml")


# ---------------------------------------------------------------- 2, 12: unreadable and corrupt captures

def _without_file_read_override(cmd: list[str]) -> list[str]:
    """``cmd`` run without the power to read a mode-000 file: as is for a normal user; for root (CI
    containers) under setpriv with CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH dropped."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *cmd]


def test_an_unreadable_capture_is_a_per_file_error_and_watch_goes_on_without_retrying_it(demo, tmp_path):
    watched = tmp_path / "w"
    watched.mkdir()
    t = time.time() - 100
    _drop(demo["benign"], watched, "a.pcap", t)
    _drop(demo["benign"], watched, "b.pcap", t + 1)
    (watched / "b.pcap").chmod(0)
    _drop(demo["attack"], watched, "c.pcap", t + 2)
    cmd = _without_file_read_override(_watch_cmd(watched, demo["model_dir"], "--once"))
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    from nidsflow.deploy.watch import Watcher, WatchSettings

    w = Watcher(watched, _detector(demo["model_dir"]), settings=WatchSettings(quiet_s=0.0))
    assert w.run_once() == 0  # a restart does not try it again (until it changes)
    w.close()
    s = _lines(watched / "summary.jsonl")
    assert [x["file"] for x in s] == ["a.pcap", "b.pcap", "c.pcap"]
    assert s[1]["status"] == "error" and "Permission denied" in s[1]["error"] and str(watched / "b.pcap") in s[1]["error"]
    assert s[2]["status"] == "ok" and s[2]["flows_scored"] > 0


def test_extract_counts_an_unreadable_or_missing_capture_and_exits_non_zero(tmp_path):
    import yaml

    from nidsflow.demo.generate import capture_file, generate_domain

    generate_domain("demo_a", tmp_path / "g", seed=4, benign_sessions=40, attack_sessions=5, duration_s=60)
    good = tmp_path / "g" / capture_file("demo_a")
    locked = tmp_path / "locked.pcap"
    shutil.copyfile(good, locked)
    locked.chmod(0)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    cfg["datasets"] = {"d": {"driver": "demo", "captures": [str(good), str(locked), str(tmp_path / "gone.pcap")],
                             "labels": [str(tmp_path / "g" / "demo_a" / "labels.csv")]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "nidsflow.cli", "--config", str(tmp_path / "c.yaml"), "extract", "d",
           str(tmp_path / "store")]
    p = subprocess.run(_without_file_read_override(cmd), env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "2 of 3 captures failed" in p.stderr and "locked.pcap: cannot read: Permission denied" in p.stderr
    assert "gone.pcap" in p.stderr and "Traceback" not in p.stderr
    report = json.loads((tmp_path / "store" / "extract_report.json").read_text())
    assert report["flows"] > 0 and len(report["failed_captures"]) == 2
    # a pattern that matches nothing: a message, no traceback
    cfg["datasets"]["d"]["captures"] = [str(tmp_path / "nothing" / "*.pcap")]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "matches no file" in p.stderr and "Traceback" not in p.stderr


def _corrupt(src: Path, dst: Path, record: int, caplen: int, snaplen: int | None = None) -> int:
    """``src`` with record ``record``'s length fields set to ``caplen`` (and the header's snaplen); returns its
    byte offset."""
    import struct

    raw = bytearray(src.read_bytes())
    endian, offsets = _records(bytes(raw))
    if snaplen is not None:
        struct.pack_into(endian + "I", raw, 16, snaplen)
    struct.pack_into(endian + "II", raw, offsets[record] + 8, caplen, caplen)
    dst.write_bytes(bytes(raw))
    return offsets[record]


@pytest.mark.parametrize("caplen,snaplen", [(0x7FFFFFF0, None), (250 * 2**20, 2**30)])
def test_score_capture_keeps_the_flows_before_a_corrupt_record_and_exits_non_zero(demo, tmp_path, capsys,
                                                                                 caplen, snaplen):
    from nidsflow.deploy.scoring import main as score_main

    bad = tmp_path / "bad.pcap"
    off = _corrupt(demo["benign"], bad, 1500, caplen, snaplen)
    rc = score_main(["--model-dir", str(demo["model_dir"]), "--capture", str(bad), "--out", str(tmp_path / "o.csv"),
                     "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 1 and f"{bad}" in err and f"byte offset {off}" in err
    summary = json.loads(out)
    assert summary["status"] == "error" and summary["flows"] > 1
    assert len(pd.read_csv(tmp_path / "o.csv")) == summary["flows"]


def test_timestamps_going_backwards_are_counted_and_warned(demo, tmp_path, caplog):
    import struct

    from nidsflow.capture.flows import FlowConfig, meter_capture

    raw = bytearray(demo["benign"].read_bytes())
    endian, offsets = _records(bytes(raw))
    for i in (300, 900):  # two packets stamped an hour early
        struct.pack_into(endian + "I", raw, offsets[i], struct.unpack_from(endian + "I", raw, offsets[i])[0] - 3600)
    (tmp_path / "back.pcap").write_bytes(bytes(raw))
    info: dict = {}
    with caplog.at_level("WARNING"):
        list(meter_capture(tmp_path / "back.pcap", FlowConfig.from_extract_config(EXTRACT), EXTRACT, info))
    assert info["meter"].ts_backwards == 2
    assert any("2 packets have a timestamp earlier" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- 9: --out is the capture

def test_score_capture_refuses_to_write_over_its_capture(demo, tmp_path, capsys):
    from nidsflow.deploy.scoring import NewCaptureError, main as score_main, score_capture

    cap = tmp_path / "c.pcap"
    shutil.copyfile(demo["benign"], cap)
    before = cap.read_bytes()
    with pytest.raises(SystemExit):
        score_main(["--model-dir", str(demo["model_dir"]), "--capture", str(cap), "--out",
                    str(tmp_path / "x" / ".." / "c.pcap")])
    assert "is the capture itself" in capsys.readouterr().err
    md = demo["model_dir"]
    with pytest.raises(NewCaptureError, match="would replace the capture"):
        score_capture(cap, md / "model.pt", md / "aggregator.json", cap, EXTRACT, JANUS, "cpu")
    assert cap.read_bytes() == before


# ---------------------------------------------------------------- 3: quiet, scored, then growing

def _as_pcapng(raw: bytes) -> tuple[bytes, list[int]]:
    """A little-endian microsecond classic pcap rewritten as pcapng (SHB, one IDB, one EPB per record, as
    demo/wire.write_pcapng writes); returns it and each EPB's byte offset."""
    import struct

    _, offsets = _records(raw)
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHIHHBBBBHHI", 1, 32, 1, 0, 65535, 9, 1, 6, 0, 0, 0, 0, 0, 32)
    out, pos, where = [shb, idb], len(shb) + len(idb), []
    for off in offsets:
        sec, usec, cap, orig = struct.unpack_from("<IIII", raw, off)
        frame = raw[off + 16:off + 16 + cap]
        pad = (-cap) % 4
        blen = 32 + cap + pad
        ts = sec * 1_000_000 + usec
        where.append(pos)
        out.append(struct.pack("<IIIIIII", 6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, cap, orig) + frame + b"\0" * pad
                   + struct.pack("<I", blen))
        pos += blen
    return b"".join(out), where


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_file_growing_after_it_was_scored_is_read_on_never_twice(demo, tmp_path, fmt):
    from collections import Counter

    from test_watch import _flow

    from nidsflow.deploy.watch import Watcher, WatchSettings

    raw = demo["benign"].read_bytes()
    _, offsets = _records(raw)
    if fmt == "pcapng":
        raw, offsets = _as_pcapng(raw)
    cut = offsets[len(offsets) // 2]
    det = _detector(demo["model_dir"])
    settings = WatchSettings(quiet_s=0.0, all_flows=True)
    watched = tmp_path / "w"
    watched.mkdir()
    live = watched / "live.pcap"
    live.write_bytes(raw[:cut] + raw[cut:cut + 10])  # the writer stopped mid-record during a quiet period
    os.utime(live, (time.time() - 60, time.time() - 60))
    Watcher(watched, det, settings=settings).run(once=True)
    with open(live, "ab") as f:  # the link wakes up: the rest is appended
        f.write(raw[cut + 10:])
    Watcher(watched, det, settings=settings).run(once=True, flush=True)  # a restart, from the state file
    got = _lines(watched / "alerts.jsonl")
    s = _lines(watched / "summary.jsonl")
    assert [x["file"] for x in s] == ["live.pcap", "live.pcap", None]
    assert s[1]["continued_from_byte"] == cut
    assert s[0]["packets"] + s[1]["packets"] == len(offsets)

    ref = tmp_path / "ref"
    ref.mkdir()
    (tmp_path / "whole").write_bytes(raw)
    _drop(tmp_path / "whole", ref, "live.pcap", time.time() - 60)
    Watcher(ref, det, settings=settings).run(once=True, flush=True)
    want = _lines(ref / "alerts.jsonl")
    assert Counter(map(_flow, got)) == Counter(map(_flow, want)), "flows repeated or lost"
    assert len(got) == len(want)
    # a file replaced by other content (ring buffer reusing the name) is scored as a new file
    _drop(demo["attack"], watched, "live.pcap", time.time() - 30)
    Watcher(watched, det, settings=settings).run(once=True)
    assert "continued_from_byte" not in _lines(watched / "summary.jsonl")[-1]


# ---------------------------------------------------------------- 4: links, 6: one watch per directory, 11: own files

def test_watch_refuses_links_for_its_outputs_and_state_and_never_writes_through_them(demo, tmp_path):
    from nidsflow.deploy.watch import Watcher, WatchError, WatchSettings

    det = _detector(demo["model_dir"])
    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 60)
    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    for name in ("alerts.jsonl", "summary.jsonl", ".nidsflow-watch-state.npz"):
        (watched / name).symlink_to(target)
        with pytest.raises(WatchError, match=f"{name}: is a symbolic link; refused"):
            Watcher(watched, det, settings=WatchSettings(quiet_s=0.0))
        (watched / name).unlink()
    # a link named like the state's temporary file: removed, its target untouched
    (watched / ".nidsflow-watch-state.npz.tmp").symlink_to(target)
    w = Watcher(watched, det, settings=WatchSettings(quiet_s=0.0))
    w.run(once=True)
    w.close()
    assert not (watched / ".nidsflow-watch-state.npz").is_symlink()
    # a restart finding its (uncommitted-tail) summary replaced by a link: refused, the target not truncated
    (watched / "summary.jsonl").rename(tmp_path / "moved.jsonl")
    (watched / "summary.jsonl").symlink_to(target)
    with pytest.raises(WatchError, match="summary.jsonl: is a symbolic link"):
        Watcher(watched, det, settings=WatchSettings(quiet_s=0.0))
    assert target.read_text() == "precious\n"


def test_a_second_watch_of_a_directory_is_refused_naming_the_other_pid(demo, tmp_path, capfd):
    from nidsflow.deploy.watch import Watcher, WatchError, WatchSettings

    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 60)
    p = subprocess.Popen(_watch_cmd(watched, demo["model_dir"]), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not _lines(watched / "summary.jsonl") and time.time() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert _lines(watched / "summary.jsonl"), p.stderr.read() if p.poll() is not None else "timeout"
        det = _detector(demo["model_dir"])
        with pytest.raises(WatchError, match=rf"{watched}: already watched by process {p.pid}"):
            Watcher(watched, det, settings=WatchSettings(quiet_s=0.0))
        from nidsflow.deploy.watch import main as watch_main

        capfd.readouterr()
        assert watch_main([str(watched), "--model-dir", str(demo["model_dir"]), "--once", "--device", "cpu"]) == 1
        assert f"already watched by process {p.pid}" in capfd.readouterr().err
        assert len(_lines(watched / "summary.jsonl")) == 1
    finally:
        p.terminate()
        p.communicate(timeout=60)
    w = Watcher(watched, det, settings=WatchSettings(quiet_s=0.0))  # free again once it stopped
    w.close()


def test_watch_never_reads_its_own_files_whatever_the_pattern(demo, tmp_path):
    from nidsflow.deploy.watch import Watcher, WatchSettings

    det = _detector(demo["model_dir"])
    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 60)
    settings = WatchSettings(quiet_s=0.0, patterns=("*",), all_flows=True)
    for _ in range(3):
        w = Watcher(watched, det, settings=settings)
        w.exclude(watched / "watch.log")
        (watched / "watch.log").write_text("a log line\n")
        w.run(once=True)
        w.close()
    assert [x["file"] for x in _lines(watched / "summary.jsonl")] == ["a.pcap"]


# ---------------------------------------------------------------- 5: workers die with the watch

def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killing_the_watch_ends_its_worker_processes(demo, tmp_path):
    import signal

    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 60)
    p = subprocess.Popen(_watch_cmd(watched, demo["model_dir"], "--workers", "2"), env=_env(),
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not _lines(watched / "summary.jsonl") and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert _lines(watched / "summary.jsonl"), "the watch did not score the file"
        workers = [c for c in _children(p.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert workers, "no worker process started"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    deadline = time.time() + 30
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leave them behind even when the test fails
        os.kill(w, signal.SIGKILL)
    assert not left, "worker processes outlived the killed watch"


# ---------------------------------------------------------------- 10, 12: config names and values

def test_config_names_that_become_folders_must_be_path_safe_and_test_caps_positive(tmp_path):
    import yaml

    from nidsflow.config_schema import ConfigError, load_config
    from nidsflow.layout import PHASE1_SCORES, path, safe_name

    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())

    def check(edit, match):
        cfg = json.loads(json.dumps(base))
        edit(cfg)
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        with pytest.raises(ConfigError, match=match):
            load_config(tmp_path / "c.yaml")

    check(lambda c: c["evaluate"].update(new_captures={"../../escape": "x.pcap"}), "escape")
    check(lambda c: c.setdefault("hikari", {}).update(datasets={"../x": {"csv": "a.csv"}}), r"\.\./x")
    check(lambda c: c["split"].update(max_test_benign=-5), "max_test_benign")
    check(lambda c: c["split"].update(max_test_per_class=-1), "max_test_per_class")
    for bad in ("../x", "a/b", ".hidden", "", "..", None):
        with pytest.raises(ValueError, match="cannot be a folder name"):
            safe_name(bad, "evaluate.new_captures")
    assert safe_name("capture-2024.01_a", "k") == "capture-2024.01_a"
    with pytest.raises(ValueError, match="ds: name '../x'"):
        path(PHASE1_SCORES, study="demo", ds="../x", variant="full", seed=1)


def test_a_truncated_watch_state_is_a_message_naming_it(demo, tmp_path, capfd):
    from nidsflow.deploy.watch import main as watch_main

    watched = tmp_path / "w"
    watched.mkdir()
    _drop(demo["benign"], watched, "a.pcap", time.time() - 60)
    args = [str(watched), "--model-dir", str(demo["model_dir"]), "--once", "--quiet-s", "0", "--device", "cpu"]
    assert watch_main(args) == 0
    state = watched / ".nidsflow-watch-state.npz"
    raw = state.read_bytes()
    state.write_bytes(raw[:len(raw) // 2])
    capfd.readouterr()
    assert watch_main(args) == 1
    err = capfd.readouterr().err
    assert f"{state}: unreadable watch state" in err and "Traceback" not in err
