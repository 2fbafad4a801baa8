"""The summary page's figures and the sentences under them, drawn from the tables' numbers.

Inputs are the rows of ``results/{study}/tables/intervals.csv`` (one per dataset, method and category, written
by rule ``tables``: AUROC with its 95 % bootstrap interval, AUPRC, and the operating point at the threshold
fitted on benign val for ``evaluate.fpr_target``). An older results folder has no intervals file:
:func:`intervals_from_within` rebuilds what it can (the AUROC means) from ``within.csv`` and leaves the
interval, AUPRC and operating-point columns empty.

Only numpy, pandas and matplotlib are imported here: the report rule's environment (workflow/envs/report.yaml)
has no torch or scikit-learn.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from nidsflow.plotting import plt

log = logging.getLogger(__name__)

#: Columns of intervals.csv, in order.
INTERVAL_COLUMNS: tuple[str, ...] = (
    "dataset", "method", "category", "n_benign", "n_attack", "n_seeds", "auroc", "auroc_lo", "auroc_hi", "auprc",
    "det_rate", "fpr_realised", "fpr_target", "in_median", "group_by",
)
OVERALL = "overall"
_NUMERIC = ("n_benign", "n_attack", "n_seeds", "auroc", "auroc_lo", "auroc_hi", "auprc", "det_rate", "fpr_realised",
            "fpr_target")
#: within.csv columns that are not attack categories.
_SUMMARY_COLUMNS = {"per-class median"}


class SummaryInputError(ValueError):
    """An input file of the summary page cannot be read (the message names the file)."""


def read_intervals(path: str | Path) -> pd.DataFrame:
    """intervals.csv as a frame: numeric columns as floats (AUROC etc. as fractions), ``in_median`` as bool.

    A missing column is an error naming the file and the columns; comment lines (``#``) are skipped."""
    try:
        df = pd.read_csv(path, comment="#")
    except pd.errors.EmptyDataError:  # no dataset configured (e.g. a HIKARI-only study): no rows
        return empty_intervals()
    except (OSError, ValueError) as e:
        raise SummaryInputError(f"{path}: not a readable intervals table ({e})") from e
    missing = [c for c in INTERVAL_COLUMNS if c not in df.columns]
    if missing:
        raise SummaryInputError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(INTERVAL_COLUMNS)})")
    df = df.copy()
    for c in _NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in ("auroc", "auroc_lo", "auroc_hi", "auprc"):  # percent written by mistake: back to fractions
        if df[c].max(skipna=True) > 1.0 + 1e-9:
            df[c] = df[c] / 100.0
    df["in_median"] = df["in_median"].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))
    for c in ("dataset", "method", "category", "group_by"):
        df[c] = df[c].astype(str)
    return df[list(INTERVAL_COLUMNS)]


def empty_intervals() -> pd.DataFrame:
    """The intervals schema without rows."""
    return pd.DataFrame({c: pd.Series(dtype=bool if c == "in_median" else float if c in _NUMERIC else object)
                         for c in INTERVAL_COLUMNS})


def intervals_from_within(path: str | Path) -> pd.DataFrame:
    """The intervals schema rebuilt from an older ``within.csv`` (AUROC means only; the rest NaN)."""
    try:
        w = pd.read_csv(path, comment="#")
    except pd.errors.EmptyDataError:  # the tables of a study without datasets: provenance only
        return empty_intervals()
    except (OSError, ValueError) as e:
        raise SummaryInputError(f"{path}: not a readable within table ({e})") from e
    need = {"dataset", "method", "column", "auroc_mean", "n_seeds"}
    if not need <= set(w.columns):
        raise SummaryInputError(f"{path}: missing column(s) {', '.join(sorted(need - set(w.columns)))}")
    w = w[~w["column"].isin(_SUMMARY_COLUMNS)]
    out = pd.DataFrame({"dataset": w["dataset"].astype(str), "method": w["method"].astype(str),
                        "category": w["column"].astype(str),
                        "n_seeds": pd.to_numeric(w["n_seeds"], errors="coerce"),
                        "auroc": pd.to_numeric(w["auroc_mean"], errors="coerce")})
    for c in INTERVAL_COLUMNS:
        if c not in out:
            out[c] = np.nan
    out["in_median"] = out["category"] != OVERALL
    out["group_by"] = ""
    return out[list(INTERVAL_COLUMNS)].reset_index(drop=True)


