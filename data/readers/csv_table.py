"""CSV files with a header, scanned lazily as text, with every structural problem located in the file.

Values stay text here (the readers parse them, counting what does not parse); what is checked is the
shape: the expected columns are in the header, there are rows after it, the last line is complete, no
line has more fields than the header (an unquoted separator inside a value shifts every field after it)
and every byte is in the file's encoding. A row with fewer fields has its missing fields null, which the
readers refuse as missing values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.intake import HELPER_PREFIX, ROW, Rule
from tandemrec.data.readers.files import (
    first_line,
    has_data_after_header,
    last_line_if_cut,
    numbered_lines,
    require_file,
)

# Turns a parser error raised while a plan runs into a DataError naming the line (None: no line to blame).
Locate = Callable[[Exception], DataError | None]
_SEPARATORS = (",", ";", "\t", "|")
_EXTRA = f"{HELPER_PREFIX}extra_field"  # a field beyond the header's: the row is shifted


def is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


def scan_csv(
    path: Path,
    columns: Sequence[str],
    what: str,
    separator: str = ",",
    encoding: str = "utf-8",
    optional: Sequence[str] = (),
) -> tuple[pl.LazyFrame, list[Rule], Locate]:
    """The `columns` (and those of `optional` present) of a CSV file as text, with `__row` (1 = the first
    data row); the fatal rule that catches a row with one field too many, and a function that turns a
    parser error raised later (more fields still) into a DataError naming the line."""
    require_file(path, what)
    header = header_of(path, separator, encoding)
    missing = [column for column in columns if column not in header]
    if missing:
        raise DataError.at(
            str(path),
            f"header has columns {header}, expected {list(columns)}; "
            f"missing {missing}{separator_hint(header, separator)}",
            row=1,
            row_label="line",
        )
    if len(set(header)) != len(header):
        duplicated = sorted({c for c in header if header.count(c) > 1})
        raise DataError.at(str(path), f"header names columns {duplicated} more than once", row=1, row_label="line")
    if not has_data_after_header(path):
        raise DataError(f"{path}: has a header but no data rows, expected {what}")
    cut = last_line_if_cut(path)
    if cut is not None and len(_fields(cut[1], separator)) < len(header):
        found = len(_fields(cut[1], separator))
        raise DataError.at(
            str(path),
            f"{found} fields, expected {len(header)}: the file ends in the middle of a row (truncated?)",
            row=cut[0],
            row_label="line",
        )
    # Every field is text, and one more than the header names catches shifted rows.
    options = {
        "separator": separator,
        "has_header": False,
        "skip_rows": 1,
        "schema": {c: pl.String for c in [*header, _EXTRA]},
        "missing_columns": "insert",
    }
    if is_utf8(encoding):
        frame = pl.scan_csv(path, encoding="utf8", **options)
    else:  # polars scans UTF-8 only: other encodings are decoded in memory (rare, and small in practice)
        frame = pl.read_csv(path, encoding=encoding, **options).lazy()
    present = list(dict.fromkeys([*columns, *(c for c in optional if c in header)]))
    absent = [pl.lit(None, pl.String).alias(c) for c in optional if c not in header]
    frame = frame.select(*present, *absent, _EXTRA).with_row_index(ROW, offset=1)
    shifted = Rule(
        f"more fields than the {len(header)} of the header (a separator inside an unquoted value?)",
        None,
        pl.col(_EXTRA).is_not_null(),
        fatal=True,
    )

    def locate(error: Exception) -> DataError | None:
        lines = (f"{line}\n" for _, line in numbered_lines(path, encoding))
        reader = csv.reader(lines, delimiter=separator)
        for record in reader:
            if reader.line_num > 1 and len(record) > len(header):
                return DataError.at(
                    str(path),
                    f"{len(record)} fields, expected {len(header)} as in the header",
                    row=reader.line_num,
                    row_label="line",
                )
        return None

    return frame, [shifted], locate


def header_of(path: Path, separator: str, encoding: str) -> list[str]:
    """The column names of the file's header line."""
    return _fields(first_line(path, encoding), separator)


def _fields(line: str, separator: str) -> list[str]:
    return next(csv.reader(io.StringIO(line), delimiter=separator), [])


def separator_hint(header: list[str], separator: str) -> str:
    """A hint for messages when the header is one field holding another common separator, else ""."""
    if len(header) != 1:
        return ""
    other = next((s for s in _SEPARATORS if s != separator and s in header[0]), None)
    return f" (the header is one field: is the separator {other!r}?)" if other else ""
