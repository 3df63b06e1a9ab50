"""`tandemrec data import`: read a format, validate with accounting, write the dataset folder.

The folder gets `report.json` (rows in, kept, refused and repaired by reason, per table) next to its
tables, written with them in one atomic swap. Interactions stream from the source to Parquet: the
source is read once to count and once to write, never whole in memory.

Two counts must agree before the folder is published: rows in = kept + refused for every table, and
the rows of each table as written (from the Parquet footers) = the rows the report kept; a mismatch is
a bug, raised as a RuntimeError. A write that fails (full disk, read-only destination) leaves nothing at
DEST and is an OSError whose message names DEST.
"""

from __future__ import annotations

from pathlib import Path

from tandemrec.data.readers import read
from tandemrec.data.report import ValidationReport
from tandemrec.data.validate import validate


def import_dataset(
    format: str, src: str | Path, dest: str | Path, strict: bool = False, **options: object
) -> tuple[Path, ValidationReport]:
    """Read `src` in `format` (reader options as keywords), validate it and write the folder `dest`
    (see the module's docstring for the checks on what is written and the errors of a failed write)."""
    dataset, report = validate(read(format, src, **options), strict=strict)
    return dataset.save(dest, report=report), report
