"""Features for behaviour prediction that the towers do not carry, computed leakage-free with polars.

The towers encode taste; whether a user who touches an item will buy it (or rate it highly) depends just
as much on things a taste vector does not hold: how often the item converts, how often this user does,
how popular the item is right now, how long since the user last came by, how much of the user's history
is in the item's category. Every feature of a pair (user, item, time t) is computed from the events
strictly before t (as-of joins with `allow_exact_matches=False`), so a training pair never sees its own
event or anything later, and serving computes the same features at "now" from the whole log.

Rates and means are shrunk toward the history's overall value (`prior`) with a pseudo-count, so that an
item with one event does not get a rate of 0 or 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.split import ORDER, SplitConfig, part_of
from tandemrec.data.encoded import PART, PART_TYPE
from tandemrec.data.vocabularies import Vocabularies

TIME = "time"  # int64 UTC microseconds, in history and pairs alike
OUTCOME = "outcome"  # 1.0 when the event counts as the predicted outcome (a purchase; a rating >= 4)
DAY_US = 86_400 * 1_000_000
# The neighbour kernel's temperature: chosen on MovieLens validation pairs among squared cosine and
# exp((cos - 1) / t) for t = 0.2, 0.1, 0.05 (AUC 0.780, 0.782, 0.784, 0.784 of the trees with it).
NEIGHBOUR_TEMPERATURE = 0.1
# The feature columns, in the order a model sees them: from the event history alone, then those that also
# use the towers' vectors (see `pair_features`).
HISTORY_FEATURES = [
    "item_count",
    "item_recent_share",
    "item_outcome_rate",
    "item_value_mean",
    "item_age_days",
    "user_count",
    "user_outcome_rate",
    "user_offset",
    "user_gap_days",
    "user_category_share",
]
TOWER_FEATURES = ["score", "log_rank", "neighbour_offset"]
FEATURES = HISTORY_FEATURES + TOWER_FEATURES


@dataclass
class OutcomeLabel:
    """Which events count as the outcome: an event type in `events` (with `value >= min_value` when set)."""

    name: str  # the output's name: an event type ("purchase") or "target"
    events: list[str]
    min_value: float | None = None

    def expr(self) -> pl.Expr:
        flag = pl.col("event").is_in(self.events)
        if self.min_value is not None:
            flag = flag & (pl.col("value") >= self.min_value).fill_null(False)
        return flag.cast(pl.Float64)


@dataclass
class FeatureSettings:
    """Shrinkage pseudo-counts and the trend window; `prior_outcome` / `prior_value` are the training
    history's means, fixed at fit time and stored with the model so that serving shrinks the same way."""

    prior_outcome: float
    prior_value: float | None
    item_shrink: float = 10.0
    user_shrink: float = 5.0
    recent_days: float = 30.0


def outcome_history(
    dataset: Dataset, vocabs: Vocabularies, label: OutcomeLabel, split: SplitConfig | None = None
) -> pl.DataFrame:
    """Every event in index space: user_id, item_id, `time`, `outcome`, `value`, `category` (an integer
    code of the item's category, 0 when it has none) and, with `split`, its `part`."""
    categories = dataset.items.select(
        vocabs.items.expr("item_id").alias("item_id"),
        pl.col("category").cast(pl.String).rank("dense").fill_null(0).cast(pl.Int64).alias("category")
        if "category" in dataset.items.columns
        else pl.lit(0, pl.Int64).alias("category"),
    )
    events = (
        dataset.interactions.lazy()
        .select(
            vocabs.users.expr("user_id").alias("user_id"),
            vocabs.items.expr("item_id").alias("item_id"),
            "timestamp",
            label.expr().alias(OUTCOME),
            pl.col("value").cast(pl.Float64),
        )
        .sort(ORDER)
    )
    if split is not None:
        events = events.with_columns(part_of(split).cast(PART_TYPE).alias(PART))
    return (
        events.with_columns(pl.col("timestamp").dt.epoch("us").alias(TIME))
        .drop("timestamp")
        .join(categories.lazy(), on="item_id", how="left")
        .with_columns(pl.col("category").fill_null(0))
        .collect()
    )


def settings_from(history: pl.DataFrame) -> FeatureSettings:
    """Priors from `history` (the training events): the outcome share and the mean value."""
    value = history["value"].mean()
    return FeatureSettings(float(history[OUTCOME].mean() or 0.0), None if value is None else float(value))


def _cumulative(history: pl.DataFrame, keys: Sequence[str], sums: dict[str, pl.Expr]) -> pl.DataFrame:
    """Per key and instant, running totals of `sums` up to and including that instant, sorted by time."""
    return (
        history.group_by(*keys, TIME)
        .agg(**sums)
        .sort(*keys, TIME)
        .with_columns(pl.col(name).cum_sum().over(keys) for name in sums)
        .sort(TIME)
    )


