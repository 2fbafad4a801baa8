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

    OMP_NUM_THREADS=1 python bench/janus.py --threads 1 --train-speed [--repeats 5]
    OMP_NUM_THREADS=1 python bench/janus.py --threads 1 --precision-check

--train-speed: training flows/s of one optimisation step at the demo/real size (config/config.yaml and
config/real.yaml have the same model: T 16, d_model 64, 2 layers, batch 128) and the paper size (T 64,
d_model 128, 4 layers, dropout 0.1, batch 256), in three settings run interleaved (A, B, C, A, B, C, ...)
on fresh models, medians over the repeats, CPU-seconds clock (this process's, robust to other jobs):
``before`` (the previous loop: float32, unfused AdamW, no EMA), ``fp32`` (train.train_step: fused AdamW,
EMA) and ``bf16`` (the same under bfloat16 autocast).
--precision-check: the demo-size model trained by train_janus in fp32 and in bf16 (same seed, same
steps), both then evaluated in float32: benign-val loss and test AUROC (A1 and terminal_norm), per seed,
next to the fp32 seed-to-seed differences.
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
from nidsflow.janus.train import (JanusObjective, _evaluate, load_model, load_training_data, make_optimizer,
                                  train_janus, train_step, warmup_cosine)
from nidsflow.janus.variants import ScoreSettings, resolve_variant
from nidsflow.scores import JANUS_SCORE_NAMES, ScoreTable
from nidsflow.splits import make_split
from nidsflow.store import Store
from nidsflow.training import WeightEMA

#: the coupling every config uses now (PAPER above keeps the seed's, for the solver tables' history)
CURRENT_OT = {"ot_method": "sinkhorn_log", "ot_reg": 0.1, "ot_reg_scale": "centred_std", "ot_pairing": "sample_unique"}
#: model and batch sizes of the training-speed benchmark (the janus sections of the configs)
TRAIN_SIZES = {
    "demo/real": {"T": 16, "d_model": 64, "n_layers": 2, "n_heads": 4, "dropout": 0.0, "batch_size": 128},
    "paper": {"T": 64, "d_model": 128, "n_layers": 4, "n_heads": 4, "dropout": 0.1, "batch_size": 256},
}

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
    ap.add_argument("--train-speed", action="store_true", help="only the training-speed comparison")
    ap.add_argument("--precision-check", action="store_true", help="only the fp32 / bf16 quality comparison")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", default="42,43")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    CLOCK["fn"] = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.train_speed or args.precision_check:
        CLOCK["fn"] = time.process_time
        res = train_speed(args.repeats) if args.train_speed else precision_check([int(s) for s in args.seeds.split(",")])
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        return
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


def _bench_store(tmp: Path, n_benign=1500, n_attack=400, n_train=1000, n_val=300):
    q = n_attack // 4
    make_scan_flood_store(tmp / "store", n_benign=n_benign, n_scan=q, n_flood=q, n_mimic=n_attack - 2 * q, T=64,
                          seed=0, heavy_tailed_lengths=True)
    store = Store(tmp / "store")
    split = make_split(store.flows, seed=42, n_train=n_train, n_val=n_val)
    split.save(tmp / "split.npz")
    return store, split


def train_speed(repeats: int) -> dict:
    """Training flows/s per size and setting (module doc), interleaved, medians over ``repeats``."""
    dev = torch.device("cpu")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        store, split = _bench_store(Path(tmp))
        for size, kw in TRAIN_SIZES.items():
            model_kw, st = resolve_variant({**PAPER, **CURRENT_OT, **kw}, "full")
            norm, train, _ = load_training_data(store, split, model_kw, st, 42)
            n_steps = 4 if size == "paper" else 30

            def one(setting):
                torch.manual_seed(0)
                model = JanusModel(JanusConfig(n_flow_features=len(norm.feature_names), **model_kw))
                obj = JanusObjective(model, st, bf16=setting == "bf16")
                gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
                if setting == "before":
                    opt = torch.optim.AdamW(model.parameters(), lr=st.lr, weight_decay=st.weight_decay)
                else:
                    opt, ema = make_optimizer(model, st), WeightEMA(model, 0.999)
                sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(10, 1000))

                def steps(n):
                    for _ in range(n):
                        b = train.index(torch.randperm(len(train), generator=gen)[:st.batch_size]).trimmed()
                        if setting == "before":  # the loop of the previous train_janus
                            parts = obj(b, gen, rng, dev)
                            opt.zero_grad(set_to_none=True)
                            parts.total.backward()
                            torch.nn.utils.clip_grad_norm_(model.parameters(), st.grad_clip)
                            opt.step()
                            sched.step()
                        else:
                            train_step(obj, b, opt, sched, ema, gen, rng, dev)
                steps(2)  # warm-up (first-call allocations, the fused kernel's import)
                _, dt = _timed(lambda: steps(n_steps))
                return n_steps * st.batch_size / dt

            runs = {s: [] for s in ("before", "fp32", "bf16")}
            for _ in range(repeats):
                for setting in runs:
                    runs[setting].append(one(setting))
            med = {s: float(np.median(v)) for s, v in runs.items()}
            out[size] = {"runs": runs, "median": med}
            print(f"{size}: " + ", ".join(f"{s} {m:.0f} flows/s" for s, m in med.items())
                  + f"; bf16 / before {med['bf16'] / med['before']:.2f}x, fp32 / before {med['fp32'] / med['before']:.2f}x"
                  + f"  (runs: {({s: [round(x) for x in v] for s, v in runs.items()})})", flush=True)
    return out


