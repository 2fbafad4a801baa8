"""End-to-end throughput of ``nidsflow watch``: captured packets in, alert lines out. Not a test.

    python bench/watch.py --workers 2 [--threads 1] [--sizes demo demo-bf16 paper] [--files 8] [--write-doc docs/benchmarks.md]

1. generates the demo's domain demo_a capture with config/config.yaml's ``demo:`` settings (2 400 benign +
   900 attack sessions over one hour, seed 7) and cuts it into ``--files`` rotation files
   (``capture.pcap``, ``capture.pcap1``, ... as ``tcpdump -C`` names them), so flows span files;
2. per model size (``demo``: config/config.yaml's ``janus:``/``extract:``; ``paper``: config/paper.yaml's)
   writes a model directory with an **untrained** JANUS of that size (random weights, seed 0; the speed of
   scoring does not depend on the weights' values) whose normaliser and aggregator are fitted on the first
   file's flows (the aggregator treats them as benign val: the alert flags mean nothing, the work is the same);
3. times ``Watcher.run(once=True, flush=True)`` over the rotation directory in this process, after a warm-up
   on a copy of the first file (numba's cached kernels and torch are loaded once per process, not per
   file): reading, flow assembly across files, features, the 10 scores, d^2, explanations of the alerts,
   JSON lines, per-file state commits (fsync). flows/s = flows scored / wall seconds; packets/s likewise.
   ``--workers N`` (N > 1): the scoring runs in N worker processes of one torch thread each
   (``nidsflow watch --workers N``, :mod:`nidsflow.deploy.parallel`), started and warmed up before the
   timing; ``--threads`` is then the torch threads of each worker. CPU s = CPU time of this process plus
   its workers (``/proc``); flows per CPU s is what the code costs whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
#: size -> (config it comes from, janus overrides): "demo-bf16" is the demo model with score_bf16: auto
#: (bfloat16 autocast where the CPU has AVX512-BF16/AMX; the demo config keeps it off for identical numbers).
SIZES = {"demo": ("demo", {}), "demo-bf16": ("demo", {"score_bf16": "auto"}), "paper": ("paper", {})}


def split_rotation(src: Path, out_dir: Path, n_files: int) -> list[Path]:
    """Cut a classic pcap into ``n_files`` files of about equal packet counts (tcpdump -C names)."""
    raw = src.read_bytes()
    endian = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos, offsets = 24, []
    while pos + 16 <= len(raw):
        offsets.append(pos)
        pos += 16 + struct.unpack(endian + "IIII", raw[pos:pos + 16])[2]
    cuts = [offsets[int(len(offsets) * i / n_files)] for i in range(n_files)] + [len(raw)]
    out, t = [], time.time() - 10 * n_files
    for i in range(n_files):
        p = out_dir / ("capture.pcap" + (str(i) if i else ""))
        p.write_bytes(raw[:24] + raw[cuts[i]:cuts[i + 1]])
        os.utime(p, (t + i, t + i))  # rotation order = modification order
        out.append(p)
    return out


def untrained_model_dir(root: Path, janus_cfg: dict, extract_cfg: dict, sample_pcap: Path) -> Path:
    """model.pt (random weights of the configured size, normaliser fitted on the sample's flows),
    aggregator.json (A1 fitted on the sample's scores), deploy.yaml."""
    import pandas as pd

    from nidsflow.deploy.model_dir import write_deploy_settings
    from nidsflow.deploy.scoring import iter_capture_flows
    from nidsflow.evaluate.aggregators import fit_deployable, save_artifact
    from nidsflow.janus.data import Normaliser
    from nidsflow.janus.model import JanusConfig, JanusModel
    from nidsflow.janus.score import scorer_for
    from nidsflow.janus.train import MODEL_FORMAT
    from nidsflow.janus.variants import resolve_variant
    from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable

    root.mkdir(parents=True, exist_ok=True)
    parts = list(iter_capture_flows(sample_pcap, extract_cfg))
    feats = pd.concat([p[1] for p in parts], ignore_index=True)
    ch, ln = np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
    norm = Normaliser.fit(feats, ch, ln, int(janus_cfg["T"]), float(janus_cfg.get("feature_clip", 10.0)))
    model_kw, settings = resolve_variant(janus_cfg, "full")
    torch.manual_seed(0)
    mcfg = JanusConfig(n_flow_features=len(norm.feature_names), **model_kw)
    model = JanusModel(mcfg)
    torch.save({"format": MODEL_FORMAT, "variant": "full", "seed": 0, "model_config": mcfg.to_dict(),
                "train_settings": settings.to_dict(), "normaliser": norm.state_dict(),
                "state_dict": model.state_dict(), "best_epoch": 0, "history": [], "store": "untrained"},
               root / "model.pt")
    scorer, norm, _ = scorer_for(root / "model.pt", janus_cfg, "cpu", progress=False)
    S = scorer.score(norm.transform(feats, ch, ln, len(feats)))
    n = len(S)
    table = ScoreTable(np.arange(n), np.array(["val"] * n), np.array(["BENIGN"] * n), np.array(["benign"] * n),
                       np.zeros(n, bool), JANUS_SCORE_NAMES, S.astype(np.float32))
    save_artifact(fit_deployable(table, fpr_target=0.01), root / "aggregator.json")
    write_deploy_settings(root / "deploy.yaml", extract_cfg, janus_cfg)
    return root


def _cpu_s(pids) -> float:
    """CPU seconds (user + system) of this process and the processes ``pids`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def run_size(name: str, cfg: dict, demo_pcap: Path, work: Path, n_files: int, all_flows: bool,
             max_files: int | None = None, workers: int = 1, threads: int = 1) -> dict:
    from nidsflow.deploy.model_dir import validate_model_dir
    from nidsflow.deploy.parallel import ScoringPool
    from nidsflow.deploy.scoring import Detector
    from nidsflow.deploy.watch import Watcher, WatchSettings

    extract = dict(cfg["extract"])
    janus = dict(cfg["janus"])
    rot = work / f"{name}_rotation"
    rot.mkdir(parents=True)
    files = split_rotation(demo_pcap, rot, n_files)
    for f in files[max_files:] if max_files else []:  # a slow size: the first files of the rotation only
        f.unlink()
    files = files[:max_files] if max_files else files
    md = untrained_model_dir(work / f"{name}_model", janus, extract, files[0])
    det = Detector.from_model_dir(validate_model_dir(md), "cpu")
    settings = WatchSettings(quiet_s=0.0, all_flows=all_flows)
    pool = ScoringPool(det, workers, threads) if workers > 1 else None
    pids = []
    try:
        if pool is not None:
            pool.warm_up()
        warm = work / f"{name}_warm"
        warm.mkdir()
        shutil.copy(files[0], warm / "warm.pcap")
        Watcher(warm, det, settings=settings, pool=pool).run(once=True, flush=True)
        pids = list(pool._ex._processes) if pool is not None else []
        w = Watcher(rot, det, settings=settings, pool=pool)
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), _cpu_s(pids)
        w.run(once=True, flush=True)
        wall, cpu = time.perf_counter() - t0, _cpu_s(pids) - c0
        load_after = os.getloadavg()[0]
    finally:
        if pool is not None:
            pool.close()
    summ = [json.loads(x) for x in (rot / "summary.jsonl").read_text().splitlines()]
    packets = sum(s["packets"] for s in summ)
    flows = sum(s["flows_scored"] for s in summ)
    alerts = sum(s["alerts"] for s in summ)
    lines = len((rot / "alerts.jsonl").read_text().splitlines())
    m = det.scorer.model.cfg
    return {"size": name, "T": m.T, "d_model": m.d_model, "n_layers": m.n_layers, "n_heads": m.n_heads,
            "solver": f"{janus.get('solver')} x {janus.get('solver_steps')}", "disc_times": janus.get("disc_times"),
            "bf16": janus.get("score_bf16"), "workers": workers, "threads": threads, "files": len(files),
            "packets": packets, "flows": flows, "alerts": alerts, "lines": lines, "wall_s": wall, "cpu_s": cpu,
            "flows_per_s": flows / wall, "packets_per_s": packets / wall, "flows_per_cpu_s": flows / cpu,
            "load_before": load_before, "load_after": load_after}


def markdown(res: dict) -> str:
    rows = "\n".join(
        f"| {r['size']} | T {r['T']}, d {r['d_model']}, {r['n_layers']} layers, {r['n_heads']} heads | {r['solver']} | "
        f"{r['disc_times']} | {r['bf16']} | {r['workers']} x {r['threads']} | {r['packets']:,} | {r['flows']:,} | "
        f"{r['alerts']:,} | {r['wall_s']:.1f} | {r['flows_per_s']:,.0f} | {r['packets_per_s']:,.0f} | {r['cpu_s']:.1f} | "
        f"{r['flows_per_cpu_s']:,.0f} | {r['load_before']:.1f} / {r['load_after']:.1f} |" for r in res["runs"])
    return f"""## Watch (deployment)

`{res['command']}` ({res['date']}, {res['machine']}, torch {res['torch']};
1-min load average {res['load_before']:.1f} before and {res['load_after']:.1f} after the runs, on 2 cores).
Input: the demo's demo_a capture (`demo:` of config/config.yaml, seed {res['demo_seed']}: {res['demo_packets']:,}
packets) cut into {res['files']} rotation files (`capture.pcap`, `capture.pcap1`, ...), flows stitched across them
(the paper size scores only the first {res['paper_files']} of them: it is slow on 2 cores).
End to end: read, flows, features, 10 scores, d^2, alert explanations, JSON lines
({'every flow' if res['all_flows'] else 'alerts only'}), one fsync'ed state commit per file; model load, worker
start and the one-time numba/torch warm-up excluded. "workers x threads": 1 x n = in one process with n torch
threads; N x 1 = `--workers N`, the scoring in N processes of one thread. CPU s: this process and its workers;
flows per CPU s = flows / CPU s. **The models are untrained** (random weights of each
size, normaliser and aggregator fitted on the first file): the timing is that of a trained model of the same
size, the alert counts mean nothing.

| size | model | ODE | disc_times | bf16 | workers x threads | packets | flows | alerts | wall s | flows/s | packets/s | CPU s | flows per CPU s | load before / after |
|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
{rows}

Goal: >= 1 000 flows/s with the demo model. {res['verdict']}
"""


def main():
    from nidsflow.demo.generate import capture_file, generate_domain

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads: of this process (--workers 1), else of each worker")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="scoring processes; each size is run once per value (default: 1 2)")
    ap.add_argument("--sizes", nargs="+", default=["demo", "demo-bf16", "paper"], choices=list(SIZES))
    ap.add_argument("--paper-files", type=int, default=2, help="rotation files the paper-size model scores")
    ap.add_argument("--files", type=int, default=8, help="rotation files the capture is cut into")
    ap.add_argument("--all-flows", action="store_true", help="write a line per flow, not only per alert")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write-doc", default=None, help="replace or append the 'Watch (deployment)' section")
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    demo_cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    paper_cfg = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    d = demo_cfg["demo"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_domain("demo_a", work / "demo", seed=d["seed"], benign_sessions=d["benign_sessions"],
                        attack_sessions=d["attack_sessions"], duration_s=d["duration_s"])
        pcap = work / "demo" / capture_file("demo_a")
        from nidsflow.capture.pcap import CaptureReader

        demo_packets = sum(len(b) for b in CaptureReader(pcap))
        runs = []
        for size in a.sizes:
            for workers in a.workers:
                base, over = SIZES[size]
                cfg = demo_cfg if base == "demo" else paper_cfg
                cfg = {"extract": cfg["extract"], "janus": dict(cfg["janus"], threads=a.threads, **over)}
                torch.set_num_threads(1 if workers > 1 else a.threads)
                r = run_size(f"{size}", cfg, pcap, work / f"w{workers}", a.files, a.all_flows,
                             a.paper_files if base == "paper" else None, workers, a.threads)
                print(json.dumps(r), flush=True)
                runs.append(r)
    verdict = " ".join(
        f"{r['size']} {r['workers']} x {r['threads']}: {r['flows_per_s']:,.0f} flows/s wall "
        f"({'met' if r['flows_per_s'] >= 1000 else 'not met'}), {r['flows_per_cpu_s']:,.0f} flows per CPU second."
        for r in runs if r["size"].startswith("demo"))
    res = {"command": "python bench/watch.py " + " ".join(
               [f"--threads {a.threads}", "--workers " + " ".join(map(str, a.workers)),
                "--sizes " + " ".join(a.sizes), f"--files {a.files}",
                f"--paper-files {a.paper_files}"]
               + (["--all-flows"] if a.all_flows else []) + ([f"--write-doc {a.write_doc}"] if a.write_doc else [])),
           "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible",
           "torch": torch.__version__, "threads": a.threads, "load_before": load_before,
           "load_after": os.getloadavg()[0], "demo_seed": d["seed"], "demo_packets": demo_packets,
           "files": a.files, "paper_files": a.paper_files, "all_flows": a.all_flows, "runs": runs, "verdict": verdict}
    md = markdown(res)
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    if a.write_doc:
        doc = Path(a.write_doc)
        text = doc.read_text()
        head = "## Watch (deployment)"
        if head in text:
            start = text.index(head)
            nxt = text.find("\n## ", start + len(head))
            text = text[:start] + md + (text[nxt + 1:] if nxt != -1 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + md
        doc.write_text(text)


if __name__ == "__main__":
    main()
