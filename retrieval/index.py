"""The item index: FAISS inner-product search over item vectors, with the id map and a checked save format.

Scores are inner products. Callers L2-normalise (training, export and queries share that metric); the index
never renormalises in silence. Built from a FAISS factory string so that approximate kinds (IVF, HNSW) can
replace the exact default without changing callers.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from tandemrec.data.atomic import atomic_path, atomic_write_json, sha256_file
from tandemrec.retrieval.errors import RetrievalError

FORMAT = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
_MANIFEST_KEYS = frozenset(
    {"format", "factory", "dim", "count", "metric", "created", "index_sha256", "ids_sha256"}
)
_SHOWN = 10  # how many offending ids an error message lists


class ItemIndex:
    """Item vectors in a FAISS inner-product index; row position i holds the item `ids[i]`."""

    def __init__(
        self,
        index: "faiss.Index",
        ids: Sequence[str],
        metadata: dict | None = None,
        *,
        factory: str | None = None,
    ) -> None:
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise RetrievalError(
                f"index must use METRIC_INNER_PRODUCT, got metric type {index.metric_type}"
            )
        ids = _check_ids(ids, "ids")
        if index.ntotal != len(ids):
            raise RetrievalError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        metadata = dict(metadata or {})
        clash = sorted(_MANIFEST_KEYS & metadata.keys())
        if clash:
            raise RetrievalError(f"metadata keys {clash} are reserved for the index manifest")
        self._index = index
        self._ids = ids
        self._positions = {item_id: i for i, item_id in enumerate(ids)}
        self._metadata = metadata
        self._factory = factory

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        factory: str = "Flat",
        metadata: dict | None = None,
    ) -> "ItemIndex":
        """Index `vectors` (n, d) under `ids`; `factory` is a FAISS index_factory string ("Flat" is exact)."""
        vectors = _as_matrix(vectors, "vectors", None)
        ids = _check_ids(ids, "ids")  # before any training, which may be slow
        if len(ids) != vectors.shape[0]:
            raise RetrievalError(f"vectors has {vectors.shape[0]} rows but {len(ids)} ids were given")
        try:
            index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise RetrievalError(f"factory {factory!r} is not a FAISS index factory string: {e}") from e
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        return cls(index, ids, metadata, factory=factory)

    @property
    def dim(self) -> int:
        return self._index.d

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def ids(self) -> list[str]:
        """The item ids in row order (a copy: take it once rather than per lookup)."""
        return list(self._ids)

    @property
    def factory(self) -> str | None:
        """The FAISS factory string the index was built with, None when built elsewhere."""
        return self._factory

    @property
    def metadata(self) -> dict:
        """Caller metadata stored in the manifest (e.g. model_hash), a copy."""
        return dict(self._metadata)

    def position(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row positions (int64) of `item_ids`; RetrievalError listing any unknown id."""
        if isinstance(item_ids, str):
            raise RetrievalError("item_ids must be a sequence of ids, got a single string")
        positions = np.fromiter(
            (self._positions.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids)
        )
        if (positions < 0).any():
            unknown = [i for i, p in zip(item_ids, positions) if p < 0]
            raise RetrievalError(f"item_ids: {len(unknown)} unknown ids, e.g. {unknown[:_SHOWN]}")
        return positions

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors (len(positions), d) at `positions`, as float32."""
        positions = _check_positions(positions, "positions", len(self))
        try:
            return self._index.reconstruct_batch(positions)
        except RuntimeError as e:
            raise RetrievalError(
                f"this index ({self._factory}) cannot reconstruct stored vectors: {e}"
            ) from e

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions int64 (m, k), scores float32 (m, k)) per query, best first.

        `exclude[i]` holds positions never returned for query i. Each row still gets k results whenever k
        eligible items exist; otherwise it is padded with position -1 and score -inf.
        """
        queries = _as_matrix(queries, "queries", self.dim)
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise RetrievalError(f"k must be a positive integer, got {k!r}")
        if k > n:
            raise RetrievalError(f"k={k} exceeds the {n} items in the index")
        m = queries.shape[0]
        banned, n_banned = _exclusion_keys(exclude, m, n)

        positions = np.full((m, k), -1, dtype=np.int64)
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        wanted = np.minimum(k, n - n_banned)
        pending = np.arange(m)
        budget = min(n, k + int(n_banned.max()))
        while True:
            raw_scores, raw_positions = self._index.search(queries[pending], budget)
            pos, sc, found = _first_eligible(raw_positions, raw_scores, pending, banned, n, k)
            positions[pending], scores[pending] = pos, sc
            # An exact index is complete at the first pass; an approximate one may have missed items.
            pending = pending[found < wanted[pending]]
            if pending.size == 0 or budget == n:
                return positions, scores
            budget = min(n, 2 * budget)

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append items with new ids (no retraining of the index); existing ids are refused."""
        vectors = _as_matrix(vectors, "vectors", self.dim)
        ids = _check_ids(ids, "ids")
        if len(ids) != vectors.shape[0]:
            raise RetrievalError(f"vectors has {vectors.shape[0]} rows but {len(ids)} ids were given")
        existing = [i for i in ids if i in self._positions]
        if existing:
            raise RetrievalError(f"ids: {len(existing)} already in the index, e.g. {existing[:_SHOWN]}")
        self._index.add(vectors)
        self._positions.update((item_id, len(self._ids) + j) for j, item_id in enumerate(ids))
        self._ids.extend(ids)

    def save(self, folder: str | Path) -> None:
        """Write index.faiss, ids.json and manifest.json into `folder`, each atomically.

        The manifest goes last and carries both checksums, so a save interrupted half-way is detected by
        `load` as a checksum mismatch rather than read as a mixed index.
        """
        folder = Path(folder)
        with atomic_path(folder / INDEX_FILE) as tmp:
            faiss.write_index(self._index, str(tmp))
            index_sha256 = sha256_file(tmp)
        atomic_write_json(folder / IDS_FILE, self._ids)
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
        metadata = {key: value for key, value in manifest.items() if key not in _MANIFEST_KEYS}
        if expect_model_hash is not None and metadata.get("model_hash") != expect_model_hash:
            raise RetrievalError(
                f"index was built by another model (model_hash {metadata.get('model_hash')!r}, "
                f"expected {expect_model_hash!r}): rebuild it for this model"
            )
        return cls(index, ids, metadata, factory=manifest["factory"])


def _check_ids(ids: Sequence[str], name: str) -> list[str]:
    if isinstance(ids, str):
        raise RetrievalError(f"{name} must be a sequence of string ids, got a single string")
    ids = list(ids)
    not_str = [i for i in ids if not isinstance(i, str)]
    if not_str:
        raise RetrievalError(f"{name} must be strings, got e.g. {not_str[:_SHOWN]!r}")
    repeated = [i for i, count in Counter(ids).items() if count > 1]
    if repeated:
        raise RetrievalError(f"{name} must be unique; repeated: {repeated[:_SHOWN]}")
    return ids


def _as_matrix(x: np.ndarray, name: str, dim: int | None) -> np.ndarray:
    """`x` as a C-contiguous float32 (n, d) matrix with n > 0, checked against `dim`."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise RetrievalError(
            f"{name} must be a 2-D (n, d) matrix, got shape {x.shape} (batch a single vector as (1, d))"
        )
    if x.size == 0:
        raise RetrievalError(f"{name} is empty (shape {x.shape})")
    if dim is not None and x.shape[1] != dim:
        raise RetrievalError(f"{name} has dimension {x.shape[1]}, the index has dimension {dim}")
    if x.dtype.kind not in "fiu":
        raise RetrievalError(f"{name} must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise RetrievalError(f"{name} holds NaN or infinite values")
    return x


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


def _exclusion_keys(exclude: Sequence[np.ndarray] | None, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys row * n + position of the excluded pairs, and the distinct exclusions per row."""
    if exclude is None:
        return np.empty(0, dtype=np.int64), np.zeros(m, dtype=np.int64)
    if len(exclude) != m:
        raise RetrievalError(f"exclude has {len(exclude)} entries, expected one per query ({m})")
    arrays = [_check_positions(e, f"exclude[{i}]", n) for i, e in enumerate(exclude)]
    rows = np.repeat(np.arange(m, dtype=np.int64), [a.size for a in arrays])
    keys = np.unique(rows * n + np.concatenate(arrays))
    return keys, np.bincount(keys // n, minlength=m)


def _first_eligible(
    raw_positions: np.ndarray, raw_scores: np.ndarray, rows: np.ndarray, banned: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first k eligible results per row, in their ranked order, padded; and how many were found."""
    eligible = raw_positions >= 0
    if banned.size:
        keys = np.where(eligible, rows[:, None] * n + raw_positions, -1)
        eligible &= ~np.isin(keys, banned)
    order = np.argsort(~eligible, axis=1, kind="stable")[:, :k]
    positions = np.take_along_axis(raw_positions, order, axis=1)
    scores = np.take_along_axis(raw_scores, order, axis=1)
    kept = np.take_along_axis(eligible, order, axis=1)
    positions[~kept] = -1
    scores[~kept] = -np.inf
    return positions, scores, kept.sum(axis=1)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RetrievalError(f"{path} is not valid JSON: {e}") from e
