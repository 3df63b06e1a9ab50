"""Temporal splits, so that evaluation never sees the future: per user (each user's last events are held
out) or global (every event after a cut is held out, the protocol of transfer experiments).

Both are one expression over the events sorted by (user, time, item), shared by `temporal_split` /
`temporal_cut` on tables and by `prepare`, which applies it to encoded events out of core.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from tandemrec.data.dataset import INTERACTION_COLUMNS, USER_ID, require_columns

_PART = "__part"
ORDER = [USER_ID, "timestamp", "item_id"]
PARTS = ("train", "valid", "test")


@dataclass
class SplitConfig:
    """How many of each user's last events are held out for validation and test; or, with `cut_at`
    (ISO 8601, UTC when naive), every event at or after it is test, and every event at or after
    `valid_from` (when set) and before the cut is validation."""

    valid_last: int = 1
    test_last: int = 1
    min_train: int = 1
    cut_at: str | None = None
    valid_from: str | None = None
    # Fraction of the catalogue held out of training altogether (cold-start evaluation), seeded.
    cold_items: float = 0.0
    seed: int = 0


@dataclass
class Split:
    """Train, validation and test interactions; every input row is in exactly one of them."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame


def temporal_split(
    interactions: pl.DataFrame, valid_last: int = 1, test_last: int = 1, min_train: int = 1
) -> Split:
    """Per user, ordered by (timestamp, item_id): the last `test_last` events go to test, the
    `valid_last` before them to valid, the rest to train.

    A user with fewer than `min_train + valid_last + test_last` events stays wholly in train: holding out
    their only events would leave nothing to learn them from. Each part is sorted by (user_id, timestamp).
    """
    return _split(interactions, per_user_part(valid_last, test_last, min_train))


def temporal_cut(interactions: pl.DataFrame, at: datetime, valid_from: datetime | None = None) -> Split:
    """Globally by time: events at or after `at` go to test, those at or after `valid_from` (before
    `at`) to valid, the rest to train; naive datetimes are UTC. Each part is sorted by (user_id, timestamp)."""
    return _split(interactions, cut_part(at, valid_from))


def part_of(config: SplitConfig) -> pl.Expr:
    """The part ("train", "valid", "test") of each event under `config`, over events sorted by ORDER."""
    if config.cut_at is None:
        return per_user_part(config.valid_last, config.test_last, config.min_train)
    valid_from = None if config.valid_from is None else _utc(config.valid_from, "valid_from")
    return cut_part(_utc(config.cut_at, "cut_at"), valid_from)


def per_user_part(valid_last: int, test_last: int, min_train: int) -> pl.Expr:
    for argument, value in (("valid_last", valid_last), ("test_last", test_last), ("min_train", min_train)):
        if value < 0:
            raise ValueError(f"{argument} must be >= 0, got {value}")
    from_end = pl.int_range(pl.len(), 0, -1).over(USER_ID) - 1
    held_out = pl.len().over(USER_ID) >= min_train + valid_last + test_last
    return (
        pl.when(held_out & (from_end < test_last))
        .then(pl.lit("test"))
        .when(held_out & (from_end < test_last + valid_last))
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )


def cut_part(at: datetime, valid_from: datetime | None = None) -> pl.Expr:
    at = _aware(at)
    valid_from = at if valid_from is None else _aware(valid_from)
    if valid_from > at:
        raise ValueError(f"valid_from ({valid_from}) must not be after the cut ({at})")
    time = pl.col("timestamp")
    test, valid = pl.lit("test"), pl.lit("valid")
    return pl.when(time >= at).then(test).when(time >= valid_from).then(valid).otherwise(pl.lit("train"))


def _split(interactions: pl.DataFrame, part: pl.Expr) -> Split:
    require_columns(interactions, "interactions", {c: INTERACTION_COLUMNS[c] for c in ORDER})
    tagged = interactions.sort(ORDER, maintain_order=True).with_columns(part.alias(_PART))
    return Split(**{name: tagged.filter(pl.col(_PART) == name).drop(_PART) for name in PARTS})


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _utc(text: str, key: str) -> datetime:
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"data.split.{key} must be an ISO 8601 date or time, got {text!r}") from None
