"""The column mapping of the generic reader: which file holds each table, and which column is which.

Given as TOML (`tandemrec data import generic SRC DEST --map mapping.toml`) or as `data.mapping` in a run
config, with one section per table:

    [interactions]
    file = "events.csv"          # relative to SRC; a folder or a glob reads every file in it as one table
    user_id = "visitor"          # source column of each canonical column
    item_id = "sku"
    timestamp = "ts"             # epoch numbers (unit by magnitude) or ISO 8601 text, unless told:
    timestamp_unit = "ms"        #   s | ms | us | ns | auto
    timestamp_format = "%d/%m/%Y %H:%M"   # strptime, for other text
    event = "type"               # a column; or event_name = "view" for all rows
    events = { pageview = "view", buy = "purchase" }   # rename event values; others are refused
    value = "qty"                # a number; NaN is refused
    value_range = [1, 5]         # lowest and highest allowed value (inclusive; inf for no bound): others are refused
    separator = ";"              # CSV only; format = "csv" | "parquet" | "jsonl" when the extension
    encoding = "latin-1"         #   does not say it
    [items]
    file = "products.parquet"
    item_id = "sku"
    title = "name"
    text = ["description", "tags"]   # one column or several, joined
    category = "cat"
    image = "picture"            # a path relative to SRC
    features = ["brand"]         # kept as categorical columns
    [users]
    file = "customers.csv"
    user_id = "id"
    features = ["region"]

Every column a key names must be in the file, optional keys included: a misspelt name is an error that
names the key, the column and the columns the file has, never a column of nulls. Without a mapping, SRC
is a folder of `interactions.*`, `items.*` and `users.*` files with the canonical column names (the
optional ones used when present). Without an `[items]` section, items are the distinct item ids of the interactions.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandemrec.data.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass
class TableMapping:
    """Where one table is and how to read it; the column keys name source columns."""

    file: str
    format: str | None = None
    separator: str | None = None
    encoding: str = "utf-8"
    user_id: str | None = None
    item_id: str | None = None
    timestamp: str | None = None
    timestamp_unit: str | None = None
    timestamp_format: str | None = None
    event: str | None = None
    event_name: str | None = None
    events: dict[str, str] | None = None
    value: str | None = None
    value_range: list[float] | None = None
    title: str | None = None
    text: str | list[str] | None = None
    category: str | None = None
    image: str | None = None
    features: list[str] = field(default_factory=list)


_REQUIRED = {"interactions": ("user_id", "item_id", "timestamp"), "items": ("item_id",), "users": ("user_id",)}
_ALLOWED = {
    "interactions": {
        "user_id", "item_id", "timestamp", "timestamp_unit", "timestamp_format", "event", "event_name", "events", "value",
        "value_range",
    },
    "items": {"item_id", "title", "text", "category", "image", "features"},
    "users": {"user_id", "features"},
}
_COMMON = {"file", "format", "separator", "encoding"}


@dataclass
class Mapping:
    interactions: TableMapping
    items: TableMapping | None = None
    users: TableMapping | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str = "mapping") -> Mapping:
        """From the TOML tables; unknown tables or keys and missing required keys are DataErrors."""
        unknown = set(raw) - set(_REQUIRED)
        if unknown:
            raise DataError(f"{where}: unknown table(s) {sorted(unknown)}, expected interactions, items, users")
        if "interactions" not in raw:
            raise DataError(f"{where}: no [interactions] table")
        tables = {name: _table(name, raw[name], where) for name in raw}
        return cls(**tables)

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such mapping file, expected TOML with [interactions], [items], [users]")
        try:
            return cls.parse(tomllib.loads(path.read_text()), str(path))
        except tomllib.TOMLDecodeError as error:
            raise DataError(f"{path}: not valid TOML ({error})") from error

    @classmethod
    def canonical(cls, folder: Path) -> Mapping:
        """The mapping of a folder of `interactions.*`, `items.*`, `users.*` with the canonical names."""
        found = {name: _find(folder, name) for name in _REQUIRED}
        if found["interactions"] is None:
            raise DataError(
                f"{folder}: no interactions file (interactions.csv, .parquet or .jsonl) and no mapping given"
            )
        tables: dict[str, TableMapping] = {}
        for name, file in found.items():
            if file is not None:
                columns = {c: c for c in _REQUIRED[name]}
                if name == "interactions":
                    columns.update(event="event", value="value")
                if name == "items":
                    columns.update(title="title", text="text", category="category", image="image")
                tables[name] = TableMapping(file=file.name, **columns)
        return cls(**tables)


def _table(name: str, raw: Any, where: str) -> TableMapping:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: [{name}] must be a table of keys")
    allowed = _ALLOWED[name] | _COMMON
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(f"{where}: [{name}] unknown key(s) {unknown}, expected some of {sorted(allowed)}")
    missing = [key for key in ("file", *_REQUIRED[name]) if key not in raw]
    if missing:
        raise DataError(f"{where}: [{name}] needs {missing}")
    for key, value in raw.items():
        if key == "events":
            if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
                raise DataError(f"{where}: [{name}] events must map source values to event names")
        elif key == "value_range":
            _check_range(value, raw, f"{where}: [{name}] value_range")
        elif key in ("features", "text"):
            names = [value] if key == "text" and isinstance(value, str) else value
            if not (isinstance(names, list) and all(isinstance(v, str) for v in names)):
                raise DataError(f"{where}: [{name}] {key} must be a list of column names")
        elif not isinstance(value, str):
            raise DataError(f"{where}: [{name}] {key} must be a string, got {value!r}")
    return TableMapping(**raw)


def _check_range(value: Any, table: dict[str, Any], where: str) -> None:
    """A value range is [lowest, highest] numbers with lowest <= highest, for a mapped value column."""
    numbers = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not (numbers and len(value) == 2 and value[0] <= value[1]):
        raise DataError(f"{where} must be [lowest, highest] with lowest <= highest, got {value!r}")
    if "value" not in table:
        raise DataError(f"{where} needs a value column (value = \"...\") to apply to")


def _find(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{ext}" for ext in FORMATS if (folder / f"{name}{ext}").is_file()), None)
