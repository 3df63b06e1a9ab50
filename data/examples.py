"""Training examples and evaluation queries: (user state before t, item at t) in index space."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.features import to_micros
from tandemrec.data.vocab import Vocabulary


@dataclass
class Examples:
    """Positive pairs: user users[i] interacted with items[i] at times[i] (microseconds)."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray

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
    if events.is_empty():
        raise DataError("no training examples: the training split is empty")
    return Examples(users.encode(events["user_id"]), items.encode(events["item_id"]), to_micros(events["timestamp"]))


def eval_queries(events: pl.DataFrame, users: Vocabulary, items: Vocabulary) -> EvalQueries:
    if events.is_empty():
        return EvalQueries(np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    grouped = (
        events.group_by("user_id", maintain_order=True)
        .agg(pl.col("timestamp").min().alias("t"), pl.col("item_id").unique(maintain_order=True).alias("targets"))
        .sort("user_id")
    )
    targets = items.encode(grouped["targets"].explode())
    lengths = grouped["targets"].list.len().to_numpy()
    return EvalQueries(
        users.encode(grouped["user_id"]),
        to_micros(grouped["t"]),
        np.split(targets, np.cumsum(lengths)[:-1]),
    )
