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
