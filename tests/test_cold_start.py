"""Cold-start evaluation (issue 11): the new-arrivals shelf, cold exposure, the random and content-kNN
references against values worked out by hand, and the blocks `evaluate_run` writes on a trained run."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tandemrec.demo import metrics_table
from tandemrec.retrieval.cold_start import (
    cold_exposure,
    cold_rows,
    content_knn_topk,
    exact_topk,
    random_ranking_metrics,
)
from tandemrec.retrieval.evaluate import compare
from tandemrec.retrieval.metrics import ranking_metrics

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

INV_LOG2_3 = 0.6309297535714575  # 1 / log2(3), the discount at rank 2

# Five items (index rows 0..4), rows 1, 3 and 4 cold; three users in a 2-d space.
COLD = np.array([1, 3, 4])
COLD_VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)  # rows 1, 3, 4
USERS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
SEEN = [np.array([], dtype=np.int64), np.array([3]), np.array([0, 4])]  # row 0 is warm: no effect on the shelf
COLD_TARGETS = [np.array([4]), np.array([1]), np.array([1, 3])]


def test_cold_rows_are_every_item_without_training_events() -> None:
    assert cold_rows(np.array([3.0, 0.0, 1.0, 0.0, 0.0])).tolist() == [1, 3, 4]


def test_new_arrivals_shelf_ranks_only_unseen_cold_items_by_hand() -> None:
    top = exact_topk(USERS, COLD_VECTORS, COLD, SEEN, 4)
    # User 0 scores rows 1, 3, 4 as 1, 0, 0.6; user 1 as 0, 1 (seen), 0.8; user 2 as -1, 0, -0.6 (seen).
    assert top.tolist() == [[1, 4, 3, -1], [4, 1, -1, -1], [3, 1, -1, -1]]


def test_new_arrivals_metrics_by_hand() -> None:
    shelf = {"tandemrec": exact_topk(USERS, COLD_VECTORS, COLD, SEEN, 2)}
    eligible = len(COLD) - np.array([np.isin(s, COLD).sum() for s in SEEN])
    assert eligible.tolist() == [3, 2, 2]
    block = compare(shelf, COLD_TARGETS, (1, 2), None, eligible)
    ours = block["tandemrec"]
    # Top-1: 1, 4, 3 -> only user 2 hits (1 of its 2 targets). Top-2: everyone hits everything.
    assert ours["recall@1"] == pytest.approx((0 + 0 + 1 / 2) / 3)
    assert ours["ndcg@1"] == pytest.approx(1 / 3)
    assert ours["recall@2"] == pytest.approx(1.0)
    assert ours["ndcg@2"] == pytest.approx((INV_LOG2_3 + INV_LOG2_3 + 1) / 3)
    random = block["random"]  # targets/eligible: 1/3, 1/2, 2/2
    assert random["recall@1"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    assert random["recall@2"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert random["ndcg@1"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert block["users"] == {"evaluated": 3, "skipped": 0}


def test_cold_exposure_by_hand() -> None:
    tops = {
        "tandemrec": np.array([[1, 0, 2], [2, 3, 0], [4, -1, -1]]),  # top-2: 3 of 5 filled slots are cold
        "popularity": np.array([[0, 2, 1], [0, 2, 1], [2, 0, 1]]),  # top-2: never a cold item
    }
    targets = [np.array([1]), np.array([0, 2]), np.array([3])]  # 2 of 4 targets are cold
    exposure = cold_exposure(tops, targets, COLD, k=2)
    assert exposure["tandemrec"] == pytest.approx(0.6 / 0.5)
    assert exposure["popularity"] == 0.0
    assert exposure["cold_share_of_targets"] == pytest.approx(0.5)
    assert exposure["cold_share_of_top2"] == pytest.approx({"tandemrec": 0.6, "popularity": 0.0})


def test_random_ranking_metrics_equal_the_average_over_every_permutation() -> None:
    """Four items; user 0 may rank all four (targets 1 and 3), user 1 has seen item 2 (target 0)."""
    eligible = [np.array([0, 1, 2, 3]), np.array([0, 1, 3])]
    targets = [np.array([1, 3]), np.array([0])]
    ks = (1, 2, 3, 5)  # 5: more slots than items
    names = [f"{m}@{k}" for m in ("recall", "precision", "ndcg") for k in ks]
    per_user = []
    for items, wanted in zip(eligible, targets):
        perms = np.array(list(itertools.permutations(items)))
        padded = np.pad(perms, ((0, 0), (0, 5 - perms.shape[1])), constant_values=-1)
        per_user.append(ranking_metrics(padded, [wanted] * len(perms), ks))  # mean over the permutations
    expected = {name: np.mean([m[name] for m in per_user]) for name in names}
    assert random_ranking_metrics(np.array([2, 1]), np.array([4, 3]), ks) == pytest.approx(expected)


# Text features of rows 0..4: 30 degrees, a long vector at 0 degrees, 90 degrees, 50 degrees, no text.
DEGREES = np.radians([30.0, 50.0])
FEATURES = np.array(
    [[np.cos(DEGREES[0]), np.sin(DEGREES[0])], [10.0, 0.0], [0.0, 1.0], [np.cos(DEGREES[1]), np.sin(DEGREES[1])], [0, 0]],
    dtype=np.float32,
)


def test_content_knn_ranks_by_cosine_to_the_normalised_mean_of_the_history() -> None:
    history = [np.array([0]), np.array([1, 2]), np.array([], dtype=np.int64)]
    fallback = np.array([[0, 1], [0, 1], [4, 2]])
    top = content_knn_topk(FEATURES, history, 2, fallback=fallback)
    # User 0 (30 deg): row 3 at 20 deg, row 1 at 30, row 2 at 60. User 1 averages unit vectors at 0 and 90 deg
    # (45 deg; the raw mean would point at 6 deg and put row 0 first): row 3 at 5 deg, row 0 at 15.
    # User 2 has no history: the fallback (popularity) row.
    assert top.tolist() == [[3, 1], [3, 0], [4, 2]]
    shelf = content_knn_topk(FEATURES, history[:2], 3, rows=np.array([2, 3, 4]))
    assert shelf.tolist() == [[3, 2, 4], [3, 4, -1]]  # the item without text scores 0; seen rows excluded


@pytest.fixture(scope="module")
def cold_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run, copied, evaluated with a fifth of its items held out of training: they have no
    training events in the evaluation's split, so they are cold (the model was not retrained: only the
    evaluation's bookkeeping is under test here)."""
    run = tmp_path_factory.mktemp("cold") / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["split"]["cold_items"] = 0.2
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture(scope="module")
def cold_metrics(cold_run: Path) -> dict:
    from tandemrec.jobs import evaluate_run

    return evaluate_run(cold_run, [5, 10])


