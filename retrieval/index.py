"""The item index: FAISS inner-product search over item vectors, with the id map and a checked save format.

Scores are inner products. Callers L2-normalise (training, export and queries share that metric); the index
never renormalises in silence. Built from a FAISS factory string so that approximate kinds (IVF, IVF-PQ,
HNSW) can replace the exact default without changing callers; their search parameter (nprobe, efSearch) is
kept with the index and passed per call, so concurrent searches never race on index state.

Row positions are stable: a removed item keeps its row (its id becomes None and searches skip it through a
FAISS ID selector), so row i of a run's index is always item vocabulary index i + 1. Concurrent searches are
safe; `add` and `remove` must not overlap them (`ItemCatalogue` serialises them with a read-write lock).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from tandemrec.data.atomic import atomic_path, atomic_write_json, sha256_file
from tandemrec.retrieval.arguments import check_k, matrix
from tandemrec.retrieval.errors import RetrievalError

log = logging.getLogger(__name__)

FORMAT = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
_MANIFEST_KEYS = frozenset(
    {"format", "factory", "dim", "count", "metric", "created", "index_sha256", "ids_sha256"}
)
_SEARCH_KEY = "search"  # manifest key of the search parameters; optional, so older manifests still load
_RESERVED_KEYS = _MANIFEST_KEYS | {_SEARCH_KEY}
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
        ids = _check_ids(ids, "ids", allow_removed=True)
        if index.ntotal != len(ids):
            raise RetrievalError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        metadata = dict(metadata or {})
        clash = sorted(_RESERVED_KEYS & metadata.keys())
        if clash:
            raise RetrievalError(f"metadata keys {clash} are reserved for the index manifest")
        self._index = index
        self._ivf = faiss.try_extract_index_ivf(index) if isinstance(index, faiss.Index) else None
        self._ids = _object_array(ids)  # numpy, so that a batch of results maps to ids in one step
        self._positions = {item_id: i for i, item_id in enumerate(ids) if item_id is not None}
        self._removed = np.fromiter((i is None for i in ids), dtype=bool, count=len(ids))
        self._refresh_live_rows()
        self._metadata = metadata
        self._factory = factory
        self._search = self._default_search_params()
        self.set_search_params(**(search or {}))

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
        ids = _check_ids(ids, "ids")  # before any training, which may be slow
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
        index = _train_and_add(index, vectors, train_size, seed)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        return cls(index, ids, metadata, factory=factory, search=search)

    @property
    def dim(self) -> int:
        return self._index.d

    def __len__(self) -> int:
        """Rows in the index, removed ones included (the FAISS vector count)."""
        return self._index.ntotal

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
        clash = sorted(_RESERVED_KEYS & values.keys())
        if clash:
            raise RetrievalError(f"metadata keys {clash} are reserved for the index manifest")
        self._metadata.update(values)

    @property
    def search_params(self) -> dict[str, int]:
        """The per-query search parameters (`nprobe` for IVF kinds, `efSearch` for HNSW; none for flat)."""
        return dict(self._search)

    @property
    def search_param_limits(self) -> dict[str, int]:
        """The value of each search parameter past which search gets no wider (all lists, all rows)."""
        if self._ivf is not None:
            return {"nprobe": int(self._ivf.nlist)}
        return {name: len(self) for name in self._search}

    def set_search_params(self, **params: int) -> None:
        """Set `nprobe` (IVF) or `efSearch` (HNSW): more is slower and closer to exact."""
        unknown = sorted(params.keys() - self._search.keys())
        if unknown:
            raise RetrievalError(
                f"search parameters {unknown} do not apply to this index ({self._factory}); "
                f"it takes {sorted(self._search) or 'none'}"
            )
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise RetrievalError(f"search parameter {name} must be a positive integer, got {value!r}")
        if self._ivf is not None and params.get("nprobe", 0) > self._ivf.nlist:
            raise RetrievalError(f"nprobe={params['nprobe']} exceeds the {self._ivf.nlist} lists of this index")
        self._search.update({name: int(value) for name, value in params.items()})

    def position(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row positions (int64) of `item_ids`; RetrievalError listing any unknown (or removed) id."""
        if isinstance(item_ids, str):
            raise RetrievalError("item_ids must be a sequence of ids, got a single string")
        positions = np.fromiter(
            (self._positions.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids)
        )
        if (positions < 0).any():
            unknown = [i for i, p in zip(item_ids, positions) if p < 0]
            raise RetrievalError(
                f"item_ids: {len(unknown)} unknown ids, e.g. {unknown[:_SHOWN]} (not in the index, or removed)"
            )
        return positions

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors (len(positions), d) at `positions`, as float32 (PQ kinds: as decoded)."""
        positions = _check_positions(positions, "positions", len(self))
        try:
            return self._index.reconstruct_batch(positions)
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
        queries = matrix(queries, "queries", self.dim)
        k = check_k(k, self.live_count)
        n, m = len(self), queries.shape[0]
        eligible, bits = self._eligible_rows(allowed)
        n_eligible = n if eligible is None else int(eligible.sum())
        run = self._searcher(eligible, bits, n_eligible)
        first = None  # the common case (no exclusions, no filter) costs one FAISS call and nothing more
        if exclude is None and eligible is None:
            first = run(queries, k, 1)
            if (first[1] >= 0).all():
                return first[1], first[0]
        banned, n_banned = _exclusion_keys(exclude, m, n, eligible)

        positions = np.full((m, k), -1, dtype=np.int64)
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        wanted = np.minimum(k, n_eligible - n_banned)
        pending = np.flatnonzero(wanted > 0)
        if pending.size == 0:
            return positions, scores
        budget = min(n_eligible, k + int(n_banned.max()))
        scale = 1
        while True:
            raw_scores, raw_positions, saturated = first or run(queries[pending], budget, scale)
            first = None
            pos, sc, found = _first_eligible(raw_positions, raw_scores, pending, banned, n, k)
            positions[pending], scores[pending] = pos, sc
            # An exact search is complete at the first pass; an approximate one may have missed items, so it
            # asks for more results and searches wider (nprobe, efSearch) until it is exhaustive.
            pending = pending[found < wanted[pending]]
            if pending.size == 0 or (budget == n_eligible and saturated):
                return positions, scores
            budget, scale = min(n_eligible, 2 * budget), 2 * scale

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append items with new ids (no retraining of the index); ids already live are refused."""
        vectors = matrix(vectors, "vectors", self.dim)
        ids = _check_ids(ids, "ids")
        if len(ids) != vectors.shape[0]:
            raise RetrievalError(f"vectors has {vectors.shape[0]} rows but {len(ids)} ids were given")
        existing = [i for i in ids if i in self._positions]
        if existing:
            raise RetrievalError(f"ids: {len(existing)} already in the index, e.g. {existing[:_SHOWN]}")
        self._index.add(vectors)
        self._positions.update((item_id, len(self._ids) + j) for j, item_id in enumerate(ids))
        self._ids = np.concatenate([self._ids, _object_array(ids)])
        self._removed = np.concatenate([self._removed, np.zeros(len(ids), dtype=bool)])
        self._refresh_live_rows()

    def remove(self, ids: Sequence[str]) -> np.ndarray:
        """Take items out of every later search; their rows stay (with id None) so positions never shift.

        Returns the rows removed. Unknown or already removed ids are refused and nothing is removed.
        """
        positions = self.position(_check_ids(ids, "ids"))
        for p in positions.tolist():
            del self._positions[self._ids[p]]
            self._ids[p] = None
        self._removed[positions] = True
        self._refresh_live_rows()
        return positions

    def save(self, folder: str | Path) -> None:
        """Write index.faiss, ids.json and manifest.json into `folder`, each atomically.

        The manifest goes last and carries both checksums, so a save interrupted half-way is detected by
        `load` as a checksum mismatch rather than read as a mixed index. It also keeps the search
        parameters, so a loaded index searches exactly as the saved one did.
        """
        folder = Path(folder)
        with atomic_path(folder / INDEX_FILE) as tmp:
            faiss.write_index(self._index, str(tmp))
            index_sha256 = sha256_file(tmp)
        atomic_write_json(folder / IDS_FILE, self._ids.tolist())
        manifest = {
            **self._metadata,
            "format": FORMAT,
            "factory": self._factory,
            "dim": self.dim,
            "count": len(self),
            "metric": "inner_product",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "index_sha256": index_sha256,
            "ids_sha256": sha256_file(folder / IDS_FILE),
            _SEARCH_KEY: self.search_params,
        }
        atomic_write_json(folder / MANIFEST_FILE, manifest)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        expect_dim: int | None = None,
        expect_model_hash: str | None = None,
    ) -> "ItemIndex":
        """Read an index written by `save`, checking checksums, counts, dim and, if given, the model hash."""
        folder = Path(folder)
        if not folder.is_dir():
            raise RetrievalError(f"index folder {folder} does not exist")
        for name in (MANIFEST_FILE, INDEX_FILE, IDS_FILE):
            if not (folder / name).is_file():
                raise RetrievalError(f"index folder {folder} has no {name}")
        manifest = _read_json(folder / MANIFEST_FILE)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise RetrievalError(f"{folder / MANIFEST_FILE} is not an index manifest of format {FORMAT}")
        missing = sorted(_MANIFEST_KEYS - manifest.keys())
        if missing:
            raise RetrievalError(f"{folder / MANIFEST_FILE} lacks the keys {missing}")
        for what, name, key in (("index", INDEX_FILE, "index_sha256"), ("ids", IDS_FILE, "ids_sha256")):
            if sha256_file(folder / name) != manifest[key]:
                raise RetrievalError(
                    f"{what} file {folder / name} is corrupt or truncated "
                    "(checksum mismatch with the manifest)"
                )
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as e:
            raise RetrievalError(f"index file {folder / INDEX_FILE} cannot be read by FAISS: {e}") from e
        ids = _read_json(folder / IDS_FILE)
        if not isinstance(ids, list):
            raise RetrievalError(f"{folder / IDS_FILE} must hold a JSON list of ids")
        if not manifest["count"] == index.ntotal == len(ids):
            raise RetrievalError(
                f"index in {folder} is inconsistent: manifest count {manifest['count']}, "
                f"{index.ntotal} vectors, {len(ids)} ids"
            )
        if manifest["dim"] != index.d:
            raise RetrievalError(f"index in {folder} has dim {index.d}, its manifest says {manifest['dim']}")
        if expect_dim is not None and index.d != expect_dim:
            raise RetrievalError(f"index in {folder} has dim {index.d}, expected {expect_dim}")
        metadata = {key: value for key, value in manifest.items() if key not in _RESERVED_KEYS}
        if expect_model_hash is not None and metadata.get("model_hash") != expect_model_hash:
            raise RetrievalError(
                f"index was built by another model (model_hash {metadata.get('model_hash')!r}, "
                f"expected {expect_model_hash!r}): rebuild it for this model"
            )
        search = manifest.get(_SEARCH_KEY) or {}
        if not isinstance(search, dict):
            raise RetrievalError(f"{folder / MANIFEST_FILE}: '{_SEARCH_KEY}' must be an object, got {search!r}")
        return cls(index, ids, metadata, factory=manifest["factory"], search=search)

    def _default_search_params(self) -> dict[str, int]:
        if self._ivf is not None:
            return {"nprobe": int(self._ivf.nprobe)}
        if isinstance(self._index, faiss.IndexHNSW):
            return {"efSearch": int(self._index.hnsw.efSearch)}
        return {}

    def _refresh_live_rows(self) -> None:
        """Cache the live-row mask and its FAISS bitmap (None while nothing is removed)."""
        self._live = ~self._removed if self._removed.any() else None
        self._live_bits = None if self._live is None else np.packbits(self._live, bitorder="little")

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
        selector = None
        if bits is not None:
            selector = faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits))
            selector.referenced_objects = [bits]  # the bitmap must outlive the selector
        # A graph search that may only return a few rows needs a longer candidate list to find them.
        boost = max(1, len(self) // max(n_eligible, 1))

        def approximate(queries: np.ndarray, budget: int, scale: int) -> tuple[np.ndarray, np.ndarray, bool]:
            params, saturated = self._search_parameters(selector, scale, boost)
            if params is None:
                scores, positions = self._index.search(queries, budget)
            else:
                scores, positions = self._index.search(queries, budget, params=params)
            return scores, positions, saturated

        return approximate

    def _search_parameters(self, selector, scale: int, boost: int):
        """Per-call FAISS search parameters (None when the defaults do) and whether they are exhaustive."""
        if self._ivf is not None:
            nprobe = min(self._ivf.nlist, self._search["nprobe"] * scale)
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe), nprobe == self._ivf.nlist
        if "efSearch" in self._search:
            ef = self._search["efSearch"] * scale * boost
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef), ef >= len(self)
        return (None if selector is None else faiss.SearchParameters(sel=selector)), True


