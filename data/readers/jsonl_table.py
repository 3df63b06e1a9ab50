"""JSON Lines files, scanned lazily with one record per line, every problem located by line number.

Each line is read as text and decoded by polars into the fields asked for (scalars as text: the readers
parse them, counting what does not parse), so line numbers stay exact and blank lines are skipped. An
invalid line, a cut-off last line or a field of the wrong shape is a DataError naming the line; an id
that is a JSON string on one line and a number on another is one too (they may or may not be the same
id: "007" and 7), through a fatal rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.intake import HELPER_PREFIX, ROW, Rule
from tandemrec.data.readers.csv_table import Locate
from tandemrec.data.readers.files import last_line_if_cut, numbered_lines, require_file

_LINE = "__line"
# A byte that cannot occur in a valid JSON line (control characters must be escaped), so that polars
# reads each line as one text field.
_NO_SEPARATOR = "\x1f"


def scan_jsonl(
    path: Path, fields: dict[str, pl.DataType], what: str, id_fields: Sequence[str] = ()
) -> tuple[pl.LazyFrame, list[Rule], Locate]:
    """The `fields` of each record (missing ones null) with `__row` (the line number), the fatal rules
    that catch ids of mixed JSON types, and a locator for parser errors raised when the plan runs."""
    require_file(path, what)
    cut = last_line_if_cut(path)
    if cut is not None and cut[1].strip() and _problem(cut[1], fields) is not None:
        raise DataError.at(
            str(path), "the file ends in the middle of a record (truncated?)", row=cut[0], row_label="line"
        )
    lines = (
        pl.scan_csv(
            path,
            has_header=False,
            separator=_NO_SEPARATOR,
            quote_char=None,
            schema={_LINE: pl.String},
            encoding="utf8",
        )
        .with_row_index(ROW, offset=1)
        .with_columns(pl.col(_LINE).str.strip_chars_start("\ufeff").str.strip_chars())
        .filter(pl.col(_LINE).str.len_bytes() > 0)
    )
    rules = []
    mixed = []
    for field in id_fields:
        kind = _first_kind(path, field)
        if kind is None:
            continue
        flag = f"{HELPER_PREFIX}mixed_{field}"
        other = "number" if kind == "string" else "string"
        mixed.append(pl.col(_LINE).str.contains(_kind_pattern(field, other)).alias(flag))
        reason = f"field {field!r} is a JSON {other} here, a {kind} on the first record (ids that mix types)"
        rules.append(Rule(reason, None, pl.col(flag), fatal=True))
    decoded = lines.with_columns(*mixed, pl.col(_LINE).str.json_decode(pl.Struct(fields)).alias(_LINE))
    frame = decoded.unnest(_LINE)

    def locate(error: Exception) -> DataError | None:
        for number, line in numbered_lines(path, "utf-8"):
            found = _problem(line, fields) if line.strip() else None
            if found:
                return DataError.at(str(path), found, row=number, row_label="line")
        return None

    return frame, rules, locate


def fields_seen(path: Path, wanted: Sequence[str]) -> list[str]:
    """The field names of the file's records, in order of appearance, read until each of `wanted` is seen.

    JSON Lines has no header: a record may leave out a field that is null, so a field is there when any
    record has it. Usually the first record has them all; only a field no record has (a misspelt name in
    a mapping) costs a whole pass. Lines that are not JSON objects are skipped: the scan reports them.
    """
    seen: dict[str, None] = {}
    for _, line in numbered_lines(path, "utf-8"):
        if all(field in seen for field in wanted):
            break
        try:
            record = _loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(record, dict):
            seen.update(dict.fromkeys(record))
    return list(seen)


def _loads(line: str) -> object:
    """One JSON value, strictly: NaN and Infinity, which Python accepts but JSON (and polars) do not,
    are a ValueError."""
    return json.loads(line.lstrip("\ufeff"), parse_constant=_not_json)


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON value (write it as a string or null)")


def _kind_pattern(field: str, kind: str) -> str:
    start = rf'[{{,]\s*"{field}"\s*:\s*'
    return start + ('"' if kind == "string" else r"-?[0-9]")


def _first_kind(path: Path, field: str) -> str | None:
    """Whether `field` is a JSON string or number on the first record that has it (None: neither)."""
    for _, line in numbered_lines(path, "utf-8"):
        if not line.strip():
            continue
        try:
            value = _loads(line).get(field)
        except (ValueError, AttributeError):
            return None  # the locator reports the line
        if value is not None:
            return "string" if isinstance(value, str) else "number" if isinstance(value, (int, float)) else None
    return None


def _problem(line: str, fields: dict[str, pl.DataType]) -> str | None:
    """What is wrong with one line, or None."""
    try:
        record = _loads(line)
    except ValueError as error:
        return f"invalid JSON ({error})"
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for field, dtype in fields.items():
        value = record.get(field)
        shape = _shape_problem(value, dtype)
        if shape:
            return f"field {field!r}: {shape}"
    return None


def _shape_problem(value: object, dtype: pl.DataType) -> str | None:
    if value is None:
        return None
    if isinstance(dtype, pl.List):  # a single value is taken as a list of one, as polars does
        if isinstance(value, dict):
            return f"expected a list, got {json.dumps(value)[:40]}"
        values = value if isinstance(value, list) else [value]
        return next((p for p in (_shape_problem(v, dtype.inner) for v in values) if p), None)
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            return f"expected an object, got {json.dumps(value)[:40]}"
        return next((p for p in (_shape_problem(value.get(f.name), f.dtype) for f in dtype.fields) if p), None)
    if isinstance(value, (list, dict)):
        return f"expected a single value, got {json.dumps(value)[:40]}"
    return None