def _as_of(pairs: pl.DataFrame, totals: pl.DataFrame, keys: Sequence[str], at: pl.Expr, prefix: str) -> pl.DataFrame:
    """`pairs` with the running totals of their key as of strictly before `at` (nulls: nothing before)."""
    right = totals.rename({c: f"{prefix}{c}" for c in totals.columns if c not in keys})
    left = pairs.with_columns(at.alias("__at")).sort("__at")
    return left.join_asof(
        right, left_on="__at", right_on=f"{prefix}{TIME}", by=list(keys), strategy="backward",
        allow_exact_matches=False, check_sortedness=False,  # both sides are sorted by time just above
    ).drop("__at")


def _shrunk(total: pl.Expr, count: pl.Expr, prior: float, strength: float) -> pl.Expr:
    return (total.fill_null(0) + strength * prior) / (count.fill_null(0) + strength)


def _item_mean(settings: FeatureSettings) -> pl.Expr:
    """The item's shrunk mean value from its running totals (columns `i_vsum`, `i_vn`)."""
    return _shrunk(pl.col("i_vsum"), pl.col("i_vn"), settings.prior_value or 0.0, settings.item_shrink)


def _item_totals_and_residuals(history: pl.DataFrame, settings: FeatureSettings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The items' running totals, and each history event's residual `resid` against its item as the item
    stood just before the event: value - the item's mean value where there are values (ratings), else
    outcome - the item's outcome rate. A user's residuals say how much better or worse than usual they
    rate (or buy) what they touch; `rn` is 1 where the event has a residual."""
    has_value = pl.col("value").is_not_null().cast(pl.Float64)
    item_totals = _cumulative(
        history, ["item_id"],
        {"n": pl.len(), "pos": pl.col(OUTCOME).sum(), "vsum": pl.col("value").fill_null(0).sum(),
         "vn": has_value.sum(), "first": pl.col(TIME).min()},
    ).with_columns(pl.col("first").cum_min().over("item_id"))
    if settings.prior_value is not None:
        resid, counted = pl.col("value") - _item_mean(settings), has_value
    else:
        rate = _shrunk(pl.col("i_pos"), pl.col("i_n"), settings.prior_outcome, settings.item_shrink)
        resid, counted = pl.col(OUTCOME) - rate, pl.lit(1.0)
    residuals = _as_of(
        history.select("user_id", "item_id", TIME, "value", OUTCOME), item_totals, ["item_id"], pl.col(TIME), "i_"
    ).with_columns(resid.fill_null(0).alias("resid"), counted.alias("rn"))
    return item_totals, residuals


@dataclass
class HistoryTables:
    """What every pair's history features are read from: running totals per item, per user and per (user,
    category) at each instant of the history, the items' categories, and each user's events with their
    residuals. Building them is a pass of group-bys over the whole history; reading a pair's features is
    a join. So they are built once per history (`history_tables`) and serve any number of pairs: a
    served rerank of a few candidates no longer recomputes them on every call."""

    item_totals: pl.DataFrame
    user_totals: pl.DataFrame
    category_totals: pl.DataFrame
    item_categories: pl.DataFrame
    residuals_by_user: dict[int, pl.DataFrame]  # events with a residual (rn > 0), by time


def history_tables(history: pl.DataFrame, settings: FeatureSettings) -> HistoryTables:
    """The tables of `history` (user_id, item_id, `time`, value, outcome, category) under `settings`."""
    item_totals, residuals = _item_totals_and_residuals(history, settings)
    user_totals = _cumulative(
        residuals,
        ["user_id"],
        {"n": pl.len(), "pos": pl.col(OUTCOME).sum(), "rsum": pl.col("resid").sum(), "rn": pl.col("rn").sum()},
    )
    events = residuals.filter(pl.col("rn") > 0).sort("user_id", TIME)
    return HistoryTables(
        item_totals,
        user_totals,
        _cumulative(history, ["user_id", "category"], {"n": pl.len()}),
        history.group_by("item_id").agg(pl.col("category").first()),
        {u: g for (u,), g in events.group_by("user_id")},
    )


def neighbour_offset(tables: HistoryTables, pairs: pl.DataFrame, catalogue: np.ndarray) -> np.ndarray:
    """Per pair (user_id, item_id, `time`): the user's residuals (see `_item_totals_and_residuals`) on
    their earlier items, weighted by each one's similarity to the pair's item (exp((cosine - 1) / 0.1) over
    the item tower's vectors; `catalogue[r]` is item index r + 1), shrunk toward 0 by one unit of weight:
    item-based collaborative filtering on the towers' item space, "how did this user like items like it"."""
    norms = np.linalg.norm(catalogue, axis=1, keepdims=True)
    unit = catalogue / np.where(norms > 0, norms, 1.0)
    out = np.zeros(pairs.height, dtype=np.float64)
    order = pairs.with_row_index("__row").sort("user_id")
    for (user,), group in order.group_by("user_id"):
        past = tables.residuals_by_user.get(user)
        if past is None:
            continue
        items, times = group["item_id"].to_numpy(), group[TIME].to_numpy()
        similarity = unit[items - 1] @ unit[past["item_id"].to_numpy() - 1].T
        weight = np.exp((similarity - 1.0) / NEIGHBOUR_TEMPERATURE) * (past[TIME].to_numpy()[None, :] < times[:, None])
        out[group["__row"].to_numpy()] = (weight @ past["resid"].to_numpy()) / (weight.sum(axis=1) + 1.0)
    return out


def history_features(tables: HistoryTables, pairs: pl.DataFrame, settings: FeatureSettings) -> pl.DataFrame:
    """`pairs` (user_id, item_id, `time`, any other columns) with the HISTORY_FEATURES columns added, each
    from the events of the tables' history strictly before the pair's time; rows keep `pairs`' order."""
    pairs = pairs.with_row_index("__row").join(tables.item_categories, on="item_id", how="left").with_columns(
        pl.col("category").fill_null(0)
    )
    recent = pl.col(TIME) - int(settings.recent_days * DAY_US)
    joined = _as_of(pairs, tables.item_totals, ["item_id"], pl.col(TIME), "i_")
    joined = _as_of(joined, tables.item_totals.select("item_id", TIME, "n"), ["item_id"], recent, "old_")
    joined = _as_of(joined, tables.user_totals, ["user_id"], pl.col(TIME), "u_")
    joined = _as_of(joined, tables.category_totals, ["user_id", "category"], pl.col(TIME), "c_")
    item_n, user_n = pl.col("i_n").fill_null(0), pl.col("u_n").fill_null(0)
    features = joined.sort("__row").select(
        *[c for c in pairs.columns if c not in ("__row", "category")],
        item_n.log1p().alias("item_count"),
        ((item_n - pl.col("old_n").fill_null(0)) / (item_n + 1)).alias("item_recent_share"),
        _shrunk(pl.col("i_pos"), pl.col("i_n"), settings.prior_outcome, settings.item_shrink).alias("item_outcome_rate"),
        (_item_mean(settings) if settings.prior_value is not None else pl.lit(None, pl.Float64)).alias("item_value_mean"),
        ((pl.col(TIME) - pl.col("i_first")) / DAY_US).alias("item_age_days"),
        user_n.log1p().alias("user_count"),
        _shrunk(pl.col("u_pos"), pl.col("u_n"), settings.prior_outcome, settings.user_shrink).alias("user_outcome_rate"),
        _shrunk(pl.col("u_rsum"), pl.col("u_rn"), 0.0, settings.user_shrink).alias("user_offset"),
        ((pl.col(TIME) - pl.col(f"u_{TIME}")) / DAY_US).alias("user_gap_days"),
        (pl.col("c_n").fill_null(0) / (user_n + 1)).alias("user_category_share"),
    )
    return features.with_columns(pl.col(HISTORY_FEATURES).cast(pl.Float64))


def tower_features(user_vectors: np.ndarray, item_rows: np.ndarray, catalogue: np.ndarray) -> dict[str, np.ndarray]:
    """`score` (u . v) and `log_rank` (log of the item's 1-based rank among the whole catalogue for that
    user vector) per pair: what the retriever thinks of the pair. `item_rows` index `catalogue`'s rows."""
    scores = np.einsum("nd,nd->n", user_vectors, catalogue[item_rows])
    ranks = np.empty(len(scores), dtype=np.float64)
    for start in range(0, len(scores), 4096):
        block = user_vectors[start : start + 4096] @ catalogue.T
        ranks[start : start + 4096] = 1 + (block > scores[start : start + 4096, None]).sum(axis=1)
    return {"score": scores.astype(np.float64), "log_rank": np.log(ranks)}


def pair_features(
    tables: HistoryTables, pairs: pl.DataFrame, settings: FeatureSettings, user_vectors: np.ndarray,
    catalogue: np.ndarray,
) -> pl.DataFrame:
    """`pairs` with every FEATURES column, read from `tables` (`history_tables` of the history the pairs
    look back on); `user_vectors[i]` is pair i's user vector (at its time) and `catalogue[r]` item index
    r + 1's vector."""
    towers = tower_features(user_vectors, pairs["item_id"].to_numpy() - 1, catalogue)
    towers["neighbour_offset"] = neighbour_offset(tables, pairs, catalogue)
    return history_features(tables, pairs, settings).with_columns(
        pl.Series(name, towers[name]) for name in TOWER_FEATURES
    )


def feature_matrix(frame: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    """The float64 (n, len(names)) matrix of `names` (nulls as NaN: no history is a value trees can use)."""
    return frame.select(pl.col(list(names)).cast(pl.Float64).fill_null(np.nan)).to_numpy()
