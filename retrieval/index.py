"""The item index: FAISS inner-product search over item vectors, with the id map and a checked save format.

Scores are inner products. Callers L2-normalise (training, export and queries share that metric); the index
never renormalises in silence. Built from a FAISS factory string so that approximate kinds (IVF, IVF-PQ,
HNSW) can replace the exact default without changing callers; their search width (nprobe, efSearch) is
kept with the index (`search_width.SearchWidth`).

Row positions are stable: a removed item keeps its row (its id becomes None and searches skip it through a
FAISS ID selector), so row i of a run's index is always item vocabulary index i + 1. Concurrent searches are
safe; `add` and `remove` must not overlap them (`ItemCatalogue` serialises them with a read-write lock).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
from faiss import swig_ptr

from tandemrec.retrieval.arguments import check_k, matrix
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.index_files import RESERVED_KEYS, read_index, write_index
from tandemrec.retrieval.index_gpu import train_and_add
from tandemrec.retrieval.index_rows import (
    Exclusions, all_found, bitmap_selector, check_ids, check_positions, object_array, one_query_exclusions,
)
from tandemrec.retrieval.search_width import SearchWidth

_SHOWN = 10  # how many offending ids an error message lists
# A filter that leaves at most this many rows is answered by exact search over those rows: cheaper than
# asking a graph or inverted-list index to skip almost everything, and never misses an eligible item.
EXACT_SUBSET_MAX = 20_000


class ItemIndex:
    """Item vectors in a FAISS inner-product index; row position i holds the item `ids[i]` (None: removed)."""

    def __init__(
        self,
        index: "faiss.Index",
        ids: Sequence[str | None],
        metadata: dict | None = None,
        *,
        factory: str | None = None,
        search: dict[str, int] | None = None,
    ) -> None:
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise RetrievalError(
                f"index must use METRIC_INNER_PRODUCT, got metric type {index.metric_type}"
            )
        ids = check_ids(ids, "ids", allow_removed=True)
        if index.ntotal != len(ids):
            raise RetrievalError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        metadata = dict(metadata or {})
        clash = sorted(RESERVED_KEYS & metadata.keys())
        if clash:
            raise RetrievalError(f"metadata keys {clash} are reserved for the index manifest")
        self._index = index
        self._dim = index.d  # read once: every SWIG attribute access costs a search of one query a microsecond
        self._ids = object_array(ids)  # numpy, so that a batch of results maps to ids in one step
        self._positions = {item_id: i for i, item_id in enumerate(ids) if item_id is not None}
        self._removed = np.fromiter((i is None for i in ids), dtype=bool, count=len(ids))
        self._metadata = metadata
        self._factory = factory
        self._width = SearchWidth(index, factory, search)
        self._refresh_search_state()

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        factory: str = "Flat",
        metadata: dict | None = None,
        *,
        search: dict[str, int] | None = None,
        train_size: int | None = None,
        ef_construction: int | None = None,
        seed: int = 0,
    ) -> "ItemIndex":
        """Index `vectors` (n, d) under `ids`; `factory` is a FAISS index_factory string ("Flat" is exact).

        Quantisers (IVF centroids, PQ codebooks) are trained on `train_size` rows sampled with `seed` (None:
        all rows); an HNSW graph links each node with `ef_construction` candidates (None: FAISS's default).
        When FAISS sees GPUs, training and adding run there and the index is brought back to the CPU, where
        it is saved and searched. IVF kinds get a direct map, so stored vectors can be read back.
        """
        vectors = matrix(vectors, "vectors", None)
        ids = check_ids(ids, "ids")  # before any training, which may be slow
        if len(ids) != vectors.shape[0]:
            raise RetrievalError(f"vectors has {vectors.shape[0]} rows but {len(ids)} ids were given")
        try:
            index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise RetrievalError(f"factory {factory!r} is not a FAISS index factory string: {e}") from e
        if ef_construction is not None:
            if not isinstance(index, faiss.IndexHNSW):
                raise RetrievalError(f"ef_construction applies to HNSW indexes, not to {factory!r}")
            index.hnsw.efConstruction = ef_construction
        index = train_and_add(index, vectors, train_size, seed)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        return cls(index, ids, metadata, factory=factory, search=search)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        """Rows in the index, removed ones included (the FAISS vector count, which `_ids` follows)."""
        return len(self._ids)

    @property
    def live_count(self) -> int:
        """Items that searches can return: the rows not removed."""
        return len(self._positions)

    @property
    def ids(self) -> list[str | None]:
        """The item ids in row order, None for removed rows (a copy: take it once rather than per lookup)."""
        return self._ids.tolist()

    def live_mask(self) -> np.ndarray:
        """A bool per row: True where the row holds an item that was not removed (a copy)."""
        return ~self._removed

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """The ids (an object array shaped like `positions`) of the rows at `positions`, which must be valid
        rows (unchecked: they come from this index's searches)."""
        return self._ids[positions]

    @property
    def faiss_index(self) -> "faiss.Index":
        """The FAISS index itself, for measuring it directly (benchmarks); add and remove through this class."""
        return self._index

    @property
    def factory(self) -> str | None:
        """The FAISS factory string the index was built with, None when built elsewhere."""
        return self._factory

    @property
    def metadata(self) -> dict:
        """Caller metadata stored in the manifest (e.g. model_hash, kind, measured recall), a copy."""
        return dict(self._metadata)

    def annotate(self, **values: Any) -> None:
        """Add caller metadata (e.g. the recall measured after building) to what `save` writes."""
        clash = sorted(RESERVED_KEYS & values.keys())
        if clash:
            raise RetrievalError(f"metadata keys {clash} are reserved for the index manifest")
        self._metadata.update(values)

    @property
    def search_params(self) -> dict[str, int]:
        """The per-query search parameters (`nprobe` for IVF kinds, `efSearch` for HNSW; none for flat)."""
        return self._width.values

    @property
    def search_param_limits(self) -> dict[str, int]:
        """The value of each search parameter past which search gets no wider (all lists, all rows)."""
        return self._width.limits(len(self))

    def set_search_params(self, **params: int) -> None:
        """Set `nprobe` (IVF) or `efSearch` (HNSW): more is slower and closer to exact. Not while searches
        run (`ItemCatalogue` never calls it): the FAISS index keeps the values as its own defaults."""
        self._width.set(**params)
        self._refresh_search_state()

    def position(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row positions (int64) of `item_ids`; RetrievalError listing any unknown (or removed) id."""
        return np.array(self._rows(item_ids), dtype=np.int64)

    def _rows(self, item_ids: Sequence[str]) -> list[int]:
        """`position` as a list: one request's few ids cost less in one than in a numpy array."""
        if isinstance(item_ids, str):
            raise RetrievalError("item_ids must be a sequence of ids, got a single string")
        if len(item_ids) == 1 and (row := self._positions.get(item_ids[0], -1)) >= 0:  # one item's neighbours
            return [row]
        rows = [self._positions.get(i, -1) for i in item_ids]
        if -1 in rows:
            unknown = [i for i, p in zip(item_ids, rows) if p < 0]
            raise RetrievalError(
                f"item_ids: {len(unknown)} unknown ids, e.g. {unknown[:_SHOWN]} (not in the index, or removed)"
            )
        return rows

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors (len(positions), d) at `positions`, as float32 (PQ kinds: as decoded)."""
        return self._stored(check_positions(positions, "positions", len(self)))

    def _stored(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """`vectors` at valid positions (int64 numbers), through FAISS's C entry point (its Python wrapper
        reads the dimension through SWIG on every call)."""
        vectors = np.empty((len(positions), self._dim), dtype=np.float32)
        try:
            if len(positions) == 1:  # one item's neighbours: no key array to make
                self._index.reconstruct_c(int(positions[0]), swig_ptr(vectors))
            else:
                keys = np.ascontiguousarray(positions, dtype=np.int64)
                self._index.reconstruct_batch_c(len(keys), swig_ptr(keys), swig_ptr(vectors))
            return vectors
        except RuntimeError as e:
            raise RetrievalError(
                f"this index ({self._factory}) cannot reconstruct stored vectors: {e}"
            ) from e

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions int64 (m, k), scores float32 (m, k)) per query, best first.

        `exclude[i]` holds positions never returned for query i; `allowed` (bool, one per row) limits every
        query to the rows it marks (a filter). Removed rows are never returned. Each row still gets k results
        whenever k eligible items exist; otherwise it is padded with position -1 and score -inf.
        """
        return self.search_checked(matrix(queries, "queries", self.dim), check_k(k, self.live_count), exclude, allowed)

    def search_checked(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` of queries already checked by the caller: a C-contiguous, finite float32 (m, dim) matrix
        (`arguments.matrix`) and k an integer in [1, live_count] (`arguments.check_k`); the Retriever
        checks its arguments once, before any work, and a second check would cost a one-query search 5%."""
        first = None  # the common case (every row eligible, no or one query) costs one FAISS call and little more
        if allowed is None and self._live is None and (exclude is None or len(queries) == 1):
            banned = set() if exclude is None else one_query_exclusions(exclude, len(self._ids))
            found, first = self._one_pass(queries, k, banned)
            if found is not None:
                return found
        n, m = len(self), queries.shape[0]
        eligible, bits = self._eligible_rows(allowed)
        n_eligible = n if eligible is None else self.live_count if eligible is self._live else int(eligible.sum())
        run = self._searcher(eligible, bits, n_eligible)
        excluded = Exclusions(exclude, m, n, eligible)
        # Per-query bookkeeping in Python lists: for one query, each numpy call here would cost more than the
        # list; for a batch, the lists are a sliver of the search.
        wanted = [min(k, n_eligible - count) for count in excluded.count]
        if max(wanted) <= 0:  # every eligible row is excluded
            return np.full((m, k), -1, dtype=np.int64), np.full((m, k), -np.inf, dtype=np.float32)
        budget = min(n_eligible, k + max(excluded.count))
        raw_scores, raw_positions, saturated = first or run(queries, budget, 1)
        positions, scores, found = excluded.first_eligible(raw_positions, raw_scores, None, k)
        pending, scale = [i for i in range(m) if found[i] < wanted[i]], 1
        # An exact search is complete at the first pass; an approximate one may have missed items, so it asks
        # for more results and searches wider (nprobe, efSearch) until it is exhaustive.
        while pending and not (budget == n_eligible and saturated):
            budget, scale = min(n_eligible, 2 * budget), 2 * scale
            rows = np.array(pending)
            raw_scores, raw_positions, saturated = run(queries[rows], budget, scale)
            positions[rows], scores[rows], found = excluded.first_eligible(raw_positions, raw_scores, rows, k)
            pending = [i for i, got in zip(pending, found) if got < wanted[i]]
        return positions, scores

    def neighbours(self, item_ids: Sequence[str], k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`search_checked` from the stored vectors of live items, each item left out of its own results (k
        checked by the caller); RetrievalError naming unknown or removed ids. Rows found by `_rows` need
        no check, so one item with every row eligible costs a vector read and one FAISS call."""
        rows = self._rows(item_ids)
        vectors = self._stored(rows)
        if len(rows) == 1 and allowed is None and self._live is None:
            found, _ = self._one_pass(vectors, k, set(rows))
            if found is not None:
                return found
        return self.search_checked(vectors, k, np.array(rows, dtype=np.int64)[:, None], allowed)

    def _one_pass(
        self, queries: np.ndarray, k: int, banned: set[int]
    ) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray, bool]]:
        """The common case of `search`, every row eligible and no or one query: FAISS's own top results,
        past a lone query's `banned` positions (a handful, as a set), in one call and a few Python steps;
        and that call's raw (scores, positions, saturated). The result is None when some query is left
        short of k (an approximate index probed too little, or too many of its results were excluded): the
        widening search then goes on from the raw call, which is its own first pass."""
        params, saturated = self._plain_params
        scores, positions = self._faiss_search(queries, min(len(self._ids), k + len(banned)), params)
        raw = scores, positions, saturated
        if not banned:  # all_found's one-row case inline: on this path a call costs a one-query search ~0.3 us
            complete = positions.item(-1) >= 0 and (len(positions) == 1 or all_found(positions))
            return ((positions, scores) if complete else None), raw
        if len(banned) == 1 and positions.shape[1] > k and positions.item(0) in banned and positions.item(k) >= 0:
            # an item's own neighbours: the item itself first, as it nearly always is
            return (positions[:, 1:], scores[:, 1:]), raw
        listed = positions[0].tolist()
        kept = [j for j, p in enumerate(listed) if p not in banned][:k]
        if len(kept) < k or listed[kept[-1]] < 0:
            return None, raw
        # A run of columns is a view; fancy indexing costs more.
        columns = slice(kept[0], kept[0] + k) if kept[-1] - kept[0] == k - 1 else kept
        return (positions[:, columns], scores[:, columns]), raw

    def _faiss_search(self, queries: np.ndarray, budget: int, params) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's search on checked queries (C-contiguous float32, the index's dim), through its C entry
        point: its Python wrapper would check them again, a tenth of a one-query IVF search."""
        m, budget = len(queries), int(budget)  # FAISS's bindings refuse a numpy integer, which k may be
        scores, positions = np.empty((m, budget), dtype=np.float32), np.empty((m, budget), dtype=np.int64)
        self._index.search_c(m, swig_ptr(queries), budget, swig_ptr(scores), swig_ptr(positions), params)
        return scores, positions

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append items with new ids (no retraining of the index); ids already live are refused."""
        vectors = matrix(vectors, "vectors", self.dim)
        ids = check_ids(ids, "ids")
        if len(ids) != vectors.shape[0]:
            raise RetrievalError(f"vectors has {vectors.shape[0]} rows but {len(ids)} ids were given")
        existing = [i for i in ids if i in self._positions]
        if existing:
            raise RetrievalError(f"ids: {len(existing)} already in the index, e.g. {existing[:_SHOWN]}")
        self._index.add(vectors)
        self._positions.update((item_id, len(self._ids) + j) for j, item_id in enumerate(ids))
        self._ids = np.concatenate([self._ids, object_array(ids)])
        self._removed = np.concatenate([self._removed, np.zeros(len(ids), dtype=bool)])
        self._refresh_search_state()

    def remove(self, ids: Sequence[str]) -> np.ndarray:
        """Take items out of every later search; their rows stay (with id None) so positions never shift.

        Returns the rows removed. Unknown or already removed ids are refused and nothing is removed.
        """
        positions = self.position(check_ids(ids, "ids"))
        for p in positions.tolist():
            del self._positions[self._ids[p]]
            self._ids[p] = None
        self._removed[positions] = True
        self._refresh_search_state()
        return positions

    def save(self, folder: str | Path) -> None:
        """Write the index into `folder` (see `index_files.write_index`: atomic files, checksummed manifest)."""
        write_index(folder, self._index, self._ids, self._metadata, self._factory, self.search_params)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        expect_dim: int | None = None,
        expect_model_hash: str | None = None,
    ) -> "ItemIndex":
        """Read an index written by `save`, checking checksums, counts, dim and, if given, the model hash."""
        index, ids, metadata, factory, search = read_index(folder, expect_dim, expect_model_hash)
        return cls(index, ids, metadata, factory=factory, search=search)

    def _refresh_search_state(self) -> None:
        """Cache what every unfiltered search reuses: the live-row mask, its FAISS bitmap and selector (None
        while nothing is removed), and the FAISS parameters of a first, unwidened pass. Built per call, the
        SWIG objects alone cost more than a one-query IVF search. FAISS only reads them, so concurrent
        searches share them; `add`, `remove` and `set_search_params` replace them."""
        self._live = ~self._removed if self._removed.any() else None
        self._live_bits = None if self._live is None else np.packbits(self._live, bitorder="little")
        self._live_selector = None if self._live_bits is None else bitmap_selector(self._live_bits)
        self._plain_params = self._width.parameters(self._live_selector, 1, 1, len(self))

    def _eligible_rows(self, allowed: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The rows a search may return (None: all) and their bitmap for a FAISS ID selector."""
        if allowed is None:
            return self._live, self._live_bits
        allowed = np.asarray(allowed)
        if allowed.dtype != bool or allowed.shape != (len(self),):
            raise RetrievalError(
                f"allowed must be a bool mask with one entry per index row ({len(self)}), "
                f"got {allowed.dtype} {allowed.shape}"
            )
        eligible = allowed if self._live is None else allowed & self._live
        return eligible, np.packbits(eligible, bitorder="little")

    def _searcher(self, eligible: np.ndarray | None, bits: np.ndarray | None, n_eligible: int):
        """A function (queries, budget, scale) -> (scores, positions, saturated) over the eligible rows.

        `saturated` says that searching wider would find nothing more (exhaustive search).
        """
        if eligible is not None and n_eligible <= EXACT_SUBSET_MAX:
            rows = np.flatnonzero(eligible)
            subset = faiss.IndexFlatIP(self.dim)
            subset.add(self.vectors(rows))

            def exact(queries: np.ndarray, budget: int, scale: int) -> tuple[np.ndarray, np.ndarray, bool]:
                scores, local = subset.search(queries, budget)
                return scores, np.where(local >= 0, rows[np.maximum(local, 0)], -1), True

            return exact
        selector = self._live_selector if bits is self._live_bits else bitmap_selector(bits)
        # A graph search that may only return a few rows needs a longer candidate list to find them.
        boost = max(1, len(self) // max(n_eligible, 1))
        plain = selector is self._live_selector and boost == 1

        def approximate(queries: np.ndarray, budget: int, scale: int) -> tuple[np.ndarray, np.ndarray, bool]:
            params, saturated = (
                self._plain_params if plain and scale == 1 else self._width.parameters(selector, scale, boost, len(self))
            )
            return (*self._faiss_search(queries, budget, params), saturated)

        return approximate
