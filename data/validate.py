"""Row-level checks between reading a dataset and training on it: every refused row is counted by reason.

Nothing is dropped in silence: for each table, rows in = rows kept + rows refused, and `strict=True`
turns the first refusal into an error that points at the row, for those who prefer to fix the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from tandemrec.data.dataset import USER_ID, Dataset
from tandemrec.data.errors import DataError

_ROW = "__row"
_RULE = "__rule"


@dataclass(frozen=True)
class _Rule:
    reason: str
    column: str
    refuses: pl.Expr


@dataclass
class ValidationReport:
    """What validation kept and refused, per table; refused maps table -> reason -> row count."""

    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    refused: dict[str, dict[str, int]] = field(default_factory=dict)

    def total_refused(self, table: str) -> int:
        return sum(self.refused.get(table, {}).values())

    def to_dict(self) -> dict:
        refused = {table: dict(reasons) for table, reasons in self.refused.items()}
        return {"rows_in": dict(self.rows_in), "rows_out": dict(self.rows_out), "refused": refused}

    def summary(self) -> str:
        lines = []
        for table, rows_in in self.rows_in.items():
            line = f"{table}: {rows_in} rows in, {self.rows_out[table]} kept"
            reasons = self.refused.get(table, {})
            if reasons:
                detail = ", ".join(f"{reason}: {count}" for reason, count in reasons.items())
                line += f", {self.total_refused(table)} refused ({detail})"
            lines.append(line)
        return "\n".join(lines)


def validate(dataset: Dataset, strict: bool = False) -> tuple[Dataset, ValidationReport]:
    """Conform the schema, refuse unusable rows with a counted reason, and return what is left.

    Items are checked first because interactions are refused when their item did not survive.
    Users without interactions are kept: they are harmless and may be scored later.
    """
    data = dataset.conformed()
    for table in ("interactions", "items"):
        if getattr(data, table).is_empty():
            raise DataError(f"{table}: the table is empty, expected at least one row")
    report = ValidationReport()

    def check(table: str, frame: pl.DataFrame, rules: list[_Rule]) -> pl.DataFrame:
        kept = _apply(table, frame, rules, report, strict)
        if kept.is_empty() and table != "users":
            raise DataError(f"{table}: no rows left after validation\n{report.summary()}")
        return kept

    items = check(
        "items",
        data.items,
        [
            _Rule("null id", "item_id", pl.col("item_id").is_null()),
            _Rule("duplicate item", "item_id", ~pl.col("item_id").is_first_distinct()),
        ],
    )
    users = None
    if data.users is not None:
        users = check(
            "users",
            data.users,
            [
                _Rule("null id", USER_ID, pl.col(USER_ID).is_null()),
                _Rule("duplicate user", USER_ID, ~pl.col(USER_ID).is_first_distinct()),
            ],
        )
    interactions = check(
        "interactions",
        data.interactions,
        [
            _Rule("null id", USER_ID, pl.col(USER_ID).is_null()),
            _Rule("null id", "item_id", pl.col("item_id").is_null()),
            _Rule("null timestamp", "timestamp", pl.col("timestamp").is_null()),
            _Rule("unknown item", "item_id", ~pl.col("item_id").is_in(items["item_id"].implode())),
        ],
    )
    valid = Dataset(interactions=interactions, items=items, users=users, root=data.root, name=data.name)
    return valid, report


def _apply(
    table: str, frame: pl.DataFrame, rules: list[_Rule], report: ValidationReport, strict: bool
) -> pl.DataFrame:
    """Tag each row with the first rule that refuses it, record the counts, return the kept rows."""
    tag = pl.when(rules[0].refuses).then(pl.lit(0))
    for index, rule in enumerate(rules[1:], start=1):
        tag = tag.when(rule.refuses).then(pl.lit(index))
    tagged = frame.with_row_index(_ROW).with_columns(tag.otherwise(None).alias(_RULE))
    refused = tagged.filter(pl.col(_RULE).is_not_null())
    if strict and not refused.is_empty():
        rule = rules[refused[_RULE][0]]
        value = refused[rule.column][0]
        row = refused[_ROW][0]
        raise DataError.at(table, f"{rule.reason} (value {value!r})", row=row, column=rule.column)
    counts: dict[str, int] = {}
    for rule_index, count in refused.group_by(_RULE).len().sort(_RULE).iter_rows():
        reason = rules[rule_index].reason
        counts[reason] = counts.get(reason, 0) + count
    kept = tagged.filter(pl.col(_RULE).is_null()).drop(_ROW, _RULE)
    report.rows_in[table] = frame.height
    report.rows_out[table] = kept.height
    report.refused[table] = counts
    return kept
