"""Lenient parsing expressions shared by the readers, and the rules that count what did not parse.

Every parsed column keeps its source text in a helper column (`raw(column)`): a value that does not
parse becomes null, and `unparsable` refuses the row with a reason when the text was there. Blank text
counts as missing, as an empty CSV field does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from tandemrec.data.dataset import TIMESTAMP
from tandemrec.data.errors import DataError
from tandemrec.data.intake import ROW, Rule, TableSource, helper_columns, raw

# The lowest age of each band (as MovieLens 1M codes them), so that ages of any source bucket alike.
AGE_BANDS = (
    (0, "<18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-49"), (50, "50-55"), (56, "56+"),
)
# How many of each unit make a microsecond, and the magnitude below which an epoch number is taken to
# be in that unit when the unit is "auto": seconds up to 1e11 (year 5138), milliseconds up to 1e14, ...
_UNITS = {"s": (1_000_000, 10**11), "ms": (1_000, 10**14), "us": (1, 10**17), "ns": (None, None)}
_INT64_MAX = 2**63 - 1
# ISO 8601 shapes tried in turn for text timestamps (a trailing Z is read as +00:00; naive is UTC).
ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def text(column: str) -> pl.Expr:
    """The column's text, stripped; blank becomes null."""
    value = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(value.str.len_bytes() > 0).then(value)


def integer_id(column: str, width: int = 0) -> pl.Expr:
    """An integer id as canonical text ("0042" -> "42"), zero-padded to `width`; null if not an integer."""
    number = pl.col(column).str.strip_chars().cast(pl.Int64, strict=False).cast(pl.String)
    return number.str.zfill(width) if width else number


def number(column: str) -> pl.Expr:
    return pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)


def epoch(column: str, unit: str, numeric: bool = False) -> pl.Expr:
    """Epoch numbers in `unit` (s, ms, us, ns, or auto: each value by its magnitude) as UTC timestamps,
    from text (or from a numeric column when `numeric`).

    Values too large for the unit come out as the latest representable time, so that validation refuses
    them as out of range rather than seeing a wrapped-around date.
    """
    if unit not in (*_UNITS, "auto"):
        raise ValueError(f"timestamp unit must be one of s, ms, us, ns, auto; got {unit!r}")
    if numeric:
        n = pl.col(column).cast(pl.Int64)
    else:
        value = pl.col(column).str.strip_chars()
        # "1.5e9" or "881250949.0" (a float export of integer seconds) still parse.
        n = pl.coalesce(
            value.cast(pl.Int64, strict=False), value.cast(pl.Float64, strict=False).round().cast(pl.Int64, strict=False)
        )
    if unit == "auto":
        micros = pl.when(n.abs() < _UNITS["s"][1]).then(_scaled(n, "s"))
        micros = micros.when(n.abs() < _UNITS["ms"][1]).then(_scaled(n, "ms"))
        micros = micros.when(n.abs() < _UNITS["us"][1]).then(n).otherwise(n // 1_000)
    else:
        micros = _scaled(n, unit)
    return micros.cast(TIMESTAMP)


def _scaled(n: pl.Expr, unit: str) -> pl.Expr:
    factor = _UNITS[unit][0]
    if factor is None:
        return n // 1_000
    limit = _INT64_MAX // factor
    return pl.when(n.abs() <= limit).then(n * factor).when(n.is_not_null()).then(pl.lit(_INT64_MAX))


def datetime_text(column: str, format: str | None = None) -> pl.Expr:
    """Text timestamps in `format` (strptime), or any of the ISO 8601 shapes; naive ones are UTC."""
    value = pl.col(column).str.strip_chars().str.replace(r"[Zz]$", "+00:00")
    formats = (format,) if format else ISO_FORMATS
    parsed = [
        value.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False, exact=True) for f in formats
    ]
    return pl.coalesce(parsed) if len(parsed) > 1 else parsed[0]


def timestamp(column: str, unit: str | None = None, format: str | None = None) -> pl.Expr:
    """Text timestamps: epoch numbers in `unit`, or text in `format`; with neither, each value is read
    as an epoch number (unit by magnitude) when it is one, else as ISO 8601 text."""
    if unit:
        return epoch(column, unit)
    if format:
        return datetime_text(column, format)
    looks_numeric = pl.col(column).str.strip_chars().str.contains(r"^-?[0-9]+(\.[0-9]*)?([eE][0-9]+)?$")
    return pl.when(looks_numeric).then(epoch(column, "auto")).otherwise(datetime_text(column))


