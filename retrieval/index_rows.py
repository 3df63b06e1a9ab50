"""Per-query exclusions for `ItemIndex.search`: which raw FAISS results a query may keep.

FAISS has one selector per call, shared by every query of a batch, so a filter (the same rows for all
queries) becomes a selector while per-query exclusions (each user's seen items) are applied here, on
over-fetched results: each excluded (query, row) pair is one sorted int64 key, so a batch is checked with
a single `np.isin`. A lone query (a one-query call of the Retriever) is checked against a Python set
instead: for ten-odd results that is several times cheaper than the batch's dozen numpy calls.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tandemrec.retrieval.errors import RetrievalError

_FEW = 64


def check_positions(positions: Any, name: str, n: int) -> np.ndarray:
    """`positions` as a 1-D int64 array of rows in [0, n); RetrievalError naming `name` otherwise."""
    positions = np.asarray(positions)
    if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
        raise RetrievalError(
            f"{name} must be a 1-D array of integer row positions, got {positions.dtype} {positions.shape}"
        )
    positions = positions.astype(np.int64, copy=False)
    if positions.size:
        if positions.size <= _FEW:  # one query's handful: Python's min and max cost less than numpy's
            listed = positions.tolist()
            lo, hi = min(listed), max(listed)
        else:
            lo, hi = positions.min(), positions.max()
        if lo < 0 or hi >= n:
            raise RetrievalError(f"{name} must lie in [0, {n}), got values from {lo} to {hi}")
    return positions


class Exclusions:
    """The excluded positions of each query of a search: how many of them are eligible (`count`, a list
    with an int per query) and the first k results of each query that are not excluded (`first_eligible`)."""

    def __init__(self, exclude: Sequence[np.ndarray] | None, m: int, n: int, eligible: np.ndarray | None) -> None:
        """`exclude[i]`: positions never returned for query i (None: none); `n` rows; `eligible`: the rows
        a search may return (None: all), so that only those exclusions count against k."""
        self.n = n
        self.keys, count = exclusion_keys(exclude, m, n, eligible)
        self.count: list[int] = count.tolist()

    def first_eligible(
        self, raw_positions: np.ndarray, raw_scores: np.ndarray, rows: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """See `first_eligible` (how many were found: a list); `rows` are the queries (indices into the
        search's) that the results answer, None: all of them, in order."""
        rows = np.arange(len(raw_positions)) if rows is None else rows
        positions, scores, found = first_eligible(raw_positions, raw_scores, rows, self.keys, self.n, k)
        return positions, scores, found.tolist()


class OneQueryExclusions(Exclusions):
    """`Exclusions` of a search with a single query, kept as a set: the same results, fewer numpy calls."""

    def __init__(self, exclude: Sequence[np.ndarray] | None, m: int, n: int, eligible: np.ndarray | None) -> None:
        _check_one_per_query(exclude, m)
        self.banned = set() if exclude is None else set(check_positions(exclude[0], "exclude[0]", n).tolist())
        counted = len(self.banned)
        if eligible is not None and counted:
            counted = int(np.count_nonzero(eligible[list(self.banned)]))
        self.count = [counted]

    def first_eligible(
        self, raw_positions: np.ndarray, raw_scores: np.ndarray, rows: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        banned, listed = self.banned, raw_positions[0].tolist()
        kept = [i for i, p in enumerate(listed) if p >= 0 and p not in banned][:k]
        if len(kept) == k and kept[-1] == k - 1:  # nothing excluded among the first k: FAISS's own answer
            return raw_positions[:, :k], raw_scores[:, :k], [k]
        pad, scored = k - len(kept), raw_scores[0].tolist()
        positions = np.array([[listed[i] for i in kept] + [-1] * pad], dtype=np.int64)
        scores = np.array([[scored[i] for i in kept] + [-np.inf] * pad], dtype=np.float32)
        return positions, scores, [len(kept)]


def exclusions(exclude: Sequence[np.ndarray] | None, m: int, n: int, eligible: np.ndarray | None) -> Exclusions:
    """The exclusions of a search of m queries over n rows (see `Exclusions`)."""
    return (OneQueryExclusions if m == 1 else Exclusions)(exclude, m, n, eligible)


def exclusion_keys(
    exclude: Sequence[np.ndarray] | None, m: int, n: int, eligible: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys row * n + position of the excluded pairs, and the distinct eligible exclusions per row."""
    if exclude is None:
        return np.empty(0, dtype=np.int64), np.zeros(m, dtype=np.int64)
    _check_one_per_query(exclude, m)
    arrays = [check_positions(e, f"exclude[{i}]", n) for i, e in enumerate(exclude)]
    rows = np.repeat(np.arange(m, dtype=np.int64), [a.size for a in arrays])
    keys = np.unique(rows * n + np.concatenate(arrays))
    counted = keys if eligible is None else keys[eligible[keys % n]]
    return keys, np.bincount(counted // n, minlength=m)


def _check_one_per_query(exclude: Sequence[np.ndarray] | None, m: int) -> None:
    if exclude is not None and len(exclude) != m:
        raise RetrievalError(f"exclude has {len(exclude)} entries, expected one per query ({m})")


def first_eligible(
    raw_positions: np.ndarray, raw_scores: np.ndarray, rows: np.ndarray, banned: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first k eligible results per row, in their ranked order, padded to k; and how many were found."""
    if banned.size:
        eligible = (raw_positions >= 0) & ~np.isin(rows[:, None] * n + raw_positions, banned)
        order = np.argsort(~eligible, axis=1, kind="stable")[:, :k]
        raw_positions = np.take_along_axis(raw_positions, order, axis=1)
        raw_scores = np.take_along_axis(raw_scores, order, axis=1)
        raw_positions[~np.take_along_axis(eligible, order, axis=1)] = -1
    # FAISS pads with -1 at the end only, so without exclusions the eligible results are already a prefix.
    width = min(k, raw_positions.shape[1])  # fewer than k when fewer rows are eligible
    positions = np.full((len(rows), k), -1, dtype=np.int64)
    positions[:, :width] = raw_positions[:, :width]
    scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    found = positions >= 0
    scores[found] = raw_scores[:, :width][found[:, :width]]
    return positions, scores, found.sum(axis=1)
