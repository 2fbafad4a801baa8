"""JANUS speed and solver accuracy on CPU (or CUDA when present): not a test.

    OMP_NUM_THREADS=2 python bench/janus.py --threads 2 [--json out.json]

1. builds a synthetic store (T 64; benign sessions with heavy-tailed packet counts, median ~9;
   attack classes scan / flood / mimic, the last one hard), split 2000 train / 500 val;
2. trains the paper configuration (T 64, d_model 128, 4 layers, 4 heads) for a few epochs and
   times pure optimisation steps (training flows/s);
3. times one forward pass on full-length (64-packet) flows (worst case);
4. scores benign val + test with every solver x steps (1..32): AUROC of terminal_norm and of the
   10-d Mahalanobis-OAS aggregate (fitted on benign val), against the rk4 32-step reference, and
   10-d scoring flows/s = flows / (ODE time + DFM time);
5. fast settings (few ODE steps, one or two DFM corruption times), each in float32 and with bfloat16
   autocast (a speed-up only where the CPU has AVX512-BF16/AMX, or on a GPU): AUROC and flows/s.
Prints markdown tables (for docs/benchmarks.md, section JANUS).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nidsflow.evaluate.aggregators import make_aggregator
from nidsflow.evaluate.metrics import auroc
from nidsflow.fixtures import make_scan_flood_store
from nidsflow.janus.data import load_raw
from nidsflow.janus.model import JanusConfig, JanusModel
from nidsflow.janus.score import JanusScorer, ODESolver, score_batches
from nidsflow.janus.train import JanusObjective, load_model, load_training_data, train_janus
from nidsflow.janus.variants import ScoreSettings, resolve_variant
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import make_split
from nidsflow.store import Store

PAPER = {
    "T": 64, "d_model": 128, "n_layers": 4, "n_heads": 4, "dropout": 0.1, "sigma": 0.1, "cross_sigma": 0.6,
    "lambda_disc": 1.0, "ot": True, "ot_method": "sinkhorn", "ot_reg": 0.05, "ot_pairing": "argmax",
    "dfm_source": "mask", "kappa_power": 1.0, "epochs": 4, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.01,
    "warmup_steps": 10, "grad_clip": 1.0, "patience": 5, "disc_times": [0.1, 0.3, 0.5, 0.7, 0.9],
    "score_batch_size": 1024, "score_seed": 12345,
}


#: "wall" (time.perf_counter) or "cpu" (time.process_time: this process's CPU seconds, robust when other
#: jobs share the cores; with --threads 1 it is the single-core cost).
CLOCK = {"fn": time.perf_counter}


def _timed(fn):
    t0 = CLOCK["fn"]()
    out = fn()
    return out, CLOCK["fn"]() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n-benign", type=int, default=3000)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--n-attack", type=int, default=600, help="attack flows (scan 1/4, flood 1/4, mimic 1/2)")
    ap.add_argument("--max-test-benign", type=int, default=None)
    ap.add_argument("--steps", default="1,2,4,8,16,32")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    CLOCK["fn"] = time.process_time if args.clock == "cpu" else time.perf_counter
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    res: dict = {"threads": args.threads, "clock": args.clock, "device": str(dev), "cpu": platform.processor() or platform.machine(),
                 "torch": torch.__version__}
    cfg = {**PAPER, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        q = args.n_attack // 4
        make_scan_flood_store(tmp / "store", n_benign=args.n_benign, n_scan=q, n_flood=q, n_mimic=args.n_attack - 2 * q,
                             T=64, seed=0, heavy_tailed_lengths=True)
        store = Store(tmp / "store")
        split = make_split(store.flows, seed=42, n_train=args.n_train, n_val=args.n_val,
                           max_test_benign=args.max_test_benign)
        split.save(tmp / "split.npz")
        lengths = np.minimum(store.flows["n_packets"].to_numpy(), 64)
        res["flows_packets_median"] = float(np.median(lengths))
        res["flows_packets_mean"] = float(lengths.mean())

        # ---- training throughput: pure optimisation steps on the paper config
        model_kw, settings = resolve_variant(cfg, "full")
        norm, train, _ = load_training_data(store, split, model_kw, settings, 42)
        model = JanusModel(JanusConfig(n_flow_features=len(norm.feature_names), **model_kw)).to(dev)
        obj = JanusObjective(model, settings)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
        n_steps, bs = 6, settings.batch_size

        def steps():
            for k in range(n_steps):
                b = train.index(torch.randperm(len(train), generator=gen)[:bs]).trimmed()
                loss = obj(b, gen, rng, dev).total
                opt.zero_grad()
                loss.backward()
                opt.step()
        steps()  # warm-up
        _, dt = _timed(steps)
        res["train_flows_per_s"] = n_steps * bs / dt
        print("train flows/s", res["train_flows_per_s"], flush=True)

        # ---- one forward on full-length flows (worst case)
        B = 512
        full = train.index(torch.arange(B) % len(train))
        x = (torch.randn(B, full.flow.shape[1]), torch.randn(B, 64, 3), torch.randint(0, 2, (B, 64, 6)),
             torch.ones(B, 64, dtype=torch.bool), torch.rand(B), torch.ones(B))
        model.eval()
        with torch.no_grad():
            model(*[a.to(dev) for a in x])
            _, dt = _timed(lambda: model(*[a.to(dev) for a in x]))
        res["forward_full_T64_flows_per_s"] = B / dt

        # ---- train a model to score with
        t0 = time.perf_counter()
        path = train_janus(store.root, tmp / "split.npz", tmp / "model", cfg, "full", 42, device=str(dev), progress=False)
        res["train_wall_s"] = time.perf_counter() - t0
        res["n_scored"] = 0
        print("trained", res["train_wall_s"], flush=True)
        model, norm, meta = load_model(path, str(dev))
        res["history"] = meta["history"]
        ids = np.concatenate([split.val, split.test])
        which = np.array(["val"] * len(split.val) + ["test"] * len(split.test))
        data = norm.transform(*load_raw(store, ids, True, True), len(ids))
        flows = store.flows
        y = flows["is_attack"].to_numpy()[ids][which == "test"]
        res["n_scored"] = len(ids)
        res["n_test_benign"], res["n_test_attack"] = int((~y).sum()), int(y.sum())

        def table_of(S):
            return ScoreTable.from_flows(flows, ids, which, JANUS_SCORE_NAMES, S)

        def a1(S):
            t = table_of(S)
            s = make_aggregator("A1").fit_table(t).score_table(t)
            return auroc(y, s[which == "test"])

        def run(solver, steps_, disc_times=tuple(PAPER["disc_times"]), bf16=False):
            sc = JanusScorer(model, ScoreSettings(solver, steps_, disc_times, PAPER["score_batch_size"],
                                                  PAPER["score_seed"], bf16), dev, progress=False)
            S = np.empty((len(ids), 10))
            t_term = t_disc = 0.0
            for k, idx in enumerate(score_batches(data, sc.s.score_batch_size)):
                b = data.index(idx).trimmed().to(dev)
                S[idx.numpy(), :3], dt1 = _timed(lambda: sc.terminal(b))
                S[idx.numpy(), 3:], dt2 = _timed(lambda: sc.disc_nll(b, np.asarray(ids)[idx.numpy()], k))
                t_term, t_disc = t_term + dt1, t_disc + dt2
            return S, t_term, t_disc

        ref, _, t_disc_ref = run("rk4", 32)
        ref_a1, ref_tn = a1(ref), auroc(y, ref[which == "test", 0])
        print("reference", ref_a1, ref_tn, flush=True)
        res["reference"] = {"solver": "rk4", "steps": 32, "auroc_A1": ref_a1, "auroc_terminal_norm": ref_tn}
        rows = []
        for solver in ODESolver.METHODS:
            for n in [int(s) for s in args.steps.split(",")]:
                S, t_term, t_disc = run(solver, n)
                rows.append({"solver": solver, "steps": n, "nfe": ODESolver(solver, n).evaluations,
                             "auroc_A1": a1(S), "auroc_terminal_norm": auroc(y, S[which == "test", 0]),
                             "ode_flows_per_s": len(ids) / t_term, "scoring_10d_flows_per_s": len(ids) / (t_term + t_disc)})
                print(rows[-1], flush=True)
        res["solver_table"] = rows
        extra = []
        fast = []
        for solver, n_steps, times in (("euler", 1, (0.5,)), ("euler", 2, (0.5,)), ("midpoint", 1, (0.5,)),
                                       ("euler", 2, (0.3, 0.7)), ("midpoint", 2, (0.5,)), ("euler", 1, tuple(PAPER["disc_times"]))):
            for bf16 in (False, True):
                label = f"{solver} {n_steps}, disc_times {list(times)}, {'bf16' if bf16 else 'fp32'}"
                fast.append((label, dict(solver=solver, steps_=n_steps, disc_times=times, bf16=bf16)))
        # The corruption times define the disc_nll scores (a modelling choice, fixed per study), so a fast
        # setting is compared with the rk4 x 32 reference computed with its own disc_times.
        refs = {tuple(PAPER["disc_times"]): ref_a1}
        for label, kw in fast:
            times = tuple(kw["disc_times"])
            if times not in refs:
                refs[times] = a1(run("rk4", 32, disc_times=times)[0])
            S, t_term, t_disc = run(**kw)
            extra.append({"setting": label, "auroc_A1": a1(S), "reference_A1": refs[times],
                          "delta_vs_ref": a1(S) - refs[times], "delta_vs_paper_ref": a1(S) - ref_a1,
                          "scoring_10d_flows_per_s": len(ids) / (t_term + t_disc)})
            print(extra[-1], flush=True)
        res["fast_settings"] = extra
    print(markdown(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def markdown(res: dict) -> str:
    r = res["reference"]
    lines = [f"Device: {res['device']} ({res['cpu']}), {res['threads']} threads, torch {res['torch']}, "
             f"clock {res['clock']} (cpu = this process's CPU seconds).",
             f"Synthetic store: T 64, packets per flow median {res['flows_packets_median']:.0f}, "
             f"mean {res['flows_packets_mean']:.1f} (capped at 64); {res['n_scored']} flows scored (val + test: "
             f"{res['n_test_benign']} benign, {res['n_test_attack']} attacks).", "",
             f"- training: {res['train_flows_per_s']:.0f} flows/s (paper config, batch 256, OT-Sinkhorn on)",
             f"- one forward pass on full 64-packet flows: {res['forward_full_T64_flows_per_s']:.0f} flows/s",
             f"- reference rk4 x 32: AUROC A1 {r['auroc_A1']:.4f}, terminal_norm {r['auroc_terminal_norm']:.4f}", "",
             "| solver | steps | NFE | AUROC A1 (10-d) | Δ vs ref | AUROC terminal_norm | ODE flows/s | 10-d scoring flows/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in res["solver_table"]:
        lines.append(f"| {row['solver']} | {row['steps']} | {row['nfe']} | {row['auroc_A1']:.4f} | "
                     f"{row['auroc_A1'] - r['auroc_A1']:+.4f} | {row['auroc_terminal_norm']:.4f} | "
                     f"{row['ode_flows_per_s']:.0f} | {row['scoring_10d_flows_per_s']:.0f} |")
    lines += ["", "| fast setting | AUROC A1 | rk4 x 32 ref, same disc_times | Δ vs that ref | Δ vs the 5-time ref "
              "| 10-d scoring flows/s |", "|---|---:|---:|---:|---:|---:|"]
    for e in res["fast_settings"]:
        lines.append(f"| {e['setting']} | {e['auroc_A1']:.4f} | {e['reference_A1']:.4f} | {e['delta_vs_ref']:+.4f} | "
                     f"{e['delta_vs_paper_ref']:+.4f} | {e['scoring_10d_flows_per_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
