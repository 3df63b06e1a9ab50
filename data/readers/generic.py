"""Any shop's own logs: CSV, Parquet or JSON Lines files with a column mapping (see mapping.py).

Text formats are parsed leniently with every refusal counted (unparsable timestamp, unknown event type,
a value that is NaN or outside the mapping's `value_range`, ...); Parquet columns keep their types,
checked across files. Every column the mapping names must be in every file it reads. Interactions stay
a lazy plan over the files, so logs larger than memory import in a stream.
"""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path
from typing import Any

import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.intake import Intake, Rule, TableSource
from tandemrec.data.readers.csv_table import Locate, header_of, scan_csv, separator_hint
from tandemrec.data.readers.files import require_file
from tandemrec.data.readers.jsonl_table import fields_seen, scan_jsonl
from tandemrec.data.readers.mapping import FORMATS, Mapping, TableMapping
from tandemrec.data.readers.multi import concat_files
from tandemrec.data.readers.parquet_table import scan_parquet, schema_of
from tandemrec.data.readers.parse import TableBuilder, epoch, mapped, number, text, timestamp

_ID_KINDS = ("text", "integer")
# The keys that name source columns, in the order their columns are checked.
_COLUMN_KEYS = ("user_id", "item_id", "timestamp", "event", "value", "title", "text", "category", "image", "features")
# The canonical mapping's keys whose columns a file may lack.
_OPTIONAL_KEYS = ("event", "value", "title", "text", "category", "image")


def read_generic(path: str | Path, mapping: Mapping | dict[str, Any] | str | Path | None = None) -> Dataset:
    """Read the tables `mapping` describes, with files relative to `path` (a folder, or the one
    interactions file when there is no mapping)."""
    src = Path(path)
    if src.is_file() and mapping is None:
        canonical = {c: c for c in ("user_id", "item_id", "timestamp", "event", "value")}
        root, tables = src.parent, _present_only(src.parent, Mapping(TableMapping(file=src.name, **canonical)))
    else:
        if not src.is_dir():
            raise DataError(f"{src}: no such folder, expected the folder the mapping's files are in")
        root = src
        if mapping is None:
            tables = _present_only(src, Mapping.canonical(src))
        elif isinstance(mapping, Mapping):
            tables = mapping
        elif isinstance(mapping, dict):
            tables = Mapping.parse(mapping)
        else:
            tables = Mapping.load(mapping)
    interactions, sources = _interactions(root, tables.interactions), {}
    sources["interactions"] = interactions[1]
    if tables.items is not None:
        items_plan, sources["items"] = _items(root, tables.items)
        items = sources["items"].collect(items_plan)
    else:
        items = _items_of(interactions[0], sources["interactions"])
    users = None
    if tables.users is not None:
        users_plan, sources["users"] = _users(root, tables.users)
        users = sources["users"].collect(users_plan)
    root = root.resolve()
    return Dataset(interactions[0], items, users, root=root, name=root.name, intake=Intake(sources))


def _files(root: Path, pattern: str) -> list[Path]:
    """The files a mapping's `file` names: one file, every file of a folder, or a glob."""
    path = root / pattern
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS)
        if not files:
            raise DataError(f"{path}: is a directory without {', '.join(sorted(FORMATS))} files, expected a data file")
        return files
    if any(ch in pattern for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path)))
        if not files:
            raise DataError(f"{path}: no file matches")
        return files
    return [require_file(path, "a data file")]


def _format(file: Path, table: TableMapping) -> str:
    """The mapping's `format`, else the one the file's extension says."""
    format = table.format or FORMATS.get(file.suffix.lower())
    if format not in ("csv", "parquet", "jsonl"):
        raise DataError(f"{file}: cannot tell the format from the name; set format = csv, parquet or jsonl")
    return format


def _separator(file: Path, table: TableMapping) -> str:
    return table.separator or ("\t" if file.suffix.lower() == ".tsv" else ",")


def _mapped(table: TableMapping) -> list[tuple[str, str]]:
    """(mapping key, source column) of every column the mapping names, lists (text, features) unrolled."""
    pairs = []
    for key in _COLUMN_KEYS:
        value = getattr(table, key)
        pairs += [(key, column) for column in ([value] if isinstance(value, str) else value or [])]
    return pairs


def _columns_of(file: Path, format: str, table: TableMapping, what: str) -> list[str]:
    """The column names a file has: its CSV header, Parquet schema, or the fields of its JSON records."""
    require_file(file, what)
    if format == "csv":
        return header_of(file, _separator(file, table), table.encoding)
    if format == "parquet":
        return list(schema_of(file, what))
    return fields_seen(file, [column for _, column in _mapped(table)])


def _require_mapped(file: Path, format: str, table: TableMapping, what: str) -> None:
    """A DataError naming the mapping key, its column, the file and the file's columns when a column the
    mapping names is not in the file: a typo must not become a column of nulls."""
    columns = _columns_of(file, format, table, what)
    for key, column in _mapped(table):
        if column not in columns:
            hint = separator_hint(columns, _separator(file, table)) if format == "csv" else ""
            raise DataError(
                f"{file}: [{what}] {key} = {column!r} names a column the file does not have; "
                f"its columns are {columns}{hint}"
            )


def _present_only(root: Path, mapping: Mapping) -> Mapping:
    """The canonical mapping without the optional columns its files lack: there the names are a
    convention the files may follow in part, not columns the user said are there."""

    def trim(table: TableMapping | None, what: str) -> TableMapping | None:
        if table is None:
            return None
        columns = _columns_of(root / table.file, _format(root / table.file, table), table, what)
        return dataclasses.replace(table, **{k: None for k in _OPTIONAL_KEYS if getattr(table, k) not in columns})

    return Mapping(*(trim(getattr(mapping, what), what) for what in ("interactions", "items", "users")))


