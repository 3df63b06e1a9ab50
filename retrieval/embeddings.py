"""Embedding export for downstream systems: Parquet, .npy and safetensors, each with a manifest entry.

Formats: `<what>.parquet` (columns id, embedding: a fixed-size float32 list); `<what>.npy` (float32 (n, d))
with `<what>.ids.json`; `<what>.safetensors` (tensor "embedding") with the same ids file. `manifest.json`
holds one entry per export and format, keyed `<what>.<format>`, saying how the vectors were made (model hash,
dim, metric, normalisation, creation time, row count) with a checksum of every file it covers, so a reader
can tell a stale, edited or truncated export from a good one.

Large exports can be cut into shards of at most `shard_rows` rows, named as Hugging Face datasets names
them (`<what>-00000-of-00004.parquet`, each .npy or safetensors shard with its own `.ids.json`): the
manifest entry lists them in order under `files`, and the readers here put them back together.

Optional per-row columns (e.g. a user's segment and behaviour probabilities) go into the Parquet file
only, after `id` and `embedding`, each described in the manifest entry's `columns`; the readers here
return ids and vectors and leave them to `pl.read_parquet`.
"""
from __future__ import annotations

import json
import numbers
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


def check_formats(formats: Sequence[str], shard_rows: int = 0) -> None:
    """Refuse export formats this module cannot write, or a shard size that is no row count, before any
    costly embedding."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise RetrievalError(f"export formats must be among {FORMATS}, got {list(formats)}")
    if not isinstance(shard_rows, numbers.Integral) or shard_rows < 0:
        raise RetrievalError(f"shard_rows must be 0 (one file) or a positive row count, got {shard_rows!r}")


def export_embeddings(
    folder: str | Path,
    what: str,
    ids: list[str],
    vectors: np.ndarray,
    model_hash: str,
    formats: tuple[str, ...] = ("parquet",),
    columns: dict[str, tuple[np.ndarray, str]] | None = None,
    shard_rows: int = 0,
) -> list[Path]:
    """Write `vectors` (one row per id) in each of `formats` and record each file in the folder's manifest;
    `columns` (name -> (one value per id, what it means)) are added to the Parquet file. `shard_rows` > 0
    cuts each format into shards of at most that many rows (one file when they all fit one). Files of an
    earlier export of `what` in that format that the new one does not have (other shards) are removed.
    Returns the main file of each shard of each format."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise RetrievalError(f"{what}: {len(ids)} ids but vectors of shape {vectors.shape}")
    check_formats(formats, shard_rows)
    columns = columns or {}
    check_columns(what, columns, len(ids))
    description = export_description(what, len(ids), vectors.shape[1], is_normalized(vectors), model_hash)
    cuts = shard_bounds(len(ids), shard_rows)
    hashes = {
        fmt: [
            write_shard(
                folder, fmt, i, len(cuts), ids[start:stop], vectors[start:stop], description,
                {name: (values[start:stop], meaning) for name, (values, meaning) in columns.items()},
            )
            for i, (start, stop) in enumerate(cuts)
        ]
        for fmt in formats
    }
    meanings = {name: meaning for name, (_, meaning) in columns.items()}
    return record_export(folder, description, meanings, shard_rows, hashes)


def export_description(
    what: str, count: int, dim: int, normalized: bool, model_hash: str, created: str | None = None
) -> dict:
    """How an export's vectors were made: its manifest entry but for the files (and a safetensors file's
    metadata). `created` (ISO time, UTC) defaults to now."""
    return {
        "what": what,
        "count": count,
        "dim": dim,
        "dtype": "float32",
        "metric": "inner_product",
        "normalized": normalized,
        "model_hash": model_hash,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def is_normalized(vectors: np.ndarray) -> bool:
    """Whether every row has unit length (within NORM_TOLERANCE)."""
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=NORM_TOLERANCE))


def check_columns(what: str, columns: dict[str, tuple[np.ndarray, str]], count: int) -> None:
    """Extra columns must not take the names of the two an export always has, and need a value per row."""
    for name, (values, _) in columns.items():
        if name in ("id", "embedding") or len(values) != count:
            raise RetrievalError(
                f"{what}: extra column {name!r} must not be named id or embedding and needs {count} values"
            )


def write_shard(
    folder: str | Path,
    fmt: str,
    index: int,
    shards: int,
    ids: list[str],
    vectors: np.ndarray,
    description: dict,
    columns: dict[str, tuple[np.ndarray, str]],
) -> dict[str, str]:
    """Shard `index` of `shards` of the export `description` names, in format `fmt` (the one file when
    `shards` is 1), written atomically: its main file, then its ids file (.npy, safetensors). `columns` go
    into Parquet files only. Returns each file's name and sha256, main file first: what `record_export`
    puts in the manifest."""
    stem = shard_stem(description["what"], index, shards)
    check_columns(stem, columns, len(ids))
    extra = columns if fmt == "parquet" else {}
    paths = _WRITERS[fmt](Path(folder), stem, ids, np.ascontiguousarray(vectors, dtype=np.float32), description, extra)
    return {p.name: sha256_file(p) for p in paths}