def mapped(column: str, mapping: Mapping[str, str]) -> pl.Expr:
    """The column's text replaced through `mapping`; text not in it becomes null."""
    return pl.col(column).str.strip_chars().replace_strict(dict(mapping), default=None, return_dtype=pl.String)


def age_band(column: str) -> pl.Expr:
    """Ages (as text, "49" or "49.0") to the bands of AGE_BANDS; null if not a number."""
    age = pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)
    band = pl.when(age.is_null()).then(None)
    for lowest, name in reversed(AGE_BANDS):
        band = band.when(age >= lowest).then(pl.lit(name))
    return band.otherwise(pl.lit(AGE_BANDS[0][1]))


def parse(column: str, source: str, expr: pl.Expr) -> list[pl.Expr]:
    """Expressions that set `column` to `expr` (computed from `source`) and keep the source text in
    `raw(column)`; use with `unparsable`."""
    return [text(source).alias(raw(column)), expr.alias(column)]


def unparsable(reason: str, column: str) -> Rule:
    """Refuse rows whose source text for `column` was there but did not parse."""
    return Rule(reason, raw(column), pl.col(raw(column)).is_not_null() & pl.col(column).is_null())


def out_of_range(column: str, name: str, low: float | None = None, high: float | None = None) -> list[Rule]:
    """Refuse a numeric `column` that is NaN or infinite, or outside [low, high] (None: no bound on that
    side).

    A float parser reads "nan" and "inf" as numbers, so without these rules a rating of NaN or 7 would
    be kept as a value and silently skew whatever weighs by it. `name` is what the format calls the
    value ("rating", "price"); the reasons say what was expected ("rating out of range 1..5").
    """
    value = pl.col(column)
    rules = [Rule(f"{name} is NaN", column, value.is_nan()), Rule(f"{name} is infinite", column, value.is_infinite())]
    if low is not None and high is not None:
        rules.append(Rule(f"{name} out of range {low:g}..{high:g}", column, (value < low) | (value > high)))
    elif low is not None:
        rules.append(Rule(f"{name} below {low:g}", column, value < low))
    elif high is not None:
        rules.append(Rule(f"{name} above {high:g}", column, value > high))
    return rules


@dataclass
class TableBuilder:
    """Collects a table's canonical columns from source columns, with the refusal rules of what is
    parsed and the source name of each column, so that every reader accounts its tables alike."""

    exprs: list[pl.Expr] = field(default_factory=lambda: [pl.col(ROW)])
    rules: list[Rule] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def text(self, column: str, source: str) -> TableBuilder:
        self.exprs.append(text(source).alias(column))
        self.names[column] = source
        return self

    def expr(self, column: str, expr: pl.Expr, source: str | None = None) -> TableBuilder:
        self.exprs.append(expr.alias(column))
        if source:
            self.names[column] = source
        return self

    def parsed(self, column: str, source: str, expr: pl.Expr, reason: str) -> TableBuilder:
        """`column` = `expr` of `source`; rows where the text is there but `expr` is null are refused."""
        self.exprs.extend(parse(column, source, expr))
        self.rules.append(unparsable(reason, column))
        self.names[column] = self.names[raw(column)] = source
        return self

    def bounded(self, column: str, name: str, low: float | None = None, high: float | None = None) -> TableBuilder:
        """Refuse NaN values of the numeric `column`, and values outside [low, high] (see `out_of_range`)."""
        self.rules.extend(out_of_range(column, name, low, high))
        return self

    def build(
        self,
        frame: pl.LazyFrame,
        file: str,
        row_label: str,
        locate: Callable[[Exception], DataError | None] | None,
    ) -> tuple[pl.LazyFrame, TableSource]:
        """The table's plan (the scan's own helper columns, such as `__file`, carried along) and source."""
        made = {expr.meta.output_name() for expr in self.exprs}
        carried = [pl.col(c) for c in helper_columns(frame.collect_schema().names()) if c not in made]
        table = frame.select(*self.exprs, *carried)
        return table, TableSource(file, row_label, dict(self.names), list(self.rules), locate=locate)
