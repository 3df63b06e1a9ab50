"""Embedding export for downstream systems: Parquet (id + fixed-size float32 list) with a manifest.

The manifest says how the vectors were made (model hash, dim, metric, normalisation) and carries a
checksum, so a reader can tell a stale or damaged file from a good one.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.data.atomic import atomic_path, atomic_write_json, sha256_file
from tandemrec.retrieval.errors import RetrievalError

MANIFEST_FILE = "manifest.json"


def export_embeddings(folder: str | Path, what: str, ids: list[str], vectors: np.ndarray, model_hash: str) -> Path:
    """Write `<folder>/<what>.parquet` (columns: id, embedding) and record it in the folder's manifest."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise RetrievalError(f"{what}: {len(ids)} ids but vectors of shape {vectors.shape}")
    folder = Path(folder)
    path = folder / f"{what}.parquet"
    frame = pl.DataFrame(
        {"id": ids, "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1]))}
    )
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    manifest = _read_manifest(folder) if (folder / MANIFEST_FILE).exists() else {}
    norms = np.linalg.norm(vectors, axis=1)
    manifest[what] = {
        "file": path.name,
        "count": len(ids),
        "dim": int(vectors.shape[1]),
        "dtype": "float32",
        "metric": "inner_product",
        "normalized": bool(np.allclose(norms, 1.0, atol=1e-3)),
        "model_hash": model_hash,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha256_file(path),
    }
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    return path


def read_embeddings(folder: str | Path, what: str) -> tuple[list[str], np.ndarray, dict]:
    """Read an export back, checking it against its manifest entry (checksum, count, dim)."""
    folder = Path(folder)
    entry = _read_manifest(folder).get(what)
    if entry is None:
        raise RetrievalError(f"'{folder / MANIFEST_FILE}' has no entry for '{what}'")
    path = folder / entry["file"]
    if not path.is_file():
        raise RetrievalError(f"embedding file '{path}' is missing")
    if sha256_file(path) != entry["sha256"]:
        raise RetrievalError(f"embedding file '{path}' does not match its manifest checksum (changed or truncated)")
    frame = pl.read_parquet(path)
    vectors = frame["embedding"].to_numpy().astype(np.float32, copy=False)
    if frame.height != entry["count"] or vectors.shape[1] != entry["dim"]:
        raise RetrievalError(
            f"'{path}': {frame.height} x {vectors.shape[1]} vectors, manifest says {entry['count']} x {entry['dim']}"
        )
    return frame["id"].to_list(), np.ascontiguousarray(vectors), entry


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise RetrievalError(f"no embedding manifest at '{path}'")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RetrievalError(f"embedding manifest '{path}' is not valid JSON: {err}") from err
