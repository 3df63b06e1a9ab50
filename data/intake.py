"""Where a reader's rows came from and which of them its format refuses, for validation to account.

A reader parses leniently: a value it cannot parse becomes null, with the raw text kept in a helper
column, and the refusals its format needs (unparsable timestamp, unknown event type, ...) are described
as `Rule`s. `validate` applies them together with the table rules in one pass over the data, so that one
count covers every reason (rows in = rows kept + rows refused), and in strict mode it names the source
file, row and column of the first refusal. Helper columns start with "__"; validation drops them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from tandemrec.data.errors import DataError

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
    """Rows where `refuses` is true are refused for `reason`; `column` holds the offending value (None:
    the row as a whole).

    A `fatal` rule marks a problem with the file rather than the row (ids whose JSON type changes from
    row to row): the first such row is an error even when validation is not strict.
    """

    reason: str
    column: str | None
    refuses: pl.Expr
    fatal: bool = False


@dataclass
class TableSource:
    """Where one table's rows came from, and what its format refuses.

    `file` names the source in messages when the frame has no `__file` column; `row_label` is "line" for
    line-based formats (JSONL, MovieLens) and "row" for CSV data rows (1 = the first row after the
    header); `columns` maps frame columns to the source's own column names; `locate` turns an error
    the parser raises while the plan runs (a line with too many fields, bytes not in the encoding) into
    a DataError naming the line, or None when no line is to blame.
    """

    file: str
    row_label: str = "row"
    columns: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    locate: Callable[[Exception], DataError | None] | None = None

    def collect(self, frame: pl.LazyFrame) -> pl.DataFrame:
        """Run a plan over this source; a parser error becomes a DataError naming the line."""
        try:
            return frame.collect()
        except pl.exceptions.PolarsError as error:
            raise self.unreadable(error) from error

    def unreadable(self, error: Exception) -> DataError:
        """The DataError for a parser error: located in the file when the reader can, else as it came."""
        located = self.locate(error) if self.locate else None
        return located or DataError(f"{self.file}: unreadable ({error})")

    def error(self, problem: str, row: int | None, column: str | None, file: str | None = None) -> DataError:
        name = None if column is None else self.columns.get(column, column.removeprefix(f"{HELPER_PREFIX}raw_"))
        return DataError.at(file or self.file, problem, row=row, column=name, row_label=self.row_label)


@dataclass
class Intake:
    """A reader's account of its tables, by table name. `auxiliary` holds the plans of files that feed a
    table without being one (RetailRocket's item properties): validation counts their refusals too."""

    tables: dict[str, TableSource] = field(default_factory=dict)
    auxiliary: dict[str, tuple[pl.LazyFrame, TableSource]] = field(default_factory=dict)


def without_refused(frame: pl.LazyFrame, source: TableSource) -> pl.LazyFrame:
    """The rows of a plan that none of the source's rules refuses, without helper columns."""
    refused = pl.any_horizontal([rule.refuses for rule in source.rules]) if source.rules else pl.lit(False)
    kept = frame.filter(~refused)
    return kept.drop(helper_columns(kept.collect_schema().names()))
