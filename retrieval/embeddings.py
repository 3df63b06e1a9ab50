"""Embedding export for downstream systems: Parquet, .npy and safetensors, each with a manifest entry.

Formats: `<what>.parquet` (columns id, embedding: a fixed-size float32 list); `<what>.npy` (float32 (n, d))
with `<what>.ids.json`; `<what>.safetensors` (tensor "embedding") with the same ids file. `manifest.json`
holds one entry per exported file, keyed `<what>.<format>`, saying how the vectors were made (model hash,
dim, metric, normalisation, creation time, row count) with a checksum of every file it covers, so a reader
can tell a stale, edited or truncated export from a good one.

Optional per-row columns (e.g. a user's segment and behaviour probabilities) go into the Parquet file
only, after `id` and `embedding`, each described in the manifest entry's `columns`; the readers here
return ids and vectors and leave them to `pl.read_parquet`.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from tandemrec.io.atomic import atomic_path, atomic_write_json, sha256_file
from tandemrec.retrieval.errors import RetrievalError

MANIFEST_FILE = "manifest.json"
FORMATS = ("parquet", "npy", "safetensors")
TENSOR = "embedding"  # the tensor name in safetensors files
NORM_TOLERANCE = 1e-3


def check_formats(formats: Sequence[str]) -> None:
    """Refuse export formats this module cannot write, before any costly embedding."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise RetrievalError(f"export formats must be among {FORMATS}, got {list(formats)}")


