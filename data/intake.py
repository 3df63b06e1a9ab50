"""Where a reader's rows came from and which of them its format refuses, for validation to account.

A reader parses leniently: a value it cannot parse becomes null, with the raw text kept in a helper
column, and the refusals its format needs (unparsable timestamp, unknown event type, ...) are described
as `Rule`s. `validate` applies them together with the table rules in one pass over the data, so that one
count covers every reason (rows in = rows kept + rows refused), and in strict mode it names the source
file, row and column of the first refusal. Helper columns start with "__"; validation drops them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.report import ValidationReport

HELPER_PREFIX = "__"
ROW = "__row"  # the row's number in its source file (1-based data row, or line)
FILE = "__file"  # the source file's name, for tables read from several files


def raw(column: str) -> str:
    """The helper column holding the source text of a parsed `column`."""
    return f"{HELPER_PREFIX}raw_{column}"


def helper_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c.startswith(HELPER_PREFIX)]


@dataclass(frozen=True)
class Rule:
    """Rows where `refuses` is true are refused for `reason`; `column` holds the offending value."""

    reason: str
    column: str
    refuses: pl.Expr


@dataclass
class TableSource:
    """Where one table's rows came from, and what the reader refuses or repaired on the way.

    `file` names the source in messages when the frame has no `__file` column; `row_label` is "line" for
    line-based formats (JSONL, MovieLens) and "row" for CSV data rows (1 = the first row after the
    header); `columns` maps frame columns to the source's own column names.
    """

    file: str
    row_label: str = "row"
    columns: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)

    def error(self, problem: str, row: int | None, column: str, file: str | None = None) -> DataError:
        name = self.columns.get(column, column.removeprefix(f"{HELPER_PREFIX}raw_"))
        return DataError.at(file or self.file, problem, row=row, column=name, row_label=self.row_label)


@dataclass
class Intake:
    """A reader's account of its tables, by table name; `auxiliary` accounts files that feed a table
    without being one (RetailRocket's item properties), already counted by the reader."""

    tables: dict[str, TableSource] = field(default_factory=dict)
    auxiliary: ValidationReport = field(default_factory=ValidationReport)
