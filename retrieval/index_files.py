"""The item index's save format: index.faiss, ids.json and a manifest that vouches for both.

Kept apart from `ItemIndex` because reading a folder back is mostly refusing what is not a whole, matching
index (a missing file, a checksum mismatch from a save interrupted half-way, another model's index), and
those checks are easier to read, and to keep complete, on their own.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tandemrec.io.atomic import atomic_path, atomic_write_json, sha256_file
from tandemrec.retrieval.errors import RetrievalError

FORMAT = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_KEYS = frozenset(
    {"format", "factory", "dim", "count", "metric", "created", "index_sha256", "ids_sha256"}
)
SEARCH_KEY = "search"  # manifest key of the search parameters; optional, so older manifests still load
RESERVED_KEYS = MANIFEST_KEYS | {SEARCH_KEY}


def write_index(
    folder: str | Path,
    index: "faiss.Index",
    ids: np.ndarray,
    metadata: dict,
    factory: str | None,
    search: dict[str, int],
) -> None:
    """Write index.faiss, ids.json and manifest.json into `folder`, each atomically.

    The manifest goes last and carries both checksums, so a save interrupted half-way is detected by
    `read_index` as a checksum mismatch rather than read as a mixed index. It also keeps the search
    parameters, so a loaded index searches exactly as the saved one did.
    """
    folder = Path(folder)
    with atomic_path(folder / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
        index_sha256 = sha256_file(tmp)
    atomic_write_json(folder / IDS_FILE, ids.tolist())
    manifest = {
        **metadata,
        "format": FORMAT,
        "factory": factory,
        "dim": index.d,
        "count": index.ntotal,
        "metric": "inner_product",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "index_sha256": index_sha256,
        "ids_sha256": sha256_file(folder / IDS_FILE),
        SEARCH_KEY: search,
    }
    atomic_write_json(folder / MANIFEST_FILE, manifest)


def read_index(
    folder: str | Path, expect_dim: int | None = None, expect_model_hash: str | None = None
) -> tuple["faiss.Index", list[str | None], dict, str | None, dict]:
    """(FAISS index, ids, caller metadata, factory, search parameters) of a folder written by `write_index`,
    checking checksums, counts, dim and, if given, the model hash."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RetrievalError(f"index folder {folder} does not exist")
    for name in (MANIFEST_FILE, INDEX_FILE, IDS_FILE):
        if not (folder / name).is_file():
            raise RetrievalError(f"index folder {folder} has no {name}")
    manifest = _read_json(folder / MANIFEST_FILE)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RetrievalError(f"{folder / MANIFEST_FILE} is not an index manifest of format {FORMAT}")
    missing = sorted(MANIFEST_KEYS - manifest.keys())
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
    metadata = {key: value for key, value in manifest.items() if key not in RESERVED_KEYS}
    if expect_model_hash is not None and metadata.get("model_hash") != expect_model_hash:
        raise RetrievalError(
            f"index was built by another model (model_hash {metadata.get('model_hash')!r}, "
            f"expected {expect_model_hash!r}): rebuild it for this model"
        )
    search = manifest.get(SEARCH_KEY) or {}
    if not isinstance(search, dict):
        raise RetrievalError(f"{folder / MANIFEST_FILE}: '{SEARCH_KEY}' must be an object, got {search!r}")
    return index, ids, metadata, manifest["factory"], search


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RetrievalError(f"{path} is not valid JSON: {e}") from e
