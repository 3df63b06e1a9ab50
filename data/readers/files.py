"""Checks on the files a reader is pointed at, before any parsing: each failure names the path.

Readers parse lazily (polars plans), so a structural problem deep in a file surfaces only when the plan
runs; the cheap checks here (the path is a file, it is not empty, it has data after its header, its last
line is complete) run at once; `numbered_lines` serves the readers' locators, which find the line behind
a parser's error afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tandemrec.data.errors import DataError

_TAIL = 1 << 16


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a non-empty file; else a DataError that says what was expected there."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected {what}")
    if not path.is_file():
        raise DataError(f"{path}: no such file, expected {what}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, expected {what}")
    return path


def require_folder(path: Path, what: str) -> Path:
    if path.is_file():
        raise DataError(f"{path}: is a file, expected {what}")
    if not path.is_dir():
        raise DataError(f"{path}: no such folder, expected {what}")
    return path


def first_line(path: Path, encoding: str) -> str:
    """The first line, decoded, without its line break and a leading byte-order mark."""
    with open(path, "rb") as handle:
        head = handle.readline()
    return _decode(path, head, encoding, 1).lstrip("\ufeff").rstrip("\r\n")


def has_data_after_header(path: Path) -> bool:
    """Whether any non-blank line follows the first one (reads only up to the first such line)."""
    with open(path, "rb") as handle:
        handle.readline()
        return any(line.strip() for line in handle)


def last_line_if_cut(path: Path) -> tuple[int, str] | None:
    """(line number, text) of the last line when the file does not end with a line break, else None.

    A file cut short by a failed download or a full disk ends mid-line; whether that line is complete
    is the format's call. Counting the lines reads the file once, only in this case.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - _TAIL))
        tail = handle.read()
    if tail.endswith(b"\n"):
        return None
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b"")) + 1
    return lines, tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace").rstrip("\r")


def numbered_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, decoded; bytes not in `encoding` are a DataError naming the line."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, _decode(path, line, encoding, number).rstrip("\r\n")


def _decode(path: Path, data: bytes, encoding: str, line: int) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        byte = data[err.start : err.start + 1].hex()
        hint = ""
        if encoding.lower().startswith("utf"):
            hint = " (set encoding = 'latin-1' or 'cp1252' if that is how it was written)"
        problem = f"byte 0x{byte} at column {err.start + 1} is not valid {encoding}{hint}"
        raise DataError.at(str(path), problem, row=line, row_label="line") from None