def auroc_matrix(df: pd.DataFrame, by: str = "dataset", dataset: str | None = None) -> pd.DataFrame:
    """Methods x columns of AUROC: ``by="dataset"`` the overall AUROC per dataset, ``by="category"`` the
    per-class AUROC on ``dataset``. Rows sorted by their mean over the columns (best first), NaN = not run."""
    if by == "dataset":
        sub = df[df["category"] == OVERALL]
        m = sub.pivot_table(index="method", columns="dataset", values="auroc", aggfunc="first", dropna=False)
    else:
        sub = df[(df["dataset"] == dataset) & (df["category"] != OVERALL)]
        m = sub.pivot_table(index="method", columns="category", values="auroc", aggfunc="first", dropna=False)
    m = m.dropna(how="all")
    if m.empty:
        return m
    return m.loc[m.mean(axis=1, skipna=True).sort_values(ascending=False, kind="stable").index]


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def plot_heatmap(m: pd.DataFrame, path: str | Path, title: str, col_counts: dict[str, str] | None = None,
                 few: set | frozenset = frozenset()) -> None:
    """AUROC (%) of methods (rows) x columns, every cell printed, the best of each column boxed and bold.

    ``col_counts``: column -> a count shown under its name (e.g. the test flows); columns in ``few`` (too few
    test flows to rank on) get a grey, italic label. Empty ``m``: a placeholder."""
    if m.empty:
        placeholder(path, title + ": no AUROC to draw")
        return
    vals = m.to_numpy(dtype=float)
    h, w = vals.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 * w + 3.4), max(2.6, 0.32 * h + 1.6)))
    masked = np.ma.masked_invalid(100 * vals)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.88")
    im = ax.imshow(masked, cmap=cmap, vmin=max(0.0, np.nanmin(100 * vals) if np.isfinite(vals).any() else 0), vmax=100,
                   aspect="auto")
    for j in range(w):
        col = vals[:, j]
        best = np.nanmax(col) if np.isfinite(col).any() else None
        for i in range(h):
            v = col[i]
            is_best = best is not None and np.isfinite(v) and v >= best - 1e-12
            dark = np.isfinite(v) and im.norm(100 * v) < 0.55
            ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=8, color="white" if dark else "black",
                    fontweight="bold" if is_best else "normal")
            if is_best:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    labels = [f"{c}\n{col_counts[c]}" if col_counts and c in col_counts else str(c) for c in m.columns]
    ax.set_xticks(range(w), labels, rotation=30 if w > 4 else 0, ha="right" if w > 4 else "center", fontsize=8)
    for lab, c in zip(ax.get_xticklabels(), m.columns):
        if c in few:
            lab.set_color("0.55")
            lab.set_fontstyle("italic")
    ax.set_yticks(range(h), [str(r) for r in m.index], fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="AUROC (%)")
    fig.tight_layout()
    _save(fig, path)


def heatmap_sentence(m: pd.DataFrame, what: str = "dataset", few: set | frozenset = frozenset()) -> str:
    """Which method leads each column of ``m`` and by how much over the next one (AUROC points); columns in
    ``few`` (too few test flows) are named, not ranked."""
    if m.empty:
        return "No AUROC was computed, so no method leads."
    parts, wins = [], {}
    for col in [c for c in m.columns if c not in few]:
        s = m[col].dropna().sort_values(ascending=False, kind="stable")
        if s.empty:
            continue
        wins[s.index[0]] = wins.get(s.index[0], 0) + 1
        if len(s) > 1:
            parts.append(f"{col}: {s.index[0]} ({_fmt(s.iloc[0])}, +{100 * (s.iloc[0] - s.iloc[1]):.1f} over "
                         f"{s.index[1]})")
        else:
            parts.append(f"{col}: {s.index[0]} ({_fmt(s.iloc[0])}, the only method run)")
    top = max(wins.items(), key=lambda kv: kv[1]) if wins else None
    n_cols = sum(1 for c in m.columns if c not in few and m[c].notna().any())
    lead = f"{top[0]} leads {top[1]} of {n_cols} {what}{'s' if n_cols != 1 else ''}" if top else "No method leads"
    text = f"{lead} (best by overall AUROC, %)" + (": " + "; ".join(parts) if parts else "") + "."
    skipped = [str(c) for c in m.columns if c in few]
    if skipped:
        text += f" Not ranked, too few test flows (greyed): {', '.join(skipped)}."
    return text


