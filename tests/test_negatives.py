"""Mixed and hard negatives: what is drawn, the sampling correction, and that training with them learns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from tandemrec.training.negatives import HardNegativeMiner, candidate_log_q, mixed_negatives


def test_mixed_negatives_are_distinct_items_of_the_pool() -> None:
    pool = np.array([3, 5, 8, 13, 21])
    drawn = mixed_negatives(pool, 4, np.random.default_rng(0))
    assert len(drawn) == 4 and len(set(drawn)) == 4 and set(drawn) <= set(pool)
    assert len(mixed_negatives(pool, 50, np.random.default_rng(0))) == 5  # never more than the pool
    assert len(mixed_negatives(pool, 0, np.random.default_rng(0))) == 0


def test_candidate_log_q_is_the_mixture_of_batch_and_uniform_sampling() -> None:
    frequencies = np.array([0, 5, 2, 0])  # index 0 is the unknown item; item 3 has no training event
    pool = np.array([1, 2])
    log_q = candidate_log_q(frequencies, pool, batch_size=10, count=5)
    # Each item counted once more: f + 1 = 1, 6, 3, 1 of 11; q(i) = (10 * (f_i + 1) / 11 + 5 * [i in pool] / 2) / 15
    expected = [(10 * f / 11 + 5 * uniform) / 15 for f, uniform in ((1, 0), (6, 0.5), (3, 0.5), (1, 0))]
    assert np.exp(log_q) == pytest.approx(expected)
    assert np.exp(log_q).sum() == pytest.approx(1.0)
    in_batch = candidate_log_q(frequencies, pool, batch_size=10, count=0)
    assert np.exp(in_batch) == pytest.approx([1 / 11, 6 / 11, 3 / 11, 1 / 11])


def test_hard_negatives_are_top_scored_unseen_items_and_never_the_positive() -> None:
    items = np.eye(6, dtype=np.float32)  # item index j + 1 points along axis j
    user = np.array([[0.9, 0.8, 0.7, 0.1, 0.0, 0.0]], dtype=np.float32)
    miner = HardNegativeMiner(n_users=3, depth=2)
    miner.refresh(np.array([2]), user, items, [np.array([1])])  # user 2 already had item 1
    assert miner.lists[2].tolist() == [2, 3]  # items 2 and 3 score next; item 1 was seen
    assert miner.lists[1].tolist() == [0, 0]  # users not refreshed have none
    rng = np.random.default_rng(0)
    for _ in range(20):
        drawn = miner.draw(np.array([2, 2]), np.array([2, 3]), 5, rng)
        assert set(drawn) <= {2, 3}
    assert set(miner.draw(np.array([2]), np.array([2]), 5, np.random.default_rng(1))) <= {3}
    with pytest.raises(ValueError, match="hard_negative_depth"):
        HardNegativeMiner(3, 0)


@pytest.mark.slow  # trains three runs
def test_training_with_mixed_and_hard_negatives_learns_and_resumes_exactly(tmp_path: Path) -> None:
    from tandemrec.jobs import train

    settings = ("train.mixed_negatives=32", "train.hard_negatives=32", "train.hard_negative_depth=10")
    result = train(tiny_config(*settings), tmp_path / "run", progress=False)
    assert result.epochs_run == 2
    # Chance on 120 items is 0.08; plain in-batch training reaches ~0.55 on this shop.
    assert result.best_recall > 0.3
    # Epoch 3 draws from the lists mined after epoch 2: resumed, they come from the checkpoint.
    resumed = train(tiny_config(*settings, "train.epochs=3"), tmp_path / "run", progress=False, resume=True)
    straight = train(tiny_config(*settings, "train.epochs=3"), tmp_path / "straight", progress=False)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in straight.history], rel=1e-6)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("train.mixed_negatives=-1", "'train.mixed_negatives' must be an integer >= 0"),
        ("train.batch_size=0", "'train.batch_size' must be an integer >= 1"),
        ("train.logq_weight=0", "'train.logq_weight' must be a number > 0"),
        ('train.lr_schedule="linear"', "'train.lr_schedule' must be one of"),
    ],
)
def test_bad_training_settings_are_refused_by_name(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(setting)
