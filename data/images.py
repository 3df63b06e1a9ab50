"""What can be wrong with an item's image file, named alike at import (validation) and when decoding.

Validation only reads each file's header (cheap, no pixels decoded), so a missing or foreign file is
reported where the user imports the data; a file whose pixels are broken is caught when it is decoded,
once, by the content cache.

An image path comes from the data, so it is not trusted: every image is opened by `open_image`, which
refuses a path that resolves (symlinks followed) outside the folder the data came from, and anything
but a regular file (a named pipe would block `open` forever, a device may act on being opened), before
opening it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MISSING = "missing image"
UNREADABLE = "unreadable image"
OUTSIDE = "image outside the source folder"
NOT_REGULAR = "image is not a regular file"
# What PIL raises for a file that is there but is not a readable image (truncated, foreign, ...).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


class RefusedImage(OSError):
    """An image path that is not opened; `reason` is OUTSIDE or NOT_REGULAR."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def problem_of(error: Exception) -> str:
    """The reason for an error raised while opening or decoding an image file."""
    if isinstance(error, RefusedImage):
        return error.reason
    return MISSING if isinstance(error, FileNotFoundError) else UNREADABLE


def image_problem(path: Path, roots: Sequence[Path] | None = None) -> str | None:
    """None when `path` is a regular file inside one of `roots` whose header names a known image format,
    else the reason."""
    try:
        with open_image(path, roots):
            return None
    except DECODE_ERRORS as error:
        return problem_of(error)


@contextmanager
def open_image(path: Path, roots: Sequence[Path] | None) -> Iterator[Image.Image]:
    """PIL's lazy image of `path`, once it is known to be a regular file inside one of `roots` (the
    source folder, and any folder the user named for images; no confinement when `roots` is None: a path
    handed in by the program, not read from data).

    Raises RefusedImage before anything is opened, FileNotFoundError when there is no file, and PIL's
    errors for a file that is not an image. The file is opened non-blocking and checked again, so a
    file swapped for a pipe after the check cannot block either.
    """
    real = Path(os.path.realpath(path))  # unlike Path.resolve, no RuntimeError on a symlink loop
    if roots is not None and not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        raise RefusedImage(path, OUTSIDE)
    _require_regular(path, os.stat(real).st_mode)
    descriptor = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        _require_regular(path, os.fstat(file.fileno()).st_mode)
        with Image.open(file) as image:
            yield image


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise RefusedImage(path, NOT_REGULAR)
