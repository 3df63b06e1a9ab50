"""Item content computed once and kept beside the dataset: decoded pixels and token ids, by item.

Decoding a catalogue's images is the slow part of preparing a run, and training, indexing and evaluating
each need the pixels. Here each image is decoded, centre-cropped and resized once and kept as a
memory-mapped uint8 array under `<dataset>/cache/`, row by row in the catalogue's order, with an index
that keys every row by item id and a fingerprint (the image file's path, size and modification time; for
tokens, the item's text), and a manifest of the preprocessing (image size; the tokenizer and max_length).
A later run maps the arrays without reading them; a changed catalogue reuses the rows whose fingerprint
still matches and computes only the others. A missing or unreadable image is stored masked with its
reason: the run that first meets it reports it, and it is not retried until its file changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.lib.format import open_memmap

from tandemrec.data.errors import DataError
from tandemrec.io.atomic import replace_folder

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_INDEX = "index.parquet"
_CHUNK = 512  # rows computed or copied at a time: bounds the memory a rebuild takes

# Rows to compute -> (array name -> values for those rows, each row's problem or None).
Compute = Callable[[np.ndarray], tuple[dict[str, np.ndarray], list[str | None]]]


@dataclass(frozen=True)
class ArraySpec:
    """One cached array: the shape of a row and its dtype."""

    shape: tuple[int, ...]
    dtype: str


@dataclass
class CachedRows:
    """The cached arrays (memory-mapped, copy-on-write: writes never reach the file), row i = key i,
    each row's problem, and the indices of the rows computed by this call (empty: all from the cache)."""

    arrays: dict[str, np.ndarray]
    problems: list[str | None]
    computed: np.ndarray


def cached_rows(
    folder: Path,
    params: dict[str, Any],
    keys: Sequence[str],
    fingerprints: Sequence[str],
    specs: dict[str, ArraySpec],
    compute: Compute,
) -> CachedRows:
    """The rows of `keys`, from the cache at `folder` when built with the same `params` and the same
    fingerprint, else computed with `compute` and stored."""
    keys, fingerprints = list(keys), list(fingerprints)
    settings = {"format_version": FORMAT_VERSION, "params": params, "arrays": _spec_dict(specs)}
    old = _open(folder, settings)
    if old is not None and old[0]["key"].to_list() == keys and old[0]["fingerprint"].to_list() == fingerprints:
        return CachedRows(old[1], old[0]["problem"].to_list(), np.zeros(0, dtype=np.int64))
    tmp = folder.with_name(f".{folder.name}.tmp-{secrets.token_hex(6)}")
    tmp.mkdir(parents=True)
    try:
        problems, computed = _build(tmp, old, keys, fingerprints, specs, compute)
        index = pl.DataFrame({"key": keys, "fingerprint": fingerprints, "problem": problems}, schema=_INDEX_SCHEMA)
        index.write_parquet(tmp / _INDEX)
        (tmp / _MANIFEST).write_text(json.dumps({**settings, "rows": len(keys)}, indent=2, sort_keys=True) + "\n")
        _publish(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CachedRows(_map(folder, specs), problems, computed)


_INDEX_SCHEMA = {"key": pl.String, "fingerprint": pl.String, "problem": pl.String}


def _build(
    tmp: Path,
    old: tuple[pl.DataFrame, dict[str, np.ndarray]] | None,
    keys: list[str],
    fingerprints: list[str],
    specs: dict[str, ArraySpec],
    compute: Compute,
) -> tuple[list[str | None], np.ndarray]:
    """Fill new arrays in `tmp`: rows whose (key, fingerprint) the old cache has are copied, the rest computed."""
    arrays = {
        name: open_memmap(tmp / f"{name}.npy", mode="w+", dtype=spec.dtype, shape=(len(keys), *spec.shape))
        for name, spec in specs.items()
    }
    problems: list[str | None] = [None] * len(keys)
    wanted = pl.DataFrame({"key": keys, "fingerprint": fingerprints}).with_row_index("row")
    if old is not None:
        found = old[0].with_row_index("old").join(wanted, on=["key", "fingerprint"], how="inner")
        rows, old_rows = found["row"].to_numpy(), found["old"].to_numpy()
        for start in range(0, len(rows), _CHUNK):
            new, was = rows[start : start + _CHUNK], old_rows[start : start + _CHUNK]
            for name in specs:
                arrays[name][new] = old[1][name][was]
        for row, problem in zip(rows.tolist(), found["problem"].to_list()):
            problems[row] = problem
        missing = np.setdiff1d(np.arange(len(keys)), rows)
    else:
        missing = np.arange(len(keys))
    for start in range(0, len(missing), _CHUNK):
        rows = missing[start : start + _CHUNK]
        values, found_problems = compute(rows)
        for name in specs:
            arrays[name][rows] = values[name]
        for row, problem in zip(rows.tolist(), found_problems):
            problems[row] = problem
    for array in arrays.values():
        array.flush()
    return problems, missing.astype(np.int64)


def _open(folder: Path, settings: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, np.ndarray]] | None:
    """The index and arrays of an existing cache built with `settings`, else None (absent, other
    settings, or damaged: then it is rebuilt)."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
        if {k: manifest.get(k) for k in settings} != settings:
            return None
        index = pl.read_parquet(folder / _INDEX)
        specs = {name: ArraySpec(tuple(spec["shape"]), spec["dtype"]) for name, spec in settings["arrays"].items()}
        arrays = _map(folder, specs)
    except (OSError, ValueError, pl.exceptions.PolarsError) as error:
        if folder.exists():
            log.info("content cache %s not reusable (%s): rebuilding it", folder, error)
        return None
    if any(array.shape[0] != index.height for array in arrays.values()):
        return None
    return index, arrays


def _map(folder: Path, specs: dict[str, ArraySpec]) -> dict[str, np.ndarray]:
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="c") for name in specs}
    for name, spec in specs.items():
        if arrays[name].shape[1:] != spec.shape or arrays[name].dtype != np.dtype(spec.dtype):
            raise DataError(f"{name}.npy has shape {arrays[name].shape} {arrays[name].dtype}, expected {spec}")
    return arrays


def _publish(tmp: Path, folder: Path) -> None:
    """Swap the new cache in; when another process (another rank) published one meanwhile, keep theirs."""
    try:
        replace_folder(tmp, folder)
    except OSError:
        if not (folder / _MANIFEST).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _spec_dict(specs: dict[str, ArraySpec]) -> dict[str, dict[str, Any]]:
    return {name: {"shape": list(spec.shape), "dtype": spec.dtype} for name, spec in sorted(specs.items())}


def file_fingerprint(path: Path | None) -> str:
    """What identifies an image file's content cheaply: its path, size and modification time."""
    if path is None:
        return "none"
    try:
        stat = os.stat(path)
    except OSError:
        return f"{path}|absent"
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def text_fingerprint(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A key for a tokenizer's behaviour: the full serialised state of a fast (Rust) tokenizer, else its
    class, name and vocabulary. Two tokenizers with equal keys give equal token ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = backend.to_str()
    else:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        state = json.dumps([type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), sorted(vocab.items())])
    return hashlib.sha256(state.encode("utf-8")).hexdigest()[:16]
