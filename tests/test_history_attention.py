"""The attention history encoder: the history read as a sequence (newest first, with time gaps), a model
that uses it, and one that learns with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from tandemrec.data.batch import UNKNOWN_GAP
from tandemrec.data.features import EventLog, UserFeatures, gap_buckets
from tandemrec.errors import ConfigError
from tandemrec.towers.config import Cardinalities, UserTowerConfig
from tandemrec.towers.user_tower import UserTower

MINUTE = 60_000_000  # microseconds
SIZES = Cardinalities(users=6, items=10, categories=3, user_attributes={})
ATTENTION = UserTowerConfig(embedding_dim=8, hidden=[16], history_len=3, history_encoder="attention")


def sequence_features(history_len: int = 3) -> UserFeatures:
    # user 1: items 4, 5, 6, 7 at minutes 0, 1, 3, 7; user 2: item 8; users 3+: nothing
    log = EventLog(
        np.array([1, 1, 1, 1, 2]), np.array([4, 5, 6, 7, 8]), np.array([0, 1, 3, 7, 5]) * MINUTE
    )
    return UserFeatures(log, np.zeros((6, 0), dtype=np.int64), [], history_len, sequence=True)


def by_key(batch) -> dict[str, list[list[int]]]:
    return {key: [t.tolist() for t in jagged.to_dense()] for key, jagged in batch.features.to_dict().items()}


def test_positions_hold_the_newest_items_first_and_their_time_gaps():
    features = by_key(sequence_features().batch(np.array([1, 2, 3])))
    assert [features[f"history_{j}"] for j in range(3)] == [[[7], [8], []], [[6], [], []], [[5], [], []]]
    # minutes before the newest event: 0, 4, 6 -> floor(log2(1 + m)): 0, 2, 2
    assert [features[f"history_gap_{j}"] for j in range(3)] == [[[0], [0], []], [[2], [], []], [[2], [], []]]


def test_a_time_cut_hides_later_events_from_the_sequence():
    features = by_key(sequence_features().batch(np.array([1]), np.array([3 * MINUTE])))
    assert [features[f"history_{j}"] for j in range(3)] == [[[5]], [[4]], [[]]]


def test_given_histories_are_read_newest_first_with_unknown_gaps():
    features = by_key(sequence_features().batch_from(np.array([0, 0]), [np.array([2, 3, 4, 9]), np.array([])]))
    assert [features[f"history_{j}"] for j in range(3)] == [[[9], []], [[4], []], [[3], []]]
    assert features["history_gap_0"] == [[UNKNOWN_GAP], []]


def test_gap_buckets_are_log2_minutes_capped_below_unknown():
    assert gap_buckets(np.array([0, MINUTE, 3 * MINUTE, 10**18])).tolist() == [0, 1, 2, UNKNOWN_GAP - 1]


def test_attention_tower_gives_unit_vectors_that_depend_on_order():
    torch.manual_seed(0)
    tower = UserTower(ATTENTION, SIZES, dim=12).eval()
    features = sequence_features()
    with torch.no_grad():
        out = tower(features.batch(np.array([1, 2, 3, 5])))  # users 3 and 5: no history at all
        given = [np.array([5, 6, 7]), np.array([7, 6, 5]), np.array([], dtype=np.int64)]
        swapped = tower(features.batch_from(np.array([1, 1, 1]), given))
    assert out.shape == (4, 12) and torch.isfinite(out).all() and torch.isfinite(swapped).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    assert not torch.allclose(swapped[0], swapped[1])  # a bag's mean could not tell these apart
    assert not torch.allclose(swapped[0], swapped[2])


def test_heads_must_divide_the_embedding_width():
    with pytest.raises(ConfigError, match=r"model.user.attention_heads \(3\) must divide model.user.embedding_dim \(8\)"):
        UserTowerConfig(embedding_dim=8, history_encoder="attention", attention_heads=3)
    with pytest.raises(ConfigError, match="model.user.history_encoder"):
        tiny_config("model.user.history_encoder=lstm")


@pytest.mark.slow  # trains a model
def test_attention_history_learns_the_tiny_shop_far_above_popularity(tmp_path):
    from tandemrec.jobs import build_index, evaluate_run, train

    run = tmp_path / "attention"
    train(tiny_config("model.user.history_encoder=attention", "train.epochs=3"), run, progress=False)
    build_index(run)
    metrics = evaluate_run(run)
    ours, popularity = metrics["tandemrec"]["recall@10"], metrics["popularity"]["recall@10"]
    assert ours >= 3 * popularity, (ours, popularity)
