"""Readers of public formats into the canonical tables, one module per format, and their registry.

Each reader takes the folder (or file) a format ships as and returns a raw `Dataset`: the interactions
as a lazy plan over the source file, items and users in memory, and an `Intake` saying where each row
came from and what the format refuses. `validate` then counts every refusal by reason; `import_dataset`
(data/importer.py) does both and writes the dataset folder with its `report.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tandemrec.data.dataset import Dataset
from tandemrec.data.readers.amazon import read_amazon
from tandemrec.data.readers.generic import read_generic
from tandemrec.data.readers.hm import read_hm
from tandemrec.data.readers.movielens import read_movielens
from tandemrec.data.readers.retailrocket import read_retailrocket

READERS: dict[str, Callable[..., Dataset]] = {
    "movielens": read_movielens,
    "amazon": read_amazon,
    "hm": read_hm,
    "retailrocket": read_retailrocket,
    "generic": read_generic,
}

__all__ = ["READERS", "read", "read_amazon", "read_generic", "read_hm", "read_movielens", "read_retailrocket"]


def read(format: str, src: str | Path, **options: object) -> Dataset:
    """Read `src` in `format` (one of READERS) with the reader's keyword options."""
    if format not in READERS:
        raise ValueError(f"unknown format {format!r}, expected one of {', '.join(READERS)}")
    return READERS[format](src, **options)