def precision_check(seeds: list[int]) -> dict:
    """fp32 vs bf16 training of the demo-size model (same seed and steps), both evaluated in float32."""
    cfg = {**PAPER, **CURRENT_OT, **TRAIN_SIZES["demo/real"], "epochs": 1, "min_steps": 400, "lr": 0.002, "warmup_steps": 20,
           "patience": 100, "ema_decay": 0.999, "solver": "midpoint", "solver_steps": 4, "disc_times": [0.0, 0.5],
           "score_batch_size": 512}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, split = _bench_store(tmp)
        ids = np.concatenate([split.val, split.test])
        which = np.array(["val"] * len(split.val) + ["test"] * len(split.test))
        y = store.flows["is_attack"].to_numpy()[ids][which == "test"]
        for seed in seeds:
            for prec in ("fp32", "bf16"):
                path = train_janus(store.root, tmp / "split.npz", tmp / f"{prec}_{seed}", {**cfg, "precision": prec},
                                   "full", seed, progress=False)
                model, norm, meta = load_model(path)
                model_kw, st = resolve_variant(cfg, "full")
                _, _, val = load_training_data(store, split, model_kw, st, seed)
                val_loss = _evaluate(JanusObjective(model, st, bf16=False), val, st.batch_size, 0, torch.device("cpu"))[0]
                data = norm.transform(*load_raw(store, ids, True, True), len(ids))
                sc = JanusScorer(model, ScoreSettings("midpoint", 4, (0.0, 0.5), 512, 12345, False), None, progress=False)
                S = sc.score(data, flow_ids=ids)
                t = ScoreTable.from_flows(store.flows, ids, which, sc.score_names, S)
                a1 = make_aggregator("A1").fit_table(t).score_table(t)
                rows.append({"seed": seed, "precision": prec, "steps": meta["history"][-1]["step"],
                             "val_loss_fp32_eval": val_loss, "auroc_A1": auroc(y, a1[which == "test"]),
                             "auroc_terminal_norm": auroc(y, S[which == "test", 0])})
                print(rows[-1], flush=True)
    by = {(r["seed"], r["precision"]): r for r in rows}
    print("| seed | steps | val loss fp32 | val loss bf16 | Δ % | AUROC A1 fp32 | bf16 | Δ | terminal_norm fp32 | bf16 | Δ |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for seed in seeds:
        a, b = by[(seed, "fp32")], by[(seed, "bf16")]
        print(f"| {seed} | {a['steps']} | {a['val_loss_fp32_eval']:.4f} | {b['val_loss_fp32_eval']:.4f} | "
              f"{100 * (b['val_loss_fp32_eval'] / a['val_loss_fp32_eval'] - 1):+.2f} | {a['auroc_A1']:.4f} | "
              f"{b['auroc_A1']:.4f} | {b['auroc_A1'] - a['auroc_A1']:+.4f} | {a['auroc_terminal_norm']:.4f} | "
              f"{b['auroc_terminal_norm']:.4f} | {b['auroc_terminal_norm'] - a['auroc_terminal_norm']:+.4f} |")
    if len(seeds) > 1:
        f = [by[(s, "fp32")] for s in seeds]
        print(f"fp32 seed-to-seed ({seeds[0]} vs {seeds[1]}): val loss {100 * (f[1]['val_loss_fp32_eval'] / f[0]['val_loss_fp32_eval'] - 1):+.2f} %, "
              f"AUROC A1 {f[1]['auroc_A1'] - f[0]['auroc_A1']:+.4f}, terminal_norm "
              f"{f[1]['auroc_terminal_norm'] - f[0]['auroc_terminal_norm']:+.4f}")
    return {"rows": rows}


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
