"""Ranking metrics against small examples worked out by hand."""

import numpy as np
import pytest

from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.metrics import ranking_metrics, ranks_to_hits

# Three users, n_items = 10. User 0 hits at rank 2, user 1 never (and has padding), user 2 at ranks 1 and 3.
TOPK = np.array([[3, 1, 7], [2, 5, -1], [4, 0, 6]], dtype=np.int64)
TARGETS = [np.array([1, 4]), np.array([9]), np.array([4, 6, 8])]
INV_LOG2_3 = 0.6309297535714575  # 1 / log2(3), the discount at rank 2


def test_hits_mark_relevant_ranks_and_never_padding():
    expected = [[False, True, False], [False, False, False], [True, False, True]]
    assert ranks_to_hits(TOPK, TARGETS).tolist() == expected


def test_metrics_at_1_by_hand():
    m = ranking_metrics(TOPK, TARGETS, ks=(1,), n_items=10)
    # Only user 2 hits at rank 1: recall 1/3, precision 1, F1 2*(1*1/3)/(4/3) = 1/2, nDCG 1.
    assert m["recall@1"] == pytest.approx(1 / 9)
    assert m["precision@1"] == pytest.approx(1 / 3)
    assert m["f1@1"] == pytest.approx(1 / 6)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["hit_rate@1"] == pytest.approx(1 / 3)
    assert m["coverage@1"] == pytest.approx(0.3)  # items 3, 2, 4


def test_metrics_at_3_by_hand():
    m = ranking_metrics(TOPK, TARGETS, ks=(3,), n_items=10)
    assert m["recall@3"] == pytest.approx((1 / 2 + 0 + 2 / 3) / 3)
    assert m["precision@3"] == pytest.approx((1 / 3 + 0 + 2 / 3) / 3)
    assert m["f1@3"] == pytest.approx((0.4 + 0 + 2 / 3) / 3)  # user 0: p 1/3, r 1/2; user 2: p = r = 2/3
    ndcg_0 = INV_LOG2_3 / (1 + INV_LOG2_3)  # ideal: 2 relevant items
    ndcg_2 = (1 + 0.5) / (1 + INV_LOG2_3 + 0.5)  # hits at ranks 1 and 3; ideal: 3 relevant items
    assert m["ndcg@3"] == pytest.approx((ndcg_0 + 0 + ndcg_2) / 3)
    assert m["hit_rate@3"] == pytest.approx(2 / 3)
    assert m["coverage@3"] == pytest.approx(0.8)  # 8 distinct items, padding not counted
    assert m["mrr"] == pytest.approx((1 / 2 + 0 + 1) / 3)


def test_keys_for_several_ks_and_no_coverage_without_n_items():
    m = ranking_metrics(TOPK, TARGETS, ks=(1, 3))
    assert sorted(m) == sorted(
        [f"{name}@{k}" for k in (1, 3) for name in ("recall", "precision", "f1", "ndcg", "hit_rate")] + ["mrr"]
    )


def test_a_target_listed_twice_counts_once():
    twice = [np.array([1, 1, 4]), np.array([9]), np.array([4, 6, 8])]
    assert ranking_metrics(TOPK, twice, ks=(3,)) == ranking_metrics(TOPK, TARGETS, ks=(3,))


def test_perfect_ranking_scores_one():
    m = ranking_metrics(np.array([[5, 2]]), [np.array([2, 5])], ks=(2,), n_items=6)
    assert m["recall@2"] == m["precision@2"] == m["f1@2"] == m["ndcg@2"] == m["mrr"] == 1.0


@pytest.mark.parametrize(
    ("topk", "targets", "kwargs", "match"),
    [
        (TOPK, TARGETS, {"ks": (4,)}, r"k=4 must be in \[1, 3\]"),
        (TOPK, TARGETS, {"ks": (0,)}, r"k=0 must be in \[1, 3\]"),
        (TOPK, [np.array([1]), np.array([], dtype=np.int64), np.array([4])], {}, r"targets\[1\] must be a non-empty"),
        (TOPK, TARGETS[:2], {}, "targets has 2 entries, expected one per topk row"),
        (TOPK, [np.array([1]), np.array([[9]]), np.array([4])], {}, r"targets\[1\] must be a non-empty 1-D"),
        (TOPK, [np.array([1.0]), np.array([9.0]), np.array([4.0])], {}, "targets must hold integer"),
        (TOPK, [np.array([-3]), np.array([9]), np.array([4])], {}, "negative item index"),
        (TOPK, TARGETS, {"n_items": 7}, "topk holds item index 7, not below n_items=7"),
        (TOPK, TARGETS, {"n_items": 9}, "targets hold item index 9, not below n_items=9"),
        (TOPK, TARGETS, {"n_items": 0}, "n_items must be positive"),
        (TOPK[0], TARGETS[:1], {}, r"topk must be a non-empty \(n_users, K_max\) matrix, got shape \(3,\)"),
        (np.empty((0, 3), dtype=np.int64), [], {}, "topk must be a non-empty"),
        (TOPK.astype(float), TARGETS, {}, "topk must hold integer item indices"),
        (np.array([[1, -2]]), [np.array([1])], {}, "below -1"),
        (np.array([[1, 1]]), [np.array([1])], {}, "topk row 0 ranks the same item twice"),
    ],
)
def test_bad_input_is_refused(topk, targets, kwargs, match):
    with pytest.raises(RetrievalError, match=match):
        ranking_metrics(topk, targets, **{"ks": (1,), **kwargs})
