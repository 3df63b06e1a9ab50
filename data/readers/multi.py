"""One table from several files (property parts, Parquet chunks, categories): one plan, rows tagged."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.intake import FILE
from tandemrec.data.readers.csv_table import Locate


def concat_files(scans: Sequence[tuple[str, pl.LazyFrame, Locate]]) -> tuple[pl.LazyFrame, Locate]:
    """The (file name, plan, locator) scans as one plan whose rows carry their file name in `__file`,
    and a locator that asks each file's own in turn."""
    plans = [plan.with_columns(pl.lit(name).alias(FILE)) for name, plan, _ in scans]
    locates = [locate for _, _, locate in scans]

    def locate(error: Exception) -> DataError | None:
        return next((found for found in (each(error) for each in locates) if found), None)

    return pl.concat(plans), locate