def export_embeddings(
    folder: str | Path,
    what: str,
    ids: list[str],
    vectors: np.ndarray,
    model_hash: str,
    formats: tuple[str, ...] = ("parquet",),
    columns: dict[str, tuple[np.ndarray, str]] | None = None,
) -> list[Path]:
    """Write `vectors` (one row per id) in each of `formats` and record each file in the folder's manifest;
    `columns` (name -> (one value per id, what it means)) are added to the Parquet file."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise RetrievalError(f"{what}: {len(ids)} ids but vectors of shape {vectors.shape}")
    check_formats(formats)
    columns = columns or {}
    for name, (values, _) in columns.items():
        if name in ("id", "embedding") or len(values) != len(ids):
            raise RetrievalError(
                f"{what}: extra column {name!r} must not be named id or embedding and needs {len(ids)} values"
            )
    folder = Path(folder)
    manifest = _read_manifest(folder) if (folder / MANIFEST_FILE).exists() else {}
    norms = np.linalg.norm(vectors, axis=1)
    description = {
        "what": what,
        "count": len(ids),
        "dim": int(vectors.shape[1]),
        "dtype": "float32",
        "metric": "inner_product",
        "normalized": bool(np.allclose(norms, 1.0, atol=NORM_TOLERANCE)),
        "model_hash": model_hash,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    written = []
    for fmt in formats:
        extra = columns if fmt == "parquet" else {}
        paths = _WRITERS[fmt](folder, what, ids, vectors, description, extra)
        manifest[f"{what}.{fmt}"] = {
            **description,
            **({"columns": {name: meaning for name, (_, meaning) in extra.items()}} if extra else {}),
            "format": fmt,
            "file": paths[0].name,
            "sha256": {p.name: sha256_file(p) for p in paths},
        }
        written.append(paths[0])
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    return written


def read_embeddings(folder: str | Path, what: str, fmt: str = "parquet") -> tuple[list[str], np.ndarray, dict]:
    """Read an export back, checking it against its manifest entry: checksums, count, dim, dtype, norms."""
    folder = Path(folder)
    if fmt not in FORMATS:
        raise RetrievalError(f"format must be one of {FORMATS}, got {fmt!r}")
    entry = _read_manifest(folder).get(f"{what}.{fmt}")
    if entry is None:
        raise RetrievalError(f"'{folder / MANIFEST_FILE}' has no entry for '{what}' in format '{fmt}'")
    for name, digest in entry["sha256"].items():
        path = folder / name
        if not path.is_file():
            raise RetrievalError(f"embedding file '{path}' is missing")
        if sha256_file(path) != digest:
            raise RetrievalError(f"embedding file '{path}' does not match its manifest checksum (changed or truncated)")
    path = folder / entry["file"]
    ids, vectors = _READERS[fmt](folder, what, path)
    _check_against(entry, path, ids, vectors)
    return ids, np.ascontiguousarray(vectors), entry


def _write_parquet(
    folder: Path, what: str, ids: list[str], vectors: np.ndarray, description: dict, columns: dict
) -> list[Path]:
    path = folder / f"{what}.parquet"
    frame = pl.DataFrame(
        {
            "id": ids,
            "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1])),
            **{name: values for name, (values, _) in columns.items()},
        }
    )
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    return [path]


def _write_npy(
    folder: Path, what: str, ids: list[str], vectors: np.ndarray, description: dict, columns: dict
) -> list[Path]:
    path = folder / f"{what}.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    return [path, _write_ids(folder, what, ids)]


def _write_safetensors(
    folder: Path, what: str, ids: list[str], vectors: np.ndarray, description: dict, columns: dict
) -> list[Path]:
    path = folder / f"{what}.safetensors"
    with atomic_path(path) as tmp:
        save_file({TENSOR: vectors}, str(tmp), metadata={k: str(v) for k, v in description.items()})
    return [path, _write_ids(folder, what, ids)]


def _write_ids(folder: Path, what: str, ids: list[str]) -> Path:
    path = folder / f"{what}.ids.json"
    atomic_write_json(path, ids)
    return path


def _read_parquet(folder: Path, what: str, path: Path) -> tuple[list[str], np.ndarray]:
    try:
        frame = pl.read_parquet(path)
        return frame["id"].to_list(), frame["embedding"].to_numpy()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise RetrievalError(f"embedding file '{path}' is not a readable id/embedding Parquet table: {err}") from err


def _read_npy(folder: Path, what: str, path: Path) -> tuple[list[str], np.ndarray]:
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise RetrievalError(f"embedding file '{path}' is not a readable .npy array: {err}") from err
    return _read_ids(folder, what), vectors


def _read_safetensors(folder: Path, what: str, path: Path) -> tuple[list[str], np.ndarray]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise RetrievalError(f"embedding file '{path}' is not readable safetensors: {err}") from err
    if TENSOR not in tensors:
        raise RetrievalError(f"embedding file '{path}' has no tensor '{TENSOR}' (has {sorted(tensors)})")
    return _read_ids(folder, what), tensors[TENSOR]


def _read_ids(folder: Path, what: str) -> list[str]:
    path = folder / f"{what}.ids.json"
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise RetrievalError(f"id file '{path}' is not a readable JSON list: {err}") from err
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise RetrievalError(f"id file '{path}' must hold a JSON list of string ids")
    return ids


def _check_against(entry: dict, path: Path, ids: list[str], vectors: np.ndarray) -> None:
    """The data must be what the manifest says: shape, dtype, unique ids, and the norms it claims."""
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise RetrievalError(f"'{path}': expected a 2-D float32 matrix, got {vectors.dtype} of shape {vectors.shape}")
    if vectors.shape != (entry["count"], entry["dim"]) or len(ids) != entry["count"]:
        raise RetrievalError(
            f"'{path}': {len(ids)} ids and {vectors.shape[0]} x {vectors.shape[1]} vectors, "
            f"manifest says {entry['count']} x {entry['dim']}"
        )
    if len(set(ids)) != len(ids):
        raise RetrievalError(f"'{path}': ids are not unique")
    if entry["normalized"] and not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=NORM_TOLERANCE):
        raise RetrievalError(f"'{path}': the manifest says the vectors are L2-normalised, they are not")


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise RetrievalError(f"no embedding manifest at '{path}'")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RetrievalError(f"embedding manifest '{path}' is not valid JSON: {err}") from err


_WRITERS = {"parquet": _write_parquet, "npy": _write_npy, "safetensors": _write_safetensors}
_READERS = {"parquet": _read_parquet, "npy": _read_npy, "safetensors": _read_safetensors}