def _train_and_add(index: "faiss.Index", vectors: np.ndarray, train_size: int | None, seed: int) -> "faiss.Index":
    sample = vectors
    if not index.is_trained and train_size is not None and train_size < len(vectors):
        rows = np.sort(np.random.default_rng(seed).choice(len(vectors), train_size, replace=False))
        sample = vectors[rows]
    work = _on_gpus(index)
    if not work.is_trained:
        work.train(sample)
    work.add(vectors)
    return index if work is index else faiss.index_gpu_to_cpu(work)


def _on_gpus(index: "faiss.Index") -> "faiss.Index":
    """The index moved to every GPU FAISS sees, or the index itself (no GPU, or a kind without a GPU form)."""
    if faiss.get_num_gpus() == 0 or isinstance(index, faiss.IndexHNSW):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as e:  # e.g. a PQ code size the GPU kernels lack
        log.warning("FAISS cannot build %s on the GPU (%s); building on the CPU", type(index).__name__, e)
        return index


def _object_array(ids: list[str | None]) -> np.ndarray:
    array = np.empty(len(ids), dtype=object)
    array[:] = ids
    return array


def _check_ids(ids: Sequence[str | None], name: str, allow_removed: bool = False) -> list[str | None]:
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


def _check_positions(positions: Any, name: str, n: int) -> np.ndarray:
    positions = np.asarray(positions)
    if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
        raise RetrievalError(
            f"{name} must be a 1-D array of integer row positions, got {positions.dtype} {positions.shape}"
        )
    positions = positions.astype(np.int64, copy=False)
    if positions.size and (positions.min() < 0 or positions.max() >= n):
        raise RetrievalError(
            f"{name} must lie in [0, {n}), got values from {positions.min()} to {positions.max()}"
        )
    return positions


def _exclusion_keys(
    exclude: Sequence[np.ndarray] | None, m: int, n: int, eligible: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys row * n + position of the excluded pairs, and the distinct eligible exclusions per row."""
    if exclude is None:
        return np.empty(0, dtype=np.int64), np.zeros(m, dtype=np.int64)
    if len(exclude) != m:
        raise RetrievalError(f"exclude has {len(exclude)} entries, expected one per query ({m})")
    arrays = [_check_positions(e, f"exclude[{i}]", n) for i, e in enumerate(exclude)]
    rows = np.repeat(np.arange(m, dtype=np.int64), [a.size for a in arrays])
    keys = np.unique(rows * n + np.concatenate(arrays))
    counted = keys if eligible is None else keys[eligible[keys % n]]
    return keys, np.bincount(counted // n, minlength=m)


def _first_eligible(
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RetrievalError(f"{path} is not valid JSON: {e}") from e
