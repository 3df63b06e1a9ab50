"""Row-level checks between reading a dataset and training on it: every refused row is counted by reason.

Nothing is dropped in silence: for each table, rows in = rows kept + rows refused, and `strict=True`
turns the first refusal into an error that points at the row (in the source file when a reader says
where its rows came from), for those who prefer to fix the source. A table given as a LazyFrame stays a
plan: it is read once to count, and the kept rows are only computed by whoever consumes the plan
(`Dataset.save` streams them to Parquet), so tables larger than memory validate too.
"""

from __future__ import annotations

import polars as pl

from tandemrec.data.dataset import TIME_RANGE, USER_ID, Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.images import image_problem
from tandemrec.data.intake import FILE, ROW, Rule, TableSource, helper_columns, raw
from tandemrec.data.report import ValidationReport

__all__ = ["ValidationReport", "apply_rules", "validate"]

_RULE = "__rule"
_POSITION = "__position"


def validate(dataset: Dataset, strict: bool = False) -> tuple[Dataset, ValidationReport]:
    """Conform the schema, refuse unusable rows with a counted reason, and return what is left.

    Items are checked first because interactions are refused when their item did not survive. An item
    whose image file is missing or unreadable keeps its row with a null image (counted as repaired).
    Users without interactions are kept: they are harmless and may be scored later.
    """
    data = dataset.conformed()
    intake = dataset.intake
    report = ValidationReport()
    for table, (plan, source) in intake.auxiliary.items() if intake else ():
        report.sources[table] = source.file
        apply_rules(table, plan, source.rules, source, report, strict)

    def check(table: str, frame: pl.DataFrame | pl.LazyFrame, rules: list[Rule]) -> pl.DataFrame | pl.LazyFrame:
        source = intake.tables.get(table) if intake else None
        if source is not None:
            report.sources[table] = source.file
        return apply_rules(table, frame, [*(source.rules if source else []), *rules], source, report, strict)

    items = check(
        "items",
        data.items,
        [
            Rule("null id", "item_id", pl.col("item_id").is_null()),
            Rule("duplicate item", "item_id", ~pl.col("item_id").is_first_distinct()),
        ],
    )
    items = _repair_images(items, dataset, report)
    users = None
    if data.users is not None:
        users = check(
            "users",
            data.users,
            [
                Rule("null id", USER_ID, pl.col(USER_ID).is_null()),
                Rule("duplicate user", USER_ID, ~pl.col(USER_ID).is_first_distinct()),
            ],
        )
    earliest, latest = TIME_RANGE
    interactions = check(
        "interactions",
        data.interactions,
        [
            Rule("null id", USER_ID, pl.col(USER_ID).is_null()),
            Rule("null id", "item_id", pl.col("item_id").is_null()),
            Rule("null timestamp", "timestamp", pl.col("timestamp").is_null()),
            Rule("null event", "event", pl.col("event").is_null()),  # in no domain: it would vanish later
            Rule(
                "timestamp out of range",
                "timestamp",
                (pl.col("timestamp") < earliest) | (pl.col("timestamp") >= latest),
            ),
            Rule("unknown item", "item_id", ~pl.col("item_id").is_in(items["item_id"].implode())),
        ],
    )
    valid = Dataset(
        interactions=interactions, items=items, users=users, root=data.root, name=data.name,
        image_roots=data.image_roots,
    )
    return valid, report


def apply_rules(
    table: str,
    frame: pl.DataFrame | pl.LazyFrame,
    rules: list[Rule],
    source: TableSource | None,
    report: ValidationReport,
    strict: bool,
) -> pl.DataFrame | pl.LazyFrame:
    """Tag each row with the first rule that refuses it, record the counts, return the kept rows.

    A DataFrame comes back as a DataFrame; a LazyFrame as a plan, after one streaming pass that counts.
    Helper columns (`__...`) are dropped from what is returned.
    """
    lazy = frame.lazy()
    columns = lazy.collect_schema().names()
    if ROW not in columns:
        lazy = lazy.with_row_index(_POSITION)
    tag = pl.when(rules[0].refuses).then(pl.lit(0, pl.UInt16))
    for index, rule in enumerate(rules[1:], start=1):
        tag = tag.when(rule.refuses).then(pl.lit(index, pl.UInt16))
    tagged = lazy.with_columns(tag.otherwise(None).alias(_RULE))
    try:
        if isinstance(frame, pl.DataFrame):
            tagged = tagged.collect().lazy()
        counted = tagged.group_by(_RULE).len().collect(engine="streaming")
    except pl.exceptions.PolarsError as error:
        if source is None:
            raise DataError(f"{table}: unreadable ({error})") from error
        raise source.unreadable(error) from error
    rows_in = int(counted["len"].sum())
    if rows_in == 0:
        what = f"{table}: the table" if source is None else f"{source.file}: the {table} table"
        raise DataError(f"{what} is empty, expected at least one row")
    counts: dict[str, int] = {}
    refused = counted.filter(pl.col(_RULE).is_not_null()).sort(_RULE)
    for rule_index, count in refused.iter_rows():
        reason = rules[rule_index].reason
        counts[reason] = counts.get(reason, 0) + count
    fatal = [index for index in refused[_RULE] if rules[index].fatal]
    if fatal:
        raise _first_refusal(table, tagged.filter(pl.col(_RULE).is_in(fatal)), rules, source)
    if strict and counts:
        raise _first_refusal(table, tagged, rules, source)
    report.record(table, rows_in, counts)
    if report.rows_out[table] == 0 and table != "users":
        raise DataError(f"{table}: no rows left after validation\n{report.summary()}")
    kept = tagged.filter(pl.col(_RULE).is_null()).drop(_RULE, *helper_columns(columns), strict=False)
    kept = kept.drop(_POSITION, strict=False)
    return kept.collect() if isinstance(frame, pl.DataFrame) else kept


def _first_refusal(
    table: str, tagged: pl.LazyFrame, rules: list[Rule], source: TableSource | None
) -> DataError:
    names = tagged.collect_schema().names()
    where = [c for c in (_POSITION, ROW, FILE) if c in names]
    refused = tagged.filter(pl.col(_RULE).is_not_null()).head(1)
    first = refused.select(_RULE, *where).collect().row(0, named=True)
    rule = rules[first[_RULE]]
    problem = rule.reason
    if rule.column is not None:
        # The source text when the reader kept it: a parsed value may not even print (year 30000).
        shown = raw(rule.column) if raw(rule.column) in names else rule.column
        problem += f" (value {refused.select(pl.col(shown)).collect().item()!r})"
    if source is None or ROW not in first:
        return DataError.at(table, problem, row=first.get(_POSITION, first.get(ROW)), column=rule.column)
    return source.error(problem, first[ROW], rule.column, first.get(FILE))


def _repair_images(items: pl.DataFrame, dataset: Dataset, report: ValidationReport) -> pl.DataFrame:
    """Null the image of items whose file is missing, unreadable, not a regular file or outside the
    dataset's image folders, counting each as a repair."""
    paths = items["image"]
    if paths.null_count() == paths.len():
        return items
    folders = dataset.image_folders()
    problems = [None if p is None else image_problem(dataset.image_path(p), folders) for p in paths.to_list()]
    found = pl.Series(problems, dtype=pl.String)
    repairs = found.drop_nulls().value_counts(sort=True)
    report.add_repairs("items", dict(repairs.iter_rows()))
    fixed = items.with_columns(pl.when(found.is_null()).then(pl.col("image")).alias("image"))
    with_image = int(fixed["image"].is_not_null().sum())
    report.images = {"with image": with_image, "without image": fixed.height - with_image}
    return fixed
