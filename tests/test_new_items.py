"""New items placed by the fitted offset: the fast exposure sweep, the offset itself, and one path for all."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from tandemrec.retrieval.cold_start import cold_rows, exact_topk
from tandemrec.run import Run
from tandemrec.towers.inference import embed
from tandemrec.training.new_items import _ColdShare, fit_new_item_placement
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow  # trains a model: minutes, not seconds


def test_cold_share_by_shift_equals_ranking_the_whole_moved_catalogue() -> None:
    rng = np.random.default_rng(0)
    users = rng.normal(size=(40, 8)) + 2 * np.eye(8)[0]
    items = rng.normal(size=(30, 8))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    cold, offset = np.array([3, 7, 11, 20, 25]), np.eye(8)[0]  # the offset points toward the users
    seen = [rng.choice(30, 4, replace=False) for _ in range(40)]
    share = _ColdShare(users, items, cold, offset, seen)
    shares = []
    for shift in (-1.0, -0.3, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0):
        moved = items.copy()
        moved[cold] = F.normalize(torch.as_tensor(items[cold] + shift * offset), dim=-1).numpy()
        top = exact_topk(users, moved, np.arange(30), seen, 10)
        assert share(shift) == pytest.approx(np.isin(top, cold).mean()), shift
        shares.append(share(shift))
    assert shares[0] < 0.1 < 0.3 < shares[-1]  # the sweep does move cold items on and off the first page


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny shop trained with a fifth of its items held out of training (strict item-cold), indexed."""
    from tandemrec.jobs import build_index, train

    run = tmp_path_factory.mktemp("new-items") / "run"
    train(tiny_config("data.split.cold_items=0.2", "behaviour.enabled=false"), run, progress=False)
    build_index(run)
    return run


def test_training_saves_the_event_weighted_mean_id_offset_times_the_chosen_shift(cold_run: Path) -> None:
    run = Run(cold_run)
    model, content, data = run.model, run.content, run.data
    saved = model.item_tower.new_item_offset.clone()
    assert saved.norm() > 0
    placement = fit_new_item_placement(model, content, data)
    assert torch.allclose(placement.offset, saved, atol=1e-6)  # what training saved is what the fit gives

    cpu = torch.device("cpu")
    full = embed(model.item_tower, content.batches(64), cpu).double()
    hidden = dataclasses.replace(content, item_index=torch.zeros_like(content.item_index))
    content_only = embed(model.item_tower, hidden.batches(64), cpu).double()
    counts = torch.as_tensor(data.item_frequencies()[1:])
    by_hand = (counts[:, None] * (full - content_only)).sum(0) / counts.sum()  # cold rows: count 0, no weight
    assert torch.allclose(saved.double(), placement.shift * by_hand, atol=1e-5)


def test_the_chosen_shift_brings_validation_exposure_toward_one(cold_run: Path) -> None:
    from tandemrec.jobs import evaluate_run

    run = Run(cold_run)
    placement = fit_new_item_placement(run.model, run.content, run.data)
    assert placement.validation_exposure is not None
    unplaced = fit_new_item_placement(run.model, run.content, run.data, target_exposure=0.0)
    assert unplaced.shift == 0.0 and unplaced.offset.norm() == 0
    measured = evaluate_run(cold_run, part="valid")["cold_exposure"]["tandemrec"]
    assert measured == pytest.approx(placement.validation_exposure, rel=1e-9)  # the run's exact (Flat) index agrees
    counts = run.data.item_frequencies()[1:]
    assert len(cold_rows(counts)) >= 24
    assert abs(np.log(placement.validation_exposure)) < np.log(2)  # within [0.5, 2] of what is wanted


def test_an_added_item_lands_where_the_same_held_out_item_does(cold_run: Path) -> None:
    from tandemrec.retrieval.retriever import Retriever

    retriever = Retriever.load(cold_run)
    data = Run(cold_run).data
    cold_id = data.vocabs.items.ids[1 + int(cold_rows(data.item_frequencies()[1:])[0])]
    row = data.dataset.items.filter(pl.col("item_id") == cold_id).with_columns(pl.lit("copy-of-" + cold_id).alias("item_id"))
    retriever.add_items(row, image_root=data.dataset.root)
    added, held_out = retriever.index.position(["copy-of-" + cold_id, cold_id])
    vectors = retriever.index.vectors(np.array([added, held_out]))
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
    assert retriever.model.item_tower.new_item_offset.norm() > 0  # and it was moved, not left content-only
