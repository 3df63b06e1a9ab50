"""Plots written as PNG files: bar charts for evaluation and ablation results, the map of user segments."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tandemrec.io.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Save a figure atomically as PNG and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def grouped_bars(
    groups: list[str],
    series: dict[str, list[float]],
    title: str,
    path: Path,
    errors: dict[str, list[float]] | None = None,
) -> None:
    """One cluster of bars per group, one bar per series, saved atomically.

    `errors` (same shape as `series`) draws ±error bars, so that means over seeds show their spread.
    """
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    # The legend sits right of the axes, where it hides no bar.
    fig, ax = _pyplot().subplots(figsize=(max(6, len(groups) * 0.8) + 1.5, 4))
    for i, (label, values) in enumerate(series.items()):
        yerr = errors[label] if errors is not None else None
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width=width, label=label, yerr=yerr, capsize=3)
    ax.set_xticks(x, groups, rotation=45, ha="right")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    _save(fig, path)


def segment_map(
    points: np.ndarray, segments: np.ndarray, centres: np.ndarray, names: Sequence[str], title: str, path: Path
) -> None:
    """2-D points (n, 2) coloured by segment, each segment's centre (its members' mean) marked with its number."""
    fig, ax = _pyplot().subplots(figsize=(8, 6.5))
    colours = _pyplot().get_cmap("tab20")
    for s, name in enumerate(names):
        mine = segments == s
        ax.scatter(points[mine, 0], points[mine, 1], s=6, alpha=0.5, color=colours(s % 20), label=f"{s}: {name}")
        ax.scatter(*centres[s], marker="X", s=90, color=colours(s % 20), edgecolors="black", linewidths=0.8)
        ax.annotate(str(s), centres[s], fontsize=9, fontweight="bold", xytext=(4, 4), textcoords="offset points")
    ax.set_title(title)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    _save(fig, path)


def reliability_plot(curve: dict[str, list[float]], title: str, path: Path) -> None:
    """Reliability diagram (`retrieval.calibration.reliability`): observed rate against mean prediction per
    bin, marker area by the bin's pair count, with the diagonal of perfect calibration."""
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    count = np.asarray(curve["count"], dtype=float)
    ax.plot(curve["predicted"], curve["observed"], marker="o", label="model")
    ax.scatter(curve["predicted"], curve["observed"], s=20 + 200 * count / max(count.sum(), 1.0), alpha=0.4)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)
