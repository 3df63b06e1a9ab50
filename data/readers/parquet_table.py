"""Parquet files scanned as one table, each row tagged with its file and row, types checked across files.

Parquet carries types, so what can go wrong is the schema: a mapped column missing from a file, or a
column that is integer in one file and text in another (ids that mix types: "007" and 7 may or may not
be the same id). Both are DataErrors naming the file and column, found from the files' footers alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.intake import FILE, ROW
from tandemrec.data.readers.files import require_file


def kind(dtype: pl.DataType) -> str:
    """The family a column's type belongs to; files may differ in width (Int32, Int64), not in family."""
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "float"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "text"
    return str(dtype)


def schema_of(file: Path, what: str) -> dict[str, pl.DataType]:
    """The columns and types of a Parquet file, from its footer; a DataError if it is not one."""
    require_file(file, what)
    try:
        return dict(pl.read_parquet_schema(file))
    except (OSError, pl.exceptions.PolarsError) as error:
        raise DataError(f"{file}: unreadable Parquet file ({error})") from error


_UNIFIED = {"integer": pl.Int64, "float": pl.Float64, "text": pl.String, "date": pl.Date}


def scan_parquet(
    files: Sequence[Path], columns: Sequence[str], what: str, optional: Sequence[str] = ()
) -> tuple[pl.LazyFrame, dict[str, str]]:
    """The `columns` (and the `optional` ones present) of every file, with `__file` and `__row` (1-based),
    and the type family of each column."""
    kinds: dict[str, tuple[str, str]] = {}
    plans = []
    for file in files:
        schema = schema_of(file, what)
        missing = [c for c in columns if c not in schema]
        if missing:
            raise DataError(f"{file}: missing column(s) {missing}, expected {list(columns)}; it has {list(schema)}")
        present = [*columns, *(c for c in optional if c in schema)]
        for column in present:
            family = kind(schema[column])
            seen = kinds.setdefault(column, (family, file.name))
            if seen[0] != family:
                raise DataError.at(
                    str(file),
                    f"{family} values, but {seen[1]} has {seen[0]} values (ids and values must not mix types)",
                    column=column,
                )
        plans.append((file, present, schema))
    frames = []
    for file, present, schema in plans:
        exprs = [_unified(c, schema[c]) for c in present]
        exprs += [pl.lit(None, pl.String).alias(c) for c in optional if c not in present]
        frame = pl.scan_parquet(file).select(exprs).with_row_index(ROW, offset=1)
        frames.append(frame.with_columns(pl.lit(file.name).alias(FILE)))
    return pl.concat(frames), {c: family for c, (family, _) in kinds.items()}


def _unified(column: str, dtype: pl.DataType) -> pl.Expr:
    target = _UNIFIED.get(kind(dtype))
    if isinstance(dtype, pl.Datetime):
        col = pl.col(column)
        at_utc = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
        return at_utc.dt.cast_time_unit("us")
    return pl.col(column) if target is None else pl.col(column).cast(target)
