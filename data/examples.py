"""Training examples and evaluation queries: (user state before t, item at t) in index space.

Both are built from encoded events (integer `user_id` and `item_id` indices, see data/encoded.py) with
vectorised polars, so that tens of millions of events never become Python objects; the functions that
take string ids encode first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.features import to_micros
from tandemrec.data.vocab import Vocabulary


@dataclass
class Examples:
    """Positive pairs: user users[i] interacted with items[i] at times[i] (microseconds).

    With domains configured (data/domains.py), source[i] and target[i] say which domain's loss the pair
    belongs to (both can be true: a high rating is a view and a purchase); None means source only.
    """

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    source: np.ndarray | None = None
    target: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class EvalQueries:
    """One query per user: the state just before the user's first event in the part, and its targets."""

    users: np.ndarray
    times: np.ndarray
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.users.shape[0])


def examples_from(events: pl.DataFrame, users: Vocabulary, items: Vocabulary) -> Examples:
    return examples_of(encode_ids(events, users, items))


def eval_queries(events: pl.DataFrame, users: Vocabulary, items: Vocabulary) -> EvalQueries:
    return queries_of(encode_ids(events, users, items))


def encode_ids(events: pl.DataFrame, users: Vocabulary, items: Vocabulary) -> pl.DataFrame:
    """The events with `user_id` and `item_id` replaced by their indices (an unknown id is a DataError)."""
    return events.with_columns(
        pl.Series("user_id", users.encode(events["user_id"])), pl.Series("item_id", items.encode(events["item_id"]))
    )


def examples_of(encoded: pl.DataFrame) -> Examples:
    """Examples from encoded events, with their domain masks when the events carry them."""
    if encoded.is_empty():
        raise DataError("no training examples: the training split is empty")
    masks = {c: encoded[c].to_numpy() for c in ("source", "target") if c in encoded.columns}
    return Examples(
        encoded["user_id"].to_numpy(), encoded["item_id"].to_numpy(), to_micros(encoded["timestamp"]), **masks
    )


def queries_of(encoded: pl.DataFrame) -> EvalQueries:
    """One query per user of encoded events: the time of their first event, their distinct items."""
    if encoded.is_empty():
        return EvalQueries(np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    grouped = (
        encoded.group_by("user_id", maintain_order=True)
        .agg(pl.col("timestamp").min().alias("t"), pl.col("item_id").unique(maintain_order=True).alias("targets"))
        .sort("user_id")
    )
    targets = grouped["targets"].explode().to_numpy().astype(np.int64)
    lengths = grouped["targets"].list.len().to_numpy()
    return EvalQueries(
        grouped["user_id"].to_numpy().astype(np.int64),
        to_micros(grouped["t"]),
        np.split(targets, np.cumsum(lengths)[:-1]),
    )