def plot_intervals(df: pd.DataFrame, path: str | Path, title: str) -> None:
    """Each method's overall AUROC (dot) with its 95 % interval (bar) on one dataset, best on top; methods
    without an interval get a dot only. ``df``: that dataset's overall rows of intervals.csv."""
    d = df.dropna(subset=["auroc"]).sort_values("auroc", ascending=True, kind="stable")
    if d.empty:
        placeholder(path, title + ": no AUROC to draw")
        return
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.3 * len(d) + 1.4)))
    y = np.arange(len(d))
    a, lo, hi = (100 * d[c].to_numpy(float) for c in ("auroc", "auroc_lo", "auroc_hi"))
    has = np.isfinite(lo) & np.isfinite(hi)
    janus = d["method"].str.startswith("JANUS").to_numpy()
    ax.hlines(y[has], lo[has], hi[has], color="0.35", lw=2)
    ax.plot(a[~janus], y[~janus], "o", color="C0", ms=6)
    ax.plot(a[janus], y[janus], "D", color="C3", ms=7, label="JANUS")
    ax.set_yticks(y, d["method"].tolist(), fontsize=8)
    ax.set_xlabel("test AUROC (%)" + ("; bar: 95 % bootstrap interval" if has.any() else "; no intervals available"))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def interval_sentence(df: pd.DataFrame, dataset: str) -> str:
    """Who leads on ``dataset`` by overall AUROC, by how much, and whether the first two intervals overlap."""
    d = df.dropna(subset=["auroc"]).sort_values("auroc", ascending=False, kind="stable")
    if d.empty:
        return f"No method has an AUROC on {dataset}."
    r1 = d.iloc[0]
    if len(d) == 1:
        return f"On {dataset} only {r1['method']} was scored (AUROC {_fmt(r1['auroc'])})."
    r2 = d.iloc[1]
    text = (f"On {dataset}, {r1['method']} leads with AUROC {_fmt(r1['auroc'])}{_interval(r1)}, "
            f"{100 * (r1['auroc'] - r2['auroc']):.1f} points above {r2['method']} "
            f"({_fmt(r2['auroc'])}{_interval(r2)}); ")
    if not all(np.isfinite([r1["auroc_lo"], r1["auroc_hi"], r2["auroc_lo"], r2["auroc_hi"]])):
        return text + "the 95 % intervals are missing, so how sure this ranking is cannot be said."
    overlap = r1["auroc_lo"] <= r2["auroc_hi"] and r2["auroc_lo"] <= r1["auroc_hi"]
    text += ("their 95 % intervals overlap, so the lead is not established by this test set."
             if overlap else "their 95 % intervals do not overlap.")
    if str(r1.get("group_by", "")) == "source_file":
        text += " The intervals resample whole captures (the split is by capture)."
    return text


def _interval(r) -> str:
    if np.isfinite(r["auroc_lo"]) and np.isfinite(r["auroc_hi"]):
        return f" [{_fmt(r['auroc_lo'])}, {_fmt(r['auroc_hi'])}]"
    return ""


def operating_point_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The overall rows with an operating point: dataset, method, det_rate, fpr_realised, fpr_target."""
    d = df[(df["category"] == OVERALL)].dropna(subset=["det_rate", "fpr_realised"])
    return d[["dataset", "method", "det_rate", "fpr_realised", "fpr_target", "n_benign", "n_attack"]]


def plot_operating_points(df: pd.DataFrame, path: str | Path, title: str) -> None:
    """Detection rate against realised test false-positive rate of every method on one dataset, with the
    target rate as a dashed line (a method right of it alerts more than it was set to on benign val)."""
    d = operating_point_rows(df)
    if d.empty:
        placeholder(path, title + ": no operating point in the tables")
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, (_, r) in enumerate(d.iterrows()):
        j = r["method"].startswith("JANUS")
        ax.plot(100 * r["fpr_realised"], 100 * r["det_rate"], "D" if j else "o", color="C3" if j else f"C{i % 10}",
                ms=7 if j else 5)
        ax.annotate(r["method"], (100 * r["fpr_realised"], 100 * r["det_rate"]), fontsize=7,
                    xytext=(3, 2), textcoords="offset points")
    target = d["fpr_target"].dropna()
    if len(target):
        ax.axvline(100 * target.iloc[0], ls="--", c="k", lw=1, label=f"target {100 * target.iloc[0]:g} % (benign val)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("realised false-positive rate on test benign (%)")
    ax.set_ylabel("detection rate on test attacks (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


#: Other spellings of the loss columns a per-epoch log may use (a JANUS loss file may change its header).
_LOSS_ALIASES = {"train_loss": ("train", "loss_train", "benign_train_loss"),
                 "val_loss": ("val", "loss_val", "valid_loss", "benign_val_loss")}


def read_loss_curve(path: str | Path) -> pd.DataFrame | None:
    """Per-epoch benign losses from a JANUS train_log.tsv (epoch, train_loss, val_loss, ...) or a baseline's
    auroc.json (``loss_history``: part -> list of {epoch, train_loss, val_loss}); None when it holds none.

    Returns columns epoch, train_loss, val_loss and ``part`` (the network, for baselines with several)."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        if p.suffix == ".json":
            import json

            d = json.loads(p.read_text())
            hist = d.get("loss_history") or d.get("history") or {}
            if isinstance(hist, list):  # one network's epochs
                hist = {"": hist}
            frames = [pd.DataFrame(rows).assign(part=part) for part, rows in hist.items() if rows]
            df = pd.concat(frames, ignore_index=True) if frames else None
        else:
            df = pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",", comment="#").assign(part="")
    except (OSError, ValueError) as e:
        log.warning("%s: per-epoch losses not readable (%s); left out of the learning curves", p, e)
        return None
    if df is None:
        return None
    df = df.rename(columns={a: c for c, aliases in _LOSS_ALIASES.items() for a in aliases if c not in df})
    if "epoch" not in df or not ({"train_loss", "val_loss"} & set(df.columns)):
        return None
    for c in ("train_loss", "val_loss"):
        df[c] = pd.to_numeric(df[c], errors="coerce") if c in df else np.nan
    return df[["part", "epoch", "train_loss", "val_loss"]]


