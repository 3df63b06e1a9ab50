"""Bar charts written as PNG files, for evaluation and ablation results."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tandemrec.data.atomic import atomic_path


def grouped_bars(groups: list[str], series: dict[str, list[float]], title: str, path: Path) -> None:
    """One cluster of bars per group, one bar per series, saved atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, len(groups) * 0.8), 4))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width=width, label=label)
    ax.set_xticks(x, groups, rotation=45, ha="right")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