def record_export(
    folder: str | Path,
    description: dict,
    columns: dict[str, str],
    shard_rows: int,
    hashes: dict[str, list[dict[str, str]]],
) -> list[Path]:
    """Record written shards in the folder's manifest, one entry per format: `hashes[fmt]` holds each
    shard's files (main file first) with their sha256, in shard order; `columns` what each extra Parquet
    column means. Files of an earlier export of the same name in that format that this one does not have
    go. Returns the main file of each shard of each format."""
    folder = Path(folder)
    what = description["what"]
    manifest = _read_manifest(folder) if (folder / MANIFEST_FILE).exists() else {}
    written = []
    for fmt, shards in hashes.items():
        mains = [next(iter(shard)) for shard in shards]
        manifest[f"{what}.{fmt}"] = {
            **description,
            **({"columns": columns} if columns and fmt == "parquet" else {}),
            "format": fmt,
            "file": mains[0],
            "files": mains,
            "shard_rows": shard_rows,
            "sha256": {name: digest for shard in shards for name, digest in shard.items()},
        }
        written += [folder / name for name in mains]
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    _remove_other_shards(folder, what, list(hashes), {p.name for p in written})
    return written


def shard_bounds(count: int, shard_rows: int) -> list[tuple[int, int]]:
    """(start, stop) rows of each shard: one when `shard_rows` is 0 or all rows fit one."""
    if not shard_rows or count <= shard_rows:
        return [(0, count)]
    return [(start, min(start + shard_rows, count)) for start in range(0, count, shard_rows)]


def shard_stem(what: str, index: int, shards: int) -> str:
    """`what` alone for a single file, else `what-00001-of-00004`."""
    return what if shards == 1 else f"{what}-{index:05d}-of-{shards:05d}"


def _remove_other_shards(folder: Path, what: str, formats: Sequence[str], kept: set[str]) -> None:
    """Files of an earlier export of `what` (one file, or other shards) left beside a new one would be
    read by anybody who globs the folder: they go, with their id files."""
    for fmt in formats:
        for path in [folder / f"{what}.{fmt}", *folder.glob(f"{what}-[0-9]*-of-[0-9]*.{fmt}")]:
            if path.name not in kept and path.is_file():
                path.unlink()
                if fmt != "parquet":
                    (folder / f"{path.name.removesuffix('.' + fmt)}.ids.json").unlink(missing_ok=True)


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
    paths = [folder / name for name in entry.get("files", [entry["file"]])]
    parts = [_READERS[fmt](path) for path in paths]
    ids = [i for part_ids, _ in parts for i in part_ids]
    vectors = parts[0][1] if len(parts) == 1 else np.concatenate([part[1] for part in parts])
    _check_against(entry, paths[0] if len(paths) == 1 else folder / f"{what}-*.{fmt}", ids, vectors)
    return ids, np.ascontiguousarray(vectors), entry


def _write_parquet(
    folder: Path, stem: str, ids: list[str], vectors: np.ndarray, description: dict, columns: dict
) -> list[Path]:
    path = folder / f"{stem}.parquet"
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
    folder: Path, stem: str, ids: list[str], vectors: np.ndarray, description: dict, columns: dict
) -> list[Path]:
    path = folder / f"{stem}.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    return [path, _write_ids(folder, stem, ids)]


def _write_safetensors(
    folder: Path, stem: str, ids: list[str], vectors: np.ndarray, description: dict, columns: dict
) -> list[Path]:
    path = folder / f"{stem}.safetensors"
    with atomic_path(path) as tmp:
        save_file({TENSOR: vectors}, str(tmp), metadata={k: str(v) for k, v in description.items()})
    return [path, _write_ids(folder, stem, ids)]


def _write_ids(folder: Path, stem: str, ids: list[str]) -> Path:
    path = folder / f"{stem}.ids.json"
    atomic_write_json(path, ids)
    return path


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        frame = pl.read_parquet(path)
        return frame["id"].to_list(), frame["embedding"].to_numpy()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise RetrievalError(f"embedding file '{path}' is not a readable id/embedding Parquet table: {err}") from err


def _read_npy(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise RetrievalError(f"embedding file '{path}' is not a readable .npy array: {err}") from err
    return _read_ids(path), vectors


def _read_safetensors(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise RetrievalError(f"embedding file '{path}' is not readable safetensors: {err}") from err
    if TENSOR not in tensors:
        raise RetrievalError(f"embedding file '{path}' has no tensor '{TENSOR}' (has {sorted(tensors)})")
    return _read_ids(path), tensors[TENSOR]


def _read_ids(data: Path) -> list[str]:
    """The ids of a .npy or safetensors file (or shard): its stem's .ids.json beside it."""
    path = data.with_name(f"{data.name.rsplit('.', 1)[0]}.ids.json")
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