def test_evaluate_run_writes_the_cold_start_blocks(cold_run: Path, cold_metrics: dict) -> None:
    written = json.loads((cold_run / "metrics.json").read_text())
    assert written == cold_metrics  # JSON keeps every float exactly
    assert {"tandemrec", "popularity", "content_knn", "users", "warm", "cold", "new_arrivals", "cold_exposure"} <= set(
        written
    )
    for block in ("warm", "cold"):
        assert set(written[block]) == {"tandemrec", "popularity", "content_knn", "item_knn", "ease", "random", "users"}
    assert set(written["new_arrivals"]) == {"tandemrec", "content_knn", "random", "users", "items"}
    assert set(written["cold_exposure"]) == {
        "tandemrec", "popularity", "content_knn", "item_knn", "ease", "cold_share_of_targets", "cold_share_of_top10"
    }
    assert (cold_run / "plots" / "metrics.png").is_file()


def test_cold_start_numbers_are_consistent(cold_metrics: dict) -> None:
    m = cold_metrics
    n_cold = m["new_arrivals"]["items"]
    assert n_cold >= 24  # a fifth of 120 held out, plus any item with no training event of its own
    for block in ("warm", "cold", "new_arrivals"):
        assert m[block]["users"]["evaluated"] + m[block]["users"]["skipped"] == sum(m["users"].values())
        for system, values in m[block].items():
            if system in ("users", "items"):
                continue
            for k in (5, 10):
                assert 0.0 <= values[f"recall@{k}"] <= 1.0 and 0.0 <= values[f"ndcg@{k}"] <= 1.0
            assert values["recall@5"] <= values["recall@10"] + 1e-12
    assert m["cold"]["users"]["evaluated"] == m["new_arrivals"]["users"]["evaluated"]
    # On the shelf a random ranking shows min(10, N) of the user's N unseen cold items: recall min(10, N)/N,
    # which is at least 10/n_cold and at most 1.
    assert 10 / n_cold <= m["new_arrivals"]["random"]["recall@10"] <= 1.0
    # Popularity never ranks a cold item above a warm one: on the full catalogue it shows no cold item.
    assert m["cold_exposure"]["popularity"] == 0.0
    share = m["cold_exposure"]["cold_share_of_targets"]
    assert 0.0 < share <= 1.0
    for system, shown in m["cold_exposure"]["cold_share_of_top10"].items():
        assert m["cold_exposure"][system] == pytest.approx(shown / share)


def test_metrics_table_shows_every_block_within_100_columns(cold_metrics: dict) -> None:
    table = metrics_table(cold_metrics)
    for section in ("warm targets", "cold targets", "new-arrivals shelf", "cold exposure"):
        assert section in table
    assert table.splitlines()[0].split() == ["tandemrec", "popularity", "item-kNN", "EASE", "content-kNN", "random", "ratio"]
    assert max(len(line) for line in table.splitlines()) <= 100


def test_catalogue_text_features_are_the_same_from_the_frozen_cache_and_a_fresh_forward(trained_run: Path) -> None:
    from tandemrec.jobs import catalogue_text_features
    from tandemrec.run import Run

    run = Run(trained_run)
    model, content = run.model, run.content
    trained = catalogue_text_features(model, content)
    assert trained.shape == (len(run.vocabs.items) - 1, model.item_tower.text.output_dim)
    assert content.text_features is None  # a trained encoder was run, nothing cached
    model.item_tower.text.requires_grad_(False)  # now frozen: its outputs come through the cache
    assert np.allclose(catalogue_text_features(model, content), trained, atol=1e-5)
    model.item_tower.text = None
    assert catalogue_text_features(model, content) is None
