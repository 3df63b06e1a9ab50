"""Atomic file writes: a crash or an exception never leaves a half-written artifact behind.

Every artifact of a run goes through here: it is written to a temporary name in the same folder
(so that the final rename stays on one file system) and renamed over the target only once complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    The caller creates the temporary file (so it gets the usual permissions, unlike mkstemp's 0600),
    e.g. with a library writer that only accepts a file name, such as `faiss.write_index`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        disk = disk_error(err, path, tmp)
        if disk is not None:
            raise disk from err
        raise


def disk_error(err: BaseException, path: Path, tmp: Path | None = None) -> OSError | None:
    """The disk's refusal (full, read-only, no permission) behind a failed write of `path` (staged at `tmp`,
    a file or a folder), as an OSError naming `path`; None for any other error.

    Rust-backed writers (polars, safetensors) carry the errno only in their message ("... (os error 28)"),
    and a plain OSError from write() names no file, or only the temporary one.
    """
    if isinstance(err, OSError):
        if err.errno is None or not (err.filename is None or _within(err.filename, tmp)):
            return None
        number = err.errno
    else:
        found = _OS_ERROR.search(str(err))
        if found is None:
            return None
        number = int(found.group(1))
    return OSError(number, os.strerror(number), str(path))


def _within(name: str | bytes | int, folder: Path | None) -> bool:
    """Whether the file an OSError names is `folder` (a temporary file or folder) or lies inside it."""
    if folder is None or not isinstance(name, str):
        return False
    return Path(name) == folder or Path(folder) in Path(name).parents


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically, UTF-8 encoded."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as JSON (indent 2, sorted keys, so that files diff cleanly) to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so that large artifacts do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def replace_folder(tmp: Path, dest: Path) -> None:
    """Rename the complete folder `tmp` to `dest`, replacing any folder there (restored on failure)."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex}")
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old)
