"""Figures of the HIKARI branch: confusion matrix, reliability curve, meta-probability distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nidsflow.plotting import plt


def confusion_matrix_plot(y: np.ndarray, pred: np.ndarray, out_png, title: str = "") -> np.ndarray:
    """2x2 confusion matrix (rows = true class, columns = predicted), counts and row percentages."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            frac = cm[i, j] / max(cm[i].sum(), 1)
            ax.text(j, i, f"{cm[i, j]}\n({100 * frac:.1f}%)", ha="center", va="center",
                    color="white" if frac > 0.5 else "black", fontsize=11)
    ax.set_xticks([0, 1], ["normal", "attack"])
    ax.set_yticks([0, 1], ["normal", "attack"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix", fontsize=9)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return cm


def calibration_plot(curve: dict, brier: float, ece: float, out_png) -> None:
    """Reliability diagram (mean predicted probability vs observed attack fraction per bin) + bin counts."""
    conf = np.asarray(curve["mean_predicted"], float)
    acc = np.asarray(curve["fraction_positive"], float)
    count = np.asarray(curve["count"], float)
    edges = np.asarray(curve["bin_edges"], float)
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5.2, 6.0), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ok = count > 0
    ax.plot(conf[ok], acc[ok], "o-", color="tab:blue", label="meta ensemble (test)")
    ax.set_ylabel("observed fraction of attacks")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Calibration (uniform bins): Brier {brier:.4f}, ECE {ece:.4f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    axh.bar((edges[:-1] + edges[1:]) / 2, count, width=np.diff(edges) * 0.9, color="tab:gray")
    axh.set_yscale("log")
    axh.set_xlabel("predicted attack probability")
    axh.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def probability_distributions_plot(y: np.ndarray, prob: np.ndarray, threshold: float, out_png) -> None:
    """Histograms of the meta probability for normal and attack test rows, with the operating threshold."""
    bins = np.linspace(0, 1, 51)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.hist(prob[y == 0], bins=bins, alpha=0.6, color="tab:green", label=f"normal (n={int((y == 0).sum())})")
    ax.hist(prob[y == 1], bins=bins, alpha=0.6, color="tab:red", label=f"attack (n={int((y == 1).sum())})")
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("meta-ensemble attack probability (test split)")
    ax.set_ylabel("rows (log)")
    ax.set_title("Meta probability distributions by true class", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
