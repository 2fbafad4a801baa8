"""Per-dataset figures: ROC curves of JANUS vs the baselines, and the deployable score's distribution
for the test benign flows vs each attack class (matplotlib, Agg backend)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from nidsflow.evaluate.aggregators import DEPLOYABLE, AggregatorError, make_aggregator
from nidsflow.evaluate.baselines import DISPLAY
from nidsflow.evaluate.metrics import auroc, finite_scores, roc_points
from nidsflow.plotting import plt
from nidsflow.scores import ScoreTable

log = logging.getLogger(__name__)


def deployable_scores(table: ScoreTable, aggregator: str = DEPLOYABLE) -> np.ndarray:
    """The aggregated score of every row, the aggregator fitted on the table's benign val rows."""
    return make_aggregator(aggregator).fit_table(table).score_table(table)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> None:
    """``curves``: label -> (is_attack of the test rows, their scores)."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for label, (y, s) in curves.items():
        fpr, tpr = roc_points(y, s)
        ax.plot(fpr, tpr, lw=2.2 if label.startswith("JANUS") else 1.2,
                label=f"{label} (AUROC {100 * auroc(y, s):.1f})")
    ax.plot([1e-4, 1], [1e-4, 1], ls=":", c="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (test benign, log scale)")
    ax.set_ylabel("true-positive rate (test attacks)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: Panels per row of the faceted score-distribution figure.
FACET_COLUMNS = 4


def score_distribution_figure(table: ScoreTable, scores: np.ndarray, title: str,
                              threshold: float | None = None) -> plt.Figure:
    """Histograms (log x: d^2 spans decades) of the test scores, one panel per attack class with the test benign
    flows drawn in every panel for reference (an overlay of 20 classes in one legend cannot be read).

    The panels share their bins and axes, so classes compare across panels; a benign-only test set gives one
    panel. Returns the figure (its axes are the panels, in sorted class order)."""
    test = table.split == "test"
    s, cls = finite_scores(scores[test]), table.attack_class[test].astype(str)
    shift = max(0.0, -s.min()) + 1e-3  # log axis needs positive values
    v = s + shift
    bins = np.logspace(np.log10(v.min()), np.log10(v.max() * 1.01 + 1e-12), 50)
    benign = cls == "benign"
    classes = sorted(set(cls) - {"benign"}) or ["benign"]
    ncols = min(FACET_COLUMNS, len(classes))
    nrows = -(-len(classes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 0.4, 2.5 * nrows + 0.8), sharex=True,
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(classes):]:
        fig.delaxes(ax)  # the grid's unused cells: one panel per class, no empty frames
    for i, (ax, c) in enumerate(zip(axes.flat, classes)):
        if i + ncols >= len(classes):
            ax.xaxis.set_tick_params(labelbottom=True)  # no panel below it: its own x labels
        if benign.any():
            ax.hist(v[benign], bins=bins, density=True, color="0.6", alpha=0.6,
                    label=f"benign (n={int(benign.sum())})")
        if c != "benign":
            sel = cls == c
            ax.hist(v[sel], bins=bins, histtype="step", lw=1.6, density=True, color="C3",
                    label=f"{c} (n={int(sel.sum())})")
        if threshold is not None:
            ax.axvline(threshold + shift, c="k", ls="--", lw=1)
        ax.set_title(c if c == "benign" else f"{c} (n={int((cls == c).sum())})", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="major")
    fig.supxlabel("deployable score d² (Mahalanobis-OAS)" + (f" + {shift:.3g}" if shift > 1e-3 else ""), fontsize=9)
    fig.supylabel("density", fontsize=9)
    fig.suptitle(title + ("; grey: test benign, dashed: alert threshold (benign val)" if threshold is not None
                          else "; grey: test benign"), fontsize=10)
    fig.tight_layout()
    return fig


def plot_score_distribution(table: ScoreTable, scores: np.ndarray, path: str | Path, title: str,
                            threshold: float | None = None) -> None:
    """The faceted score-distribution figure (:func:`score_distribution_figure`) written to ``path``."""
    fig = score_distribution_figure(table, scores, title, threshold)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dataset_figures(ds: str, janus_file: str | Path | None, baseline_files: dict[str, str | Path],
                    roc_path: str | Path, dist_path: str | Path, fpr_target: float = 0.01) -> None:
    """Both figures of one dataset for one seed. Missing or empty score files are logged and left out."""
    from nidsflow.evaluate.metrics import threshold_at_fpr

    curves = {}
    janus = None
    if janus_file is not None and Path(janus_file).exists():
        janus = ScoreTable.load(janus_file)
        try:
            dj = deployable_scores(janus)
            test = janus.split == "test"
            curves["JANUS (A1)"] = (janus.is_attack[test], dj[test])
        except AggregatorError as e:
            log.warning("%s: JANUS deployable score not available (%s)", janus_file, e)
            janus = None
    else:
        log.warning("%s: no JANUS scores for the figures", ds)
    for method, f in baseline_files.items():
        if not Path(f).exists():
            log.warning("%s: %s missing; left out of the ROC figure", ds, f)
            continue
        t = ScoreTable.load(f)
        if len(t.flow_id) == 0:
            log.info("%s: baseline %s was not run; left out of the ROC figure", ds, method)
            continue
        test = t.split == "test"
        curves[DISPLAY.get(method, method)] = (t.is_attack[test], t.scores[test, 0])
    curves = {k: v for k, v in curves.items() if v[0].any() and (~v[0]).any()}
    if curves:
        plot_roc(curves, roc_path, f"{ds}: ROC, test benign vs all attacks")
    else:
        _placeholder(roc_path, f"{ds}: no scored run with both benign and attack test flows")
    if janus is not None:
        thr = threshold_at_fpr(dj[janus.split == "val"], fpr_target)
        plot_score_distribution(janus, dj, dist_path, f"{ds}: JANUS deployable score by class", thr)
    else:
        _placeholder(dist_path, f"{ds}: JANUS scores not available")


def _placeholder(path, text):
    """A figure that says what is missing (the rule's output must exist; the log says why)."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text + "\n(not run)", ha="center", va="center")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
