"""Temporal splits, so that evaluation never sees the future: per user (each user's last events are held
out) or global (every event after a cut is held out, the protocol of transfer experiments).

Both are one expression over the events sorted by (user, time, item), shared by `temporal_split` /
`temporal_cut` on tables and by `prepare`, which applies it to encoded events out of core.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone

import numpy as np
import polars as pl

from tandemrec.config_schema import check_fields, setting
from tandemrec.data.dataset import INTERACTION_COLUMNS, USER_ID, require_columns
from tandemrec.errors import ConfigError

_PART = "__part"
ORDER = [USER_ID, "timestamp", "item_id"]
PARTS = ("train", "valid", "test")
GIVEN_COLUMN = "split"  # the interactions column of a split given as one file per part


@dataclass
class SplitConfig:
    """How many of each user's last events are held out for validation and test (a count, or with
    `test_fraction` a share: the last `test_fraction` of the user's events are test and the last
    `valid_fraction` of the rest validation); or, with `cut_at` (ISO 8601, UTC when naive), every event at
    or after it is test, and every event at or after `valid_from` (when set) and before the cut is
    validation. A user who would keep fewer than `min_train` training events stays wholly in train.

    A given split instead: `column` names the interactions column that holds each event's part ("train",
    "valid" or "test"), or `files` names a data path per part (read with `data.source`'s reader, see
    data/given_split.py; the column is then GIVEN_COLUMN). Its parts are used as they are: no event moves.
    `refit`: the model (and the baselines) train on train + valid together, for the final test run once
    the settings are chosen on validation (the validation part then measures nothing new).
    Every setting is checked when the config is built (see tandemrec/config_schema.py: `setting`)."""

    valid_last: int = setting(1, ge=0)
    test_last: int = setting(1, ge=0)
    min_train: int = setting(1, ge=0)
    # Shares instead of counts (each at least one event when > 0): the per-user temporal ratio protocol.
    test_fraction: float = setting(0.0, ge=0, lt=1)
    valid_fraction: float = setting(0.0, ge=0, lt=1)
    cut_at: str | None = None
    valid_from: str | None = None
    # Fraction of the catalogue held out of training altogether (cold-start evaluation), seeded.
    cold_items: float = setting(0.0, ge=0, lt=1)
    seed: int = setting(0, ge=0)
    column: str | None = None
    files: dict[str, str] | None = None
    refit: bool = False

    def __post_init__(self) -> None:
        for name in ("cut_at", "valid_from"):  # TOML reads an unquoted date or time as one: keep its ISO text
            if isinstance(getattr(self, name), (date, time)):
                setattr(self, name, getattr(self, name).isoformat())
        check_fields(self)
        self._check_given()
        if self.valid_from is not None and self.cut_at is None:
            raise ConfigError(
                f"config key 'valid_from' applies only with cut_at (a global cut), got {self.valid_from!r}",
                ("valid_from",),
            )
        if self.cut_at is not None:
            at = _utc(self.cut_at, "cut_at")
            if self.valid_from is not None and _utc(self.valid_from, "valid_from") > at:
                raise ConfigError(
                    f"config key 'valid_from' must not be after cut_at ({self.cut_at!r}), got {self.valid_from!r}",
                    ("valid_from",),
                )

    def _check_given(self) -> None:
        """A given split names its parts one way only, and no protocol setting that would move events."""
        if self.files is not None:
            unknown = sorted(set(self.files) - set(PARTS))
            if unknown or not {"train", "test"} <= set(self.files):
                raise ConfigError(
                    f"config key 'files' must map train, test (and optionally valid) to paths, got {sorted(self.files)}",
                    ("files",),
                )
            if self.column not in (None, GIVEN_COLUMN):
                raise ConfigError(f"config key 'column' must be unset with files, got {self.column!r}", ("column",))
            self.column = GIVEN_COLUMN
        if self.column is not None and (self.cut_at is not None or self.test_fraction or self.valid_fraction):
            raise ConfigError(
                "config key 'column' (a given split) excludes cut_at, test_fraction and valid_fraction", ("column",)
            )

    @property
    def given(self) -> bool:
        return self.column is not None


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


def split_by(interactions: pl.DataFrame, config: SplitConfig) -> Split:
    """The parts of `interactions` under `config`, whichever protocol it names."""
    return _split(interactions, part_of(config))


def part_of(config: SplitConfig) -> pl.Expr:
    """The part ("train", "valid", "test") of each event under `config`, over events sorted by ORDER."""
    if config.given:
        return pl.col(config.column).cast(pl.String)
    if config.cut_at is None and (config.test_fraction or config.valid_fraction):
        return per_user_share_part(config.valid_fraction, config.test_fraction, config.min_train)
    if config.cut_at is None:
        return per_user_part(config.valid_last, config.test_last, config.min_train)
    valid_from = None if config.valid_from is None else _utc(config.valid_from, "valid_from")
    return cut_part(_utc(config.cut_at, "cut_at"), valid_from)


def per_user_part(valid_last: int, test_last: int, min_train: int) -> pl.Expr:
    for argument, value in (("valid_last", valid_last), ("test_last", test_last), ("min_train", min_train)):
        if value < 0:
            raise ValueError(f"{argument} must be >= 0, got {value}")
    return _last_events_part(pl.lit(test_last), pl.lit(valid_last), min_train)


def per_user_share_part(valid_fraction: float, test_fraction: float, min_train: int) -> pl.Expr:
    """Per user: the last round(test_fraction * n) events are test (at least one), the last
    round(valid_fraction * rest) of the others validation (at least one when valid_fraction > 0). The
    arguments come from a SplitConfig, which has checked them."""
    n = pl.len().over(USER_ID).cast(pl.Int64)
    n_test = _share(n, test_fraction)
    return _last_events_part(n_test, _share(n - n_test, valid_fraction), min_train)


def _last_events_part(n_test: pl.Expr, n_valid: pl.Expr, min_train: int) -> pl.Expr:
    """Per user: the last n_test events are test, the n_valid before them validation, unless that would
    leave fewer than min_train in train (then all are train)."""
    from_end = pl.int_range(pl.len(), 0, -1).over(USER_ID) - 1
    held_out = pl.len().over(USER_ID).cast(pl.Int64) - n_test - n_valid >= min_train
    return (
        pl.when(held_out & (from_end < n_test))
        .then(pl.lit("test"))
        .when(held_out & (from_end < n_test + n_valid))
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )


def _share(n: pl.Expr, fraction: float) -> pl.Expr:
    if fraction == 0.0:
        return pl.lit(0, dtype=pl.Int64)
    return pl.max_horizontal((n.cast(pl.Float64) * fraction).round().cast(pl.Int64), pl.lit(1, dtype=pl.Int64))


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
    """SplitConfig's `key`, an ISO 8601 text, as an aware datetime (UTC when naive)."""
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise ConfigError(f"config key '{key}' must be an ISO 8601 date or time, got {text!r}", (key,)) from None


def cold_item_indices(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of item indices 1..n_items whose events never become training examples."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.split.cold_items must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1, n_items + 1), size=int(round(fraction * n_items)), replace=False))
