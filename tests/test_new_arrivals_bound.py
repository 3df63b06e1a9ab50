"""benchmarks/new_arrivals_bound.py: the hindsight orderings of the shelf, on a case computed by hand."""


import numpy as np
import pytest

from conftest import benchmark_script



@pytest.fixture(scope="module")
def bench():
    with benchmark_script("new_arrivals_bound") as module:
        yield module


def test_hindsight_orderings_by_hand(bench, monkeypatch):
    """Cold rows 10..13, top-1, recall = hits / wanted. Demand: row 10 by users 0 and 1, row 12 by user 2,
    row 13 by users 2 and 3; user 4 wants no cold row and is not counted. Ties go to the lower row."""
    monkeypatch.setattr(bench, "K", 1)
    cold = np.array([10, 11, 12, 13])
    wants = [np.array([10]), np.array([10]), np.array([12, 13]), np.array([13]), np.array([], dtype=np.int64)]
    seen = [np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([10]), np.array([10]), np.array([11])]
    recall, users, alone = bench.hindsight_recall(seen, wants, cold, own=True)
    # Demand 10: 2, 11: 0, 12: 1, 13: 2 -> order 10, 13, 12, 11. Users 0, 1: 10, hit (1); users 2 and 3 saw
    # 10: 13, a hit for user 3 (1) and one of user 2's two (0.5).
    assert (recall, users) == (pytest.approx(3.5 / 4), 4)
    assert alone == pytest.approx(1 / 5)  # wished: 10, 10, 12, 13, 13; only 12 by one user alone
    recall, _, _ = bench.hindsight_recall(seen, wants, cold, own=False)
    # Own wish left out. User 0 (and 1): 10: 1, 13: 2 -> 13, miss. User 2: 12: 0, 13: 1 -> 13, 0.5.
    # User 3: 12: 1, 13: 1, the tie to 12 -> miss.
    assert recall == pytest.approx(0.5 / 4)
