"""Per-user temporal split: each user's last events are held out, so evaluation never sees the future."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tandemrec.data.dataset import INTERACTION_COLUMNS, USER_ID, require_columns

_PART = "__part"
_ORDER = [USER_ID, "timestamp", "item_id"]


@dataclass
class SplitConfig:
    """How many of each user's last events are held out for validation and test."""

    valid_last: int = 1
    test_last: int = 1
    min_train: int = 1
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
    for argument, value in (("valid_last", valid_last), ("test_last", test_last), ("min_train", min_train)):
        if value < 0:
            raise ValueError(f"{argument} must be >= 0, got {value}")
    require_columns(interactions, "interactions", {c: INTERACTION_COLUMNS[c] for c in _ORDER})
    from_end = pl.int_range(pl.len(), 0, -1).over(USER_ID) - 1
    held_out = pl.len().over(USER_ID) >= min_train + valid_last + test_last
    part = (
        pl.when(held_out & (from_end < test_last))
        .then(pl.lit("test"))
        .when(held_out & (from_end < test_last + valid_last))
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )
    tagged = interactions.sort(_ORDER, maintain_order=True).with_columns(part.alias(_PART))
    parts = {name: tagged.filter(pl.col(_PART) == name).drop(_PART) for name in ("train", "valid", "test")}
    return Split(**parts)
