"""The live item set a service searches: the index, each row's category, filters, adds and removals.

Filters and results read the row -> id and row -> category maps, which must stay consistent with the FAISS
index while items come and go. One read-write lock covers all three: searches run side by side, and an
add or a removal waits for them (and they for it).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tandemrec.retrieval.arguments import check_k
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_rows import all_found
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.retrieval.rwlock import ReadWriteLock

_SHOWN = 10


class ItemCatalogue:
    def __init__(self, index: ItemIndex, categories: Sequence[str | None]) -> None:
        """`categories[i]` is the category of index row i (None: none)."""
        if len(categories) != len(index):
            raise RetrievalError(f"categories has {len(categories)} entries, the index {len(index)} rows")
        self.index = index
        self._lock = ReadWriteLock()
        self._read = self._lock.read()  # `with self._read:` holds a read lock (fetched once, not per search)
        self._codes: dict[str, int] = {}
        self._row_category = self._encode(categories)

    def __len__(self) -> int:
        """Items a search can return (removed ones excluded)."""
        return self.index.live_count

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        item_filter: ItemFilter | None = None,
        source: str = "model",
    ) -> list[Recommendations]:
        """Top-k items per query vector, excluded rows and filtered-out items left out. The caller has
        checked `queries` and `k` (see `ItemIndex.search_checked`)."""
        with self._read:
            allowed = None if item_filter is None else self._allowed(item_filter)  # no call for the common case
            positions, scores = self.index.search_checked(queries, k, exclude, allowed)
            return self._results(positions, scores, source)

    def similar(self, item_ids: Sequence[str], k: int, item_filter: ItemFilter | None = None) -> list[Recommendations]:
        """The k items nearest to each live item's stored vector, the item itself left out; ids and k
        checked by the caller. One read lock for reading the vectors and searching: an item cannot be
        removed in between."""
        with self._read:
            allowed = None if item_filter is None else self._allowed(item_filter)
            positions, scores = self.index.neighbours(item_ids, k, allowed)
            return self._results(positions, scores, "item")

    def rank(
        self,
        row_scores: np.ndarray,
        k: int,
        exclude: np.ndarray | None = None,
        item_filter: ItemFilter | None = None,
        source: str = "popularity",
    ) -> Recommendations:
        """The k best rows by a fixed score per row (rows past its end score 0), exactly, ties by row."""
        with self._read:
            n = len(self.index)
            check_k(k, self.index.live_count)
            scores = np.zeros(n, dtype=np.float32)
            scores[: min(n, len(row_scores))] = row_scores[:n]
            eligible = self.index.live_mask()
            allowed = self._allowed(item_filter)
            if allowed is not None:
                eligible &= allowed
            if exclude is not None:
                eligible[exclude] = False
            order = np.flatnonzero(eligible)
            order = order[np.argsort(-scores[order], kind="stable")[:k]]
            return self._result(order, scores[order], source)

    def positions(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of live items; RetrievalError naming unknown or removed ids."""
        with self._read:
            return self.index.position(item_ids)

    def vectors_of(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows and stored vectors of live items."""
        with self._read:
            positions = self.index.position(item_ids)
            return positions, self.index.vectors(positions)

    def check_new(self, item_ids: Sequence[str]) -> None:
        """Refuse ids already live, before any costly embedding of new items."""
        with self._read:
            live = [i for i in item_ids if self._is_live(i)]
        if live:
            raise RetrievalError(f"items: {len(live)} ids already in the index, e.g. {live[:_SHOWN]}")

    def add(self, vectors: np.ndarray, item_ids: Sequence[str], categories: Sequence[str | None]) -> None:
        """Append new items to the index (no rebuild) with their categories."""
        with self._lock.write():
            self.index.add(vectors, item_ids)
            self._row_category = np.concatenate([self._row_category, self._encode(categories)])

    def remove(self, item_ids: Sequence[str]) -> None:
        """Take items out of every later result; unknown or removed ids are refused, nothing removed."""
        with self._lock.write():
            self.index.remove(item_ids)

    def _is_live(self, item_id: str) -> bool:
        try:
            self.index.position([item_id])
        except RetrievalError:
            return False
        return True

    def _encode(self, categories: Sequence[str | None]) -> np.ndarray:
        for name in categories:
            if name is not None and name not in self._codes:
                self._codes[name] = len(self._codes)
        return np.fromiter(
            (-1 if c is None else self._codes[c] for c in categories), dtype=np.int32, count=len(categories)
        )

    def _allowed(self, item_filter: ItemFilter | None) -> np.ndarray | None:
        """The rows a filter lets through (None: no filter); unknown categories and ids are refused."""
        if item_filter is None or not item_filter.restricts:
            return None
        allowed = np.ones(len(self.index), dtype=bool)
        if item_filter.categories is not None:
            unknown = [c for c in item_filter.categories if c not in self._codes]
            if unknown:
                raise RetrievalError(
                    f"filter.categories: unknown {unknown[:_SHOWN]}; known categories: {sorted(self._codes)[:20]}"
                )
            allowed &= np.isin(self._row_category, [self._codes[c] for c in item_filter.categories])
        if item_filter.allow is not None:
            only = np.zeros(len(self.index), dtype=bool)
            only[self._filter_rows(item_filter.allow, "allow")] = True
            allowed &= only
        if item_filter.deny is not None:
            allowed[self._filter_rows(item_filter.deny, "deny")] = False
        return allowed

    def _filter_rows(self, item_ids: Sequence[str], name: str) -> np.ndarray:
        try:
            return self.index.position(item_ids)
        except RetrievalError as err:
            raise RetrievalError(f"filter.{name}: {err}") from err

    def _results(self, positions: np.ndarray, scores: np.ndarray, source: str) -> list[Recommendations]:
        """A result per row of a search's (m, k) positions and scores (position -1: no item)."""
        if len(positions) == 1 and positions.item(-1) >= 0:  # one full row (all_found inline): the one-query case
            return [Recommendations(self.index.ids_at(positions[0]).tolist(), scores[0], source)]
        if not all_found(positions):
            return [self._result(p, s, source) for p, s in zip(positions, scores)]
        ids = self.index.ids_at(positions).tolist()  # one lookup for the batch: the common, full case
        return [Recommendations(row_ids, row, source) for row_ids, row in zip(ids, scores)]

    def _result(self, positions: np.ndarray, scores: np.ndarray, source: str) -> Recommendations:
        keep = positions >= 0
        return Recommendations(self.index.ids_at(positions[keep]).tolist(), scores[keep], source)
