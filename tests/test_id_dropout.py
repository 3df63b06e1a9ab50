"""Id dropout (DropoutNet): content-only item vectors learn to land where full ones are."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tandemrec.run import Run
from tandemrec.towers.fusion import id_dropout
from tandemrec.towers.inference import embed
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds


def test_id_dropout_hides_only_the_id_and_never_an_items_last_modality() -> None:
    torch.manual_seed(0)
    present = torch.tensor([[True, True, True], [False, True, False], [True, False, True]]).repeat(300, 1)
    kept = id_dropout(present, 1, 0.5)
    assert torch.equal(kept[:, [0, 2]], present[:, [0, 2]])  # other modalities untouched
    assert kept[1::3, 1].all()  # the id is that item's only modality: kept
    share = kept[0::3, 1].float().mean().item()
    assert 0.4 < share < 0.6
    assert torch.equal(id_dropout(present, 1, 0.0), present)


def _content_to_full_cosine(run) -> float:
    """Mean cosine between each warm item's content-only vector (id hidden) and its full vector."""
    run = Run(run)
    model, content = run.model, run.content
    full = embed(model.item_tower, content.batches(64), torch.device("cpu"))
    content_only = embed(model.item_tower, dataclasses.replace(content, item_index=torch.zeros_like(content.item_index)).batches(64), torch.device("cpu"))
    warm = (content.item_index > 0).numpy()
    return float((full[warm] * content_only[warm]).sum(1).mean())


def _gap(run_dir, *overrides: str) -> float:
    """1 - the mean cosine between warm items' content-only and full vectors, after training."""
    from tandemrec.jobs import train

    plain = ("model.item.id_dropout=0", "train.content_loss_weight=0")  # then the change, if any
    train(tiny_config(*plain, *overrides, "behaviour.enabled=false"), run_dir, progress=False)
    return 1.0 - _content_to_full_cosine(run_dir)


@pytest.fixture(scope="module")
def gap_without_change(tmp_path_factory: pytest.TempPathFactory) -> float:
    return _gap(tmp_path_factory.mktemp("plain") / "run")


def test_content_only_vectors_are_closer_to_full_ones_with_id_dropout(tmp_path, gap_without_change) -> None:
    # Measured on this tiny shop, seeds 1 and 2: 0.75x and 0.54x the gap with id dropout 0.5. The content
    # loss (weight 3) is no such change: it trains content vectors to find the users' items, and left the
    # gap at 1.15-1.5x on seeds 0-2, so it is not asserted here.
    gap = _gap(tmp_path / "run", "model.item.id_dropout=0.5")
    assert np.isfinite(gap)
    assert gap < 0.8 * gap_without_change, (gap, gap_without_change)
