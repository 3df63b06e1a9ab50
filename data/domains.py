"""Source and target domains: the plentiful events a model learns from, and the sparse ones it is for.

Views and clicks are the source domain, purchases the target; for ratings, every rating is a source
event and a high one is also a target event. An event can thus be in both domains, so each interaction
carries two boolean columns, `source` and `target`, rather than being duplicated into two rows: one
event stays one step in the user's history (a history bag does not count it twice) and one row in the
accounting, and a loss `L_S + lambda * L_T` takes its two sets of examples with one mask each.
Events in neither domain (an event type the config does not name) are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tandemrec.config_schema import check_fields, setting
from tandemrec.data.dataset import USER_ID, Frame
from tandemrec.data.errors import DataError

SOURCE = "source"
TARGET = "target"
_ORDER = [USER_ID, "timestamp", "item_id"]


@dataclass
class DomainConfig:
    """`[data.domains]`: which event types make each domain.

    source: event types of the source domain (None: every event type).
    target: event types of the target domain (empty: one domain, no transfer).
    target_min_value: a target event also needs `value >= target_min_value` (ratings: 4).
    train_target_fraction: the target-sparse variant: keep this seeded fraction of each user's target
        events in the training part (1.0: all of them).
    seed: the seed of that choice.
    Every setting is checked when the config is built (see tandemrec/config_schema.py: `setting`).
    """

    source: list[str] | None = None
    target: list[str] = field(default_factory=list)
    target_min_value: float | None = None
    train_target_fraction: float = setting(1.0, ge=0, le=1)
    seed: int = setting(0, ge=0)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def has_target(self) -> bool:
        return bool(self.target)


def domain_flags(config: DomainConfig) -> tuple[pl.Expr, pl.Expr]:
    """The `source` and `target` expressions of a config, over the `event` and `value` columns."""
    source = pl.lit(True) if config.source is None else pl.col("event").is_in(config.source)
    target = pl.col("event").is_in(config.target)
    if config.target_min_value is not None:
        target = target & (pl.col("value") >= config.target_min_value).fill_null(False)
    return source.alias(SOURCE), target.alias(TARGET)


def label_domains(interactions: Frame, config: DomainConfig) -> Frame:
    """The interactions in at least one domain, with boolean `source` and `target` columns added.

    A DataFrame gives a DataFrame, a LazyFrame a plan; `domain_counts` tells how many fell in each.
    """
    labelled = interactions.with_columns(*domain_flags(config))
    return labelled.filter(pl.col(SOURCE) | pl.col(TARGET))


def domain_counts(interactions: Frame, config: DomainConfig) -> dict[str, int]:
    """How many events are source only, target only, both, or neither (those `label_domains` drops)."""
    source, target = domain_flags(config)
    name = (
        pl.when(source & target).then(pl.lit("both"))
        .when(source).then(pl.lit("source only"))
        .when(target).then(pl.lit("target only"))
        .otherwise(pl.lit("neither"))
    )
    counts = interactions.lazy().group_by(name.alias("domain")).len().collect()
    found = dict(counts.iter_rows())
    return {key: found.get(key, 0) for key in ("source only", "target only", "both", "neither")}


def target_sparse(train: pl.DataFrame, fraction: float, seed: int) -> pl.DataFrame:
    """The target-sparse variant of a training part: each user keeps a seeded `fraction` of their
    target events (in expectation: n * fraction rounded up or down at random, so a user with one
    purchase keeps it with probability `fraction`). The others lose their target label, and those not
    in the source domain either leave the part. Works on encoded parts (integer ids) as on raw ones.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    for column in (SOURCE, TARGET):
        if column not in train.columns:
            raise DataError(f"training part: missing column {column!r} (label the domains first)")
    if fraction == 1.0 or train.is_empty():
        return train
    ordered = train.sort(_ORDER, maintain_order=True)
    rng = np.random.default_rng(seed)
    users = ordered.select(pl.col(USER_ID).unique(maintain_order=True))
    users = users.with_columns(pl.Series("__round", rng.random(users.height)))
    keyed = ordered.with_columns(pl.Series("__key", rng.random(ordered.height))).join(
        users, on=USER_ID, how="left", maintain_order="left"
    )
    is_target = pl.col(TARGET)
    n_target = is_target.sum().over(USER_ID)
    rank = pl.when(is_target).then(pl.col("__key")).rank("ordinal").over(USER_ID)
    keep = (rank <= (n_target * fraction + pl.col("__round")).floor()) & is_target
    relabelled = keyed.with_columns(keep.alias(TARGET)).drop("__key", "__round")
    return relabelled.filter(pl.col(SOURCE) | pl.col(TARGET))