def _scan(
    root: Path, table: TableMapping, columns: list[str], optional: list[str], what: str, ids: list[str]
) -> tuple[pl.LazyFrame, list[Rule], Locate, dict[str, str], str]:
    """The mapped source columns of a table's files as one plan, with the rules and locator of its
    format, the type family of each column, and the row label ("row" or "line")."""
    files = _files(root, table.file)
    format = _format(files[0], table)
    for file in files:
        _require_mapped(file, format, table, what)
    kinds = {c: "text" for c in [*columns, *optional]}
    if format == "parquet":
        frame, kinds = scan_parquet(files, columns, what, optional)
        return frame, [], lambda error: None, kinds, "row"
    scans, rules = [], []
    for file in files:
        if format == "csv":
            frame, rules, locate = scan_csv(file, columns, what, _separator(file, table), table.encoding, optional)
        else:
            fields = {c: pl.String for c in [*columns, *optional]}
            frame, rules, locate = scan_jsonl(file, fields, what, ids)
        scans.append((file.name, frame, locate))
    frame, locate = concat_files(scans)
    return frame, rules, locate, kinds, "row" if format == "csv" else "line"


def _id(builder: TableBuilder, column: str, source: str, kinds: dict[str, str], file: str) -> None:
    if kinds[source] not in _ID_KINDS:
        raise DataError.at(file, f"{kinds[source]} values, expected integer or text ids", column=source)
    builder.text(column, source)


def _interactions(root: Path, table: TableMapping) -> tuple[pl.LazyFrame, TableSource]:
    columns = [table.user_id, table.item_id, table.timestamp]
    optional = [c for c in (table.event, table.value) if c]
    ids = [table.user_id, table.item_id]
    frame, rules, locate, kinds, label = _scan(root, table, columns, optional, "interactions", ids)
    builder = TableBuilder(rules=list(rules))
    _id(builder, "user_id", table.user_id, kinds, table.file)
    _id(builder, "item_id", table.item_id, kinds, table.file)
    ts, family = table.timestamp, kinds[table.timestamp]
    if family == "text":
        parsed = timestamp(ts, table.timestamp_unit, table.timestamp_format)
        builder.parsed("timestamp", ts, parsed, "unparsable timestamp")
    elif family in ("integer", "float"):
        builder.expr("timestamp", epoch(ts, table.timestamp_unit or "auto", numeric=True), ts)
    elif family == "date":
        builder.expr("timestamp", pl.col(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), ts)
    elif family == "datetime":  # already UTC microseconds (parquet_table)
        builder.expr("timestamp", pl.col(ts), ts)
    else:
        raise DataError.at(table.file, f"{family} values, expected timestamps", column=ts)
    if table.event and table.events:
        reason = f"unknown event type (expected {', '.join(table.events)})"
        builder.parsed("event", table.event, mapped(table.event, table.events), reason)
    elif table.event:
        builder.text("event", table.event)
    else:
        builder.expr("event", pl.lit(table.event_name or "interaction"))
    if table.value:
        if kinds[table.value] == "text":
            builder.parsed("value", table.value, number(table.value), "unparsable value")
        else:
            builder.expr("value", pl.col(table.value).cast(pl.Float64), table.value)
        builder.bounded("value", "value", *(table.value_range or ()))
    else:
        builder.expr("value", pl.lit(None, pl.Float64))
    return builder.build(frame, table.file, label, locate)


def _items(root: Path, table: TableMapping) -> tuple[pl.LazyFrame, TableSource]:
    texts = [table.text] if isinstance(table.text, str) else list(table.text or [])
    optional = [c for c in (table.title, *texts, table.category, table.image, *table.features) if c]
    frame, rules, locate, kinds, label = _scan(root, table, [table.item_id], optional, "items", [table.item_id])
    builder = TableBuilder(rules=list(rules))
    _id(builder, "item_id", table.item_id, kinds, table.file)
    for column, source in (("title", table.title), ("category", table.category), ("image", table.image)):
        builder.text(column, source) if source else builder.expr(column, pl.lit(None, pl.String))
    joined = pl.concat_str([text(c) for c in texts], separator=". ", ignore_nulls=True) if texts else pl.lit(None, pl.String)
    builder.expr("text", pl.when(joined != "").then(joined), ", ".join(texts) or None)
    for feature in table.features:
        builder.text(feature, feature)
    return builder.build(frame, table.file, label, locate)


def _users(root: Path, table: TableMapping) -> tuple[pl.LazyFrame, TableSource]:
    ids = [table.user_id]
    frame, rules, locate, kinds, label = _scan(root, table, ids, list(table.features), "users", ids)
    builder = TableBuilder(rules=list(rules))
    _id(builder, "user_id", table.user_id, kinds, table.file)
    for feature in table.features:
        builder.text(feature, feature)
    return builder.build(frame, table.file, label, locate)


def _items_of(interactions: pl.LazyFrame, source: TableSource) -> pl.DataFrame:
    """Items without content, one per distinct item id of the interactions (no items file mapped)."""
    ids = source.collect(interactions.select("item_id").unique().drop_nulls().sort("item_id"))
    if ids.is_empty():
        raise DataError(f"{source.file}: no item ids in the interactions, so no items (and no [items] table mapped)")
    return ids.with_columns(title=pl.lit(None, pl.String), text=pl.lit(None, pl.String))
