"""The rows of an item index: per-query exclusions for `ItemIndex.search` (which raw FAISS results a query
may keep), the FAISS selector of a row bitmap, and the checks of the ids that name the rows.

FAISS has one selector per call, shared by every query of a batch, so a filter (the same rows for all
queries) becomes a selector while per-query exclusions (each user's seen items) are applied here, on
over-fetched results: each excluded (query, row) pair is one sorted int64 key, so a batch is checked with
a single `np.isin`. A lone query over every row (a one-query call of the Retriever) is checked against a
Python set instead: for ten-odd results that is several times cheaper than the batch's dozen numpy calls.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from tandemrec.retrieval.errors import RetrievalError

_FEW = 64
_SHOWN = 10  # how many offending ids an error message lists


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


def all_found(positions: np.ndarray) -> bool:
    """Whether every row of a search's (m, k) positions holds k results: a short row is padded with -1 at its
    end, by FAISS and by `first_eligible` alike. A lone row is read as a scalar, a tenth of numpy's `all`."""
    if len(positions) == 1:
        return positions.item(-1) >= 0
    return bool((positions[:, -1] >= 0).all())


def one_query_exclusions(exclude: Sequence[np.ndarray], n: int) -> set[int]:
    """The excluded positions of a search with a single query, as a set: for a one-query call's handful of
    results, cheaper than the batch's sorted keys and dozen numpy calls (see `ItemIndex._one_pass`)."""
    _check_one_per_query(exclude, 1)
    return set(check_positions(exclude[0], "exclude[0]", n).tolist())


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


def bitmap_selector(bits: np.ndarray | None) -> "faiss.IDSelector | None":
    """A FAISS selector of the rows whose bit is set in `bits` (None: no selector, every row)."""
    if bits is None:
        return None
    selector = faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits))
    selector.referenced_objects = [bits]  # the bitmap must outlive the selector
    return selector


def object_array(ids: list[str | None]) -> np.ndarray:
    """`ids` as a numpy object array, so that a batch of result rows maps to ids in one step."""
    array = np.empty(len(ids), dtype=object)
    array[:] = ids
    return array


def check_ids(ids: Sequence[str | None], name: str, allow_removed: bool = False) -> list[str | None]:
    """`ids` as a list of unique strings (None allowed for removed rows); RetrievalError naming `name`."""
    if isinstance(ids, str):
        raise RetrievalError(f"{name} must be a sequence of string ids, got a single string")
    ids = list(ids)
    not_str = [i for i in ids if not isinstance(i, str) and not (allow_removed and i is None)]
    if not_str:
        raise RetrievalError(f"{name} must be strings, got e.g. {not_str[:_SHOWN]!r}")
    repeated = [i for i, count in Counter(ids).items() if count > 1 and i is not None]
    if repeated:
        raise RetrievalError(f"{name} must be unique; repeated: {repeated[:_SHOWN]}")
    return ids
