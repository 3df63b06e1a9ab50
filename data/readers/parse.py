"""Lenient parsing expressions shared by the readers, and the rules that count what did not parse.

Every parsed column keeps its source text in a helper column (`raw(column)`): a value that does not
parse becomes null, and `unparsable` refuses the row with a reason when the text was there. Blank text
counts as missing, as an empty CSV field does.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from tandemrec.data.dataset import TIMESTAMP
from tandemrec.data.intake import Rule, raw

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


def epoch(column: str, unit: str) -> pl.Expr:
    """Epoch numbers in `unit` (s, ms, us, ns, or auto: each value by its magnitude) as UTC timestamps.

    Values too large for the unit come out as the latest representable time, so that validation refuses
    them as out of range rather than seeing a wrapped-around date.
    """
    if unit not in (*_UNITS, "auto"):
        raise ValueError(f"timestamp unit must be one of s, ms, us, ns, auto; got {unit!r}")
    value = pl.col(column).str.strip_chars()
    integer = value.cast(pl.Int64, strict=False)
    # "1.5e9" or "881250949.0" (a float export of integer seconds) still parse, to the microsecond.
    n = pl.coalesce(integer, value.cast(pl.Float64, strict=False).round().cast(pl.Int64, strict=False))
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
    return pl.when(n.abs() <= limit).then(n * factor).otherwise(pl.lit(_INT64_MAX))


def datetime_text(column: str, format: str | None = None) -> pl.Expr:
    """Text timestamps in `format` (strptime), or any of the ISO 8601 shapes; naive ones are UTC."""
    value = pl.col(column).str.strip_chars().str.replace(r"[Zz]$", "+00:00")
    formats = (format,) if format else ISO_FORMATS
    parsed = [
        value.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False, exact=True) for f in formats
    ]
    return pl.coalesce(parsed) if len(parsed) > 1 else parsed[0]


def timestamp(column: str, unit: str | None = None, format: str | None = None) -> pl.Expr:
    """Epoch numbers when `unit` is given, else text timestamps (see `datetime_text`)."""
    return epoch(column, unit) if unit else datetime_text(column, format)


def mapped(column: str, mapping: Mapping[str, str]) -> pl.Expr:
    """The column's text replaced through `mapping`; text not in it becomes null."""
    return pl.col(column).str.strip_chars().replace_strict(dict(mapping), default=None, return_dtype=pl.String)


def age_band(column: str) -> pl.Expr:
    """Integer ages (as text) to the bands of AGE_BANDS; null if not an integer."""
    age = pl.col(column).str.strip_chars().cast(pl.Int64, strict=False)
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
