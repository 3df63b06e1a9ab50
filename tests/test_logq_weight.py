"""train.logq_weight: how much of in-batch sampling's popularity bias the loss takes back out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config


@pytest.mark.slow  # trains three models
def test_a_larger_logq_weight_recommends_more_popular_items(tmp_path: Path) -> None:
    """Without logQ in-batch negatives push popular items down; weight 1 takes that out, and above 1 the
    scores keep a popularity prior: each step up shows users more popular items."""
    from tandemrec.jobs import train
    from tandemrec.run import Run
    from tandemrec.run_embeddings import embed_run

    popularity = []
    for name, setting in (("off", "train.logq=false"), ("one", "train.logq_weight=1"), ("three", "train.logq_weight=3")):
        train(tiny_config(setting, "train.epochs=2"), tmp_path / name, progress=False)
        run = Run(tmp_path / name)
        vectors = embed_run(run)
        frequencies = run.data.item_frequencies()[1:]
        top = np.argsort(-(vectors.users @ vectors.items.T), axis=1)[:, :10]
        popularity.append(float(frequencies[top].mean()))
    assert popularity[0] < popularity[1] < popularity[2], popularity
