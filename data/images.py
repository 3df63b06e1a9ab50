"""What can be wrong with an item's image file, named alike at import (validation) and when decoding.

Validation only reads each file's header (cheap, no pixels decoded), so a missing or foreign file is
reported where the user imports the data; a file whose pixels are broken is caught when it is decoded,
once, by the content cache.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

MISSING = "missing image"
UNREADABLE = "unreadable image"
# What PIL raises for a file that is there but is not a readable image (truncated, foreign, ...).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def problem_of(error: Exception) -> str:
    """The reason for an error raised while opening or decoding an image file."""
    return MISSING if isinstance(error, FileNotFoundError) else UNREADABLE


def image_problem(path: Path) -> str | None:
    """None when `path` is a file whose header names a known image format, else the reason."""
    try:
        with Image.open(path):
            return None
    except DECODE_ERRORS as error:
        return problem_of(error)