def plot_learning_curves(curves: dict[str, pd.DataFrame | None], path: str | Path, title: str) -> list[str]:
    """One small panel per model: benign train (solid) and val (dashed) loss per epoch, the best val epoch
    marked. Models without recorded losses are listed in the returned names, not drawn."""
    have = {k: v for k, v in curves.items() if v is not None and len(v)}
    missing = [k for k in curves if k not in have]
    if not have:
        placeholder(path, title + ": no per-epoch losses recorded")
        return missing
    ncols = min(4, len(have))
    nrows = -(-len(have) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows + 0.5), squeeze=False)
    for ax in axes.flat[len(have):]:
        fig.delaxes(ax)
    for ax, (name, df) in zip(axes.flat, have.items()):
        for k, (part, g) in enumerate(df.groupby("part", sort=False)):
            suffix = f" {part}" if part else ""
            ax.plot(g["epoch"], g["train_loss"], "-", color=f"C{2 * k}", lw=1.3, label=f"train{suffix}")
            ax.plot(g["epoch"], g["val_loss"], "--", color=f"C{2 * k + 1}", lw=1.3, label=f"val{suffix}")
            if g["val_loss"].notna().any():
                b = g.loc[g["val_loss"].idxmin()]
                ax.plot(b["epoch"], b["val_loss"], "*", color="k", ms=8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title + " (benign train / val loss; *: best val epoch, the weights kept)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return missing


def plot_alerts(alerts: list[dict], path: str | Path, title: str) -> None:
    """One row per alerted flow: its score axes' shares of d^2 (left) and the DFM head's least likely
    (packet, channel) cells (right, contribution to disc_nll_total). ``alerts``: :mod:`nidsflow.top_alerts`
    records."""
    if not alerts:
        placeholder(path, title + ": no JANUS run on this dataset")
        return
    n = len(alerts)
    fig, axes = plt.subplots(n, 2, figsize=(10, 1.9 * n + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for (ax, ax2), a in zip(axes, alerts):
        share = {k: v for k, v in a["axis_share"].items() if v is not None and np.isfinite(v)}
        names = list(share)
        vals = np.array([share[k] for k in names])
        ax.barh(range(len(names)), 100 * vals, color=["C3" if v > 0 else "C0" for v in vals])
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, c="k", lw=0.6)
        ax.set_title(f"#{a['rank']} {a['flow']} ({a['category']}, {a['n_packets']} pkts): d² {a['d2']:.3g}",
                     fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("share of d² (%)", fontsize=7)
        cells = a.get("dfm_top") or []
        if cells:
            lab = [f"pkt {c['packet']} {c['channel']}" for c in cells]
            ax2.barh(range(len(cells)), [c["contribution"] for c in cells], color="C1")
            ax2.set_yticks(range(len(cells)), lab, fontsize=7)
            ax2.invert_yaxis()
            ax2.set_xlabel("contribution to disc_nll_total", fontsize=7)
            ax2.tick_params(axis="x", labelsize=7)
        else:
            ax2.axis("off")
            ax2.text(0.5, 0.5, "no discrete head\n(no packet cells)", ha="center", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def placeholder(path: str | Path, text: str) -> None:
    """A small figure that says what is missing (the rule's output must exist)."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    _save(fig, path, dpi=90)


def _save(fig, path: str | Path, dpi: int = 100) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
