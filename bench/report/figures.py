"""One seaborn figure per claim and profile: the claim's metric against epochs and against train
seconds, side by side, with 95% CI bands over seeds and the papers' numbers as reference lines."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.claims.stats import curve_rows, mean_ci  # noqa: E402

PROVENANCE_WORDS = {"V": "verified", "src": "authors' code", "R": "recalled, unverified",
                    "R?": "low confidence", "NF": "not found"}


def _t_band(values, bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float]:
    """The band over seeds: the same 95% t-interval as the verdicts (bench.claims.stats), clipped to
    the metric's range `bounds` (at 2 seeds the interval of an accuracy near 100% reaches past it)."""
    _, lo, hi = mean_ci(values)
    lo, hi = np.clip((lo, hi), *bounds)
    return float(lo), float(hi)


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def placeholder(path: Path, title: str, message: str) -> None:
    """A figure that says why there is nothing to plot (data unavailable, not run)."""
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", fontsize=12, weight="bold")
    ax.text(0.5, 0.3, "\n".join(textwrap.wrap(message, 100)), ha="center", va="top", fontsize=9)
    _save(fig, path)


AXIS_LABELS = {"epoch": "epochs", "step": "updates", "examples": "training examples seen",
               "train_seconds": "train seconds (steps only, all seeds in lock-step)"}


def claim_figure(path: Path, curves: pd.DataFrame, claim_id: str, statement: str, metric: dict[str, Any],
                 paper_numbers: list[dict[str, Any]], profile: str, x_axes: list[str], yscale: str = "linear",
                 exact: bool = False) -> None:
    """One panel per x-axis (by default epochs and train seconds), CI bands over seeds.
    The seeds of a run share the clock, so each point sits at the mean over seeds of its x.
    `exact`: the metric is computed exactly (labelled so, not with an importance-sampling K)."""
    rows = curve_rows(curves, metric["split"], metric["name"]).copy()
    for x in x_axes:
        rows[x] = rows.groupby(["label", "step"])[x].transform("mean")
    k = int(rows.eval_k.min()) if len(rows) else 0
    ylabel = f"{metric['split']} {metric['name']}" + (" (exact)" if exact else f" (IS, K={k})" if metric["name"] == "ll" else "")
    labels = list(dict.fromkeys(curves.label))
    palette = dict(zip(labels, sns.color_palette("colorblind", len(labels))))
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(x_axes), figsize=(6 * len(x_axes), 4.6), sharey=True, squeeze=False,
                             layout="constrained")  # makes room for the wrapped title
    axes = axes[0]
    for ax, x in zip(axes, x_axes):
        sns.lineplot(data=rows, x=x, y="value", hue="label", hue_order=labels, palette=palette,
                     errorbar=_t_band, marker="o", markersize=4, ax=ax, legend=ax is axes[0])
        for n in paper_numbers:
            ax.axhline(n["value"], ls="--", lw=1, color=palette.get(n.get("method"), "grey"))
        ax.set_xlabel(AXIS_LABELS[x])
        ax.set_ylabel(ylabel)
    for n in paper_numbers:
        axes[-1].annotate(f"paper {n.get('method', '')}: {n['value']} ({PROVENANCE_WORDS.get(n['provenance'], n['provenance'])})",
                         xy=(1.0, n["value"]), xycoords=("axes fraction", "data"), fontsize=7,
                         ha="right", va="bottom", color="dimgrey")
    trained = rows[rows.step > 0].value
    if yscale == "log":
        axes[0].set_yscale("log")
    elif len(trained):  # frame the learning curves, not the untrained starting point
        lo, hi = (trained.quantile(0.02), trained.max()) if metric["higher_is_better"] else (trained.min(), trained.quantile(0.98))
        for n in paper_numbers:
            lo, hi = min(lo, n["value"]), max(hi, n["value"])
        pad = 0.05 * (hi - lo) + 1e-9
        axes[0].set_ylim(lo - pad, hi + pad)
    if axes[0].get_legend() is not None:
        axes[0].legend(title=None, fontsize=8)
    fig.suptitle(f"{claim_id} [{profile} profile]\n" + "\n".join(textwrap.wrap(statement, 110)), fontsize=10)
    _save(fig, path)


def interpolation_figure(path: Path, table: pd.DataFrame, claim_id: str, labels: list[str], profile: str) -> None:
    """Keskar's parametric plot (bench.engine.interpolation): cross-entropy (log scale) and accuracy
    (100 (1 - error), percent) against alpha, train and test, the mean over seeds with its 95% t band,
    clipped to each metric's range (cross-entropy >= 0, accuracy in [0, 100]%); labels [at alpha 0,
    at alpha 1] mark their minimizers."""
    rows = table.assign(value=lambda t: t.value.where(t.metric == "loss", 100 * (1 - t.value)))
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    panels = [("loss", "cross-entropy (nats per case)", (0.0, np.inf)), ("error", "accuracy (%)", (0.0, 100.0))]
    for ax, (metric, ylabel, bounds) in zip(axes, panels):
        sns.lineplot(data=rows[rows.metric == metric], x="alpha", y="value", hue="split", style="split",
                     palette="colorblind", errorbar=functools.partial(_t_band, bounds=bounds), marker="o",
                     markersize=4, ax=ax, legend=ax is axes[0])
        for alpha, label in zip((0.0, 1.0), labels):
            ax.axvline(alpha, ls=":", lw=1, color="dimgrey")
            ax.annotate(label, xy=(alpha, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                        fontsize=8, color="dimgrey")
        ax.set_xlabel(f"alpha: (1 - alpha) x[{labels[0]}] + alpha x[{labels[1]}]")
        ax.set_ylabel(ylabel)
    axes[0].set_yscale("log")  # the loss grows by orders of magnitude away from the two minimizers
    seeds = table.seed.nunique()
    fig.suptitle(f"{claim_id} [{profile} profile]: 1-D interpolation between the final parameters, "
                 f"mean over {seeds} seeds with 95% t band (clipped to the metric's range)", fontsize=10)
    _save(fig, path)
