"""EASE and item-kNN against scores worked out by hand (or by their defining regression) on a tiny matrix."""
from __future__ import annotations

import numpy as np
import pytest

from tandemrec.retrieval.baselines import baseline_topk, ease, gram, interaction_matrix, item_knn, tune

# Three users, three items: user 0 saw items 0 and 1 (item 1 twice), user 1 items 1, 2, user 2 all three.
USERS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
ROWS = np.array([0, 1, 1, 1, 2, 0, 1, 2])


def test_interaction_matrix_is_binary_and_gram_counts_shared_users() -> None:
    matrix = interaction_matrix(USERS, ROWS)
    assert matrix.toarray().tolist() == [[1, 1, 0], [0, 1, 1], [1, 1, 1]]
    rows, co = gram(matrix)
    assert rows.tolist() == [0, 1, 2]
    assert co.tolist() == [[2, 2, 1], [2, 3, 2], [1, 2, 2]]


def test_item_knn_is_cosine_between_user_sets_pruned_to_each_items_neighbours() -> None:
    rows, co = gram(interaction_matrix(USERS, ROWS))
    s01, s02, s12 = 2 / np.sqrt(6), 1 / 2, 2 / np.sqrt(6)  # |U_i & U_j| / sqrt(|U_i| |U_j|)
    full = item_knn(rows, co, 0).weights
    np.testing.assert_allclose(full, [[0, s01, s02], [s01, 0, s12], [s02, s12, 0]], rtol=1e-6)
    # One neighbour: item 0's and item 2's nearest is item 1; item 1's two neighbours tie, both kept.
    one = item_knn(rows, co, 1).weights
    np.testing.assert_allclose(one, [[0, s01, 0], [s01, 0, s12], [0, s12, 0]], rtol=1e-6)
    # A user who saw item 0 gets item 1 (0.816) before item 2 (0.5); item 0 itself is excluded.
    assert baseline_topk(item_knn(rows, co, 0), [np.array([0])], 3).tolist() == [[1, 2, -1]]


def test_ease_solves_each_items_ridge_regression_on_the_others() -> None:
    """Column j of EASE's B is the ridge regression of item j's column on the other items' columns."""
    x = interaction_matrix(USERS, ROWS).toarray().astype(np.float64)
    rows, co = gram(interaction_matrix(USERS, ROWS))
    lam = 1.0
    weights = ease(rows, co, lam).weights
    for j in range(3):
        others = [i for i in range(3) if i != j]
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + lam * np.eye(2), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], expected, rtol=1e-5)
        assert weights[j, j] == 0.0
    # By hand for lam = 1: item 0 from items 1, 2 solves [[4, 2], [2, 3]] b = [2, 1]: b = (0.5, 0).
    np.testing.assert_allclose(weights[[1, 2], 0], [0.5, 0.0], atol=1e-6)


def test_topk_uses_only_known_items_and_falls_back_without_a_history() -> None:
    rows, co = gram(interaction_matrix(np.array([0, 0, 1]), np.array([0, 2, 2])))  # item row 1: no events
    model = item_knn(rows, co, 0)
    fallback = np.array([[2, 0, 1], [1, 2, 0]])
    top = baseline_topk(model, [np.array([0]), np.array([1])], 2, fallback=fallback)
    assert top.tolist() == [[2, -1], [1, 2]]  # user 1's only item has no row in the model: popularity


def test_tune_picks_the_setting_with_the_best_validation_ndcg() -> None:
    train = interaction_matrix(USERS, ROWS)
    chosen = {t.name: t for t in tune(train, [np.array([0])], [np.array([1])], k=1)}
    assert set(chosen) == {"ease", "item_knn"}
    for t in chosen.values():
        assert t.scores[t.setting] == max(t.scores.values())
        assert t.scores[t.setting] == pytest.approx(1.0)  # item 1 is item 0's nearest for every setting


def test_tuning_is_read_back_from_the_cache_for_the_same_split_only(monkeypatch, tmp_path) -> None:
    from tandemrec.retrieval import baseline_split

    monkeypatch.setenv("TANDEMREC_CACHE", str(tmp_path))
    calls = []
    real_tune = baseline_split.tune
    monkeypatch.setattr(baseline_split, "tune", lambda *a, **kw: calls.append(a) or real_tune(*a, **kw))
    rng = np.random.default_rng(0)
    train = interaction_matrix(rng.integers(0, 40, 400), rng.integers(0, 30, 400))
    seen = [np.array([1, 2]), np.array([3])]
    targets = [np.array([4]), np.array([5, 6])]
    first = baseline_split.cached_tuning(train, seen, targets)
    again = baseline_split.cached_tuning(train, seen, targets)
    assert len(calls) == 1  # the second call read the cache
    assert [(t.name, t.setting, t.scores) for t in again] == [(t.name, t.setting, t.scores) for t in first]
    assert all(type(t.setting) is type(a.setting) for t, a in zip(first, again))
    baseline_split.cached_tuning(train, seen, [np.array([4]), np.array([5, 7])])  # another target: tuned anew
    assert len(calls) == 2
    entry = tmp_path / baseline_split.TUNING_DIR / f"{baseline_split._tuning_key(train, seen, targets)}.json"
    entry.write_text("{not json")
    assert [t.setting for t in baseline_split.cached_tuning(train, seen, targets)] == [t.setting for t in first]
    assert len(calls) == 3  # a damaged entry is tuned again
