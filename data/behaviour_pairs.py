"""Labelled (user state, item) pairs for behaviour prediction: what a user does with an item.

One pair per (user, item) within a part of the split: the user's state just before their first event
with the item in that part, and a multi-hot label over the event types of all their events with it there
(a view then a purchase of one item is one pair with both labels), plus `target` when a target domain
is configured (a purchase; a rating >= 4). Sampled items the user never touched in the part's window
become pairs with all-zero labels, so that a probability learnt from these pairs carries relevance too
(reranking retrieved candidates by it makes sense) and not only "purchase given an interaction".

Everything is in index space, built with vectorised polars and numpy.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.domains import TARGET, DomainConfig, label_domains
from tandemrec.data.encoded import PART, encode_events
from tandemrec.data.errors import DataError
from tandemrec.data.features import to_micros
from tandemrec.data.split import SplitConfig
from tandemrec.data.vocabularies import Vocabularies

TARGET_OUTPUT = TARGET  # the name of the target-domain output, next to the event types
EVENTS = "events"  # per encoded event: the event types of that (user, item, instant)


@dataclass
class BehaviourPairs:
    """Pair i: user `users[i]` as of just before `times[i]` (microseconds) and item `items[i]`;
    `labels[i, j]` is 1 when the user did output j with the item; `observed[i]` is False for sampled items."""

    users: np.ndarray
    times: np.ndarray
    items: np.ndarray
    labels: np.ndarray  # float32 (n, n_outputs)
    observed: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, rows: np.ndarray) -> "BehaviourPairs":
        return BehaviourPairs(self.users[rows], self.times[rows], self.items[rows], self.labels[rows], self.observed[rows])


def behaviour_events(
    dataset: Dataset, vocabs: Vocabularies, split: SplitConfig, domains: DomainConfig | None
) -> pl.DataFrame:
    """The encoded events of training (`encode_events`: index space, `part`, `target`, sorted by user, time
    and item), each with `events`: the event types the user had with the item at that instant.

    The split and domain labels are exactly training's: with `domains.train_target_fraction` below 1 the
    training part keeps only that seeded fraction of target labels, so the head learns from the target
    events the towers were allowed to see and no others.
    """
    domains = domains or DomainConfig()
    encoded = encode_events(dataset.interactions, vocabs, split, domains)
    types = (
        label_domains(dataset.interactions.lazy(), domains)
        .select(
            vocabs.users.expr("user_id").alias("user_id"),
            vocabs.items.expr("item_id").alias("item_id"),
            "timestamp",
            pl.col("event").cast(pl.String),
        )
        .group_by("user_id", "item_id", "timestamp")
        .agg(pl.col("event").unique().alias(EVENTS))
        .collect(engine="streaming")
    )
    return encoded.join(types, on=["user_id", "item_id", "timestamp"], how="left", maintain_order="left")


def behaviour_outputs(events: pl.DataFrame, domains: DomainConfig | None) -> list[str]:
    """The head's outputs: the event types of the training part, sorted, then `target` when configured."""
    types = sorted(events.filter(pl.col(PART) == "train")[EVENTS].explode().drop_nulls().unique().to_list())
    if not types:
        raise DataError("behaviour: the training part has no events, so no event types to predict")
    if TARGET_OUTPUT in types:
        raise DataError(f"behaviour: an event type is named {TARGET_OUTPUT!r}, the name of the target-domain output")
    return types + ([TARGET_OUTPUT] if domains is not None and domains.has_target else [])


def observed_pairs(
    events: pl.DataFrame, parts: Sequence[str], outputs: Sequence[str], exclude_items: np.ndarray | None = None
) -> BehaviourPairs:
    """One labelled pair per (user, item) of the events in `parts` (items in `exclude_items` left out)."""
    chosen = events.filter(pl.col(PART).is_in(list(parts)))
    if exclude_items is not None and len(exclude_items):
        chosen = chosen.filter(~pl.col("item_id").is_in(exclude_items))
    flags = [
        (pl.col(TARGET) if name == TARGET_OUTPUT else pl.col(EVENTS).list.contains(name)).any().alias(f"__{name}")
        for name in outputs
    ]
    grouped = (
        chosen.group_by("user_id", "item_id")
        .agg(pl.col("timestamp").min(), *flags)
        .sort("user_id", "timestamp", "item_id")
    )
    labels = grouped.select([f"__{name}" for name in outputs]).to_numpy().astype(np.float32)
    n = grouped.height
    return BehaviourPairs(
        grouped["user_id"].to_numpy().astype(np.int64),
        to_micros(grouped["timestamp"]) if n else np.zeros(0, np.int64),
        grouped["item_id"].to_numpy().astype(np.int64),
        labels.reshape(n, len(outputs)),
        np.ones(n, dtype=bool),
    )


def with_negatives(
    pairs: BehaviourPairs,
    per_pair: int,
    candidates: np.ndarray,
    weights: np.ndarray,
    touched: pl.DataFrame,
    n_items: int,
    rng: np.random.Generator,
    popular_share: float = 0.5,
) -> BehaviourPairs:
    """`pairs` and, for each, `per_pair` sampled items at the same user state with all-zero labels.

    Items are drawn from `candidates` (item indices): a `popular_share` of them in proportion to
    `weights` (training-event counts: popular items are the hard negatives a retriever surfaces), the
    rest uniformly. Draws of an item the user touched (a (user_id, item_id) row of `touched`) are
    redrawn a few times, then dropped: a positive labelled negative would be noise.
    """
    if per_pair <= 0 or len(pairs) == 0:
        return pairs
    if len(candidates) == 0:
        raise DataError("behaviour: no items to sample negatives from")
    users = np.repeat(pairs.users, per_pair)
    n = len(users)
    banned = np.unique(touched["user_id"].to_numpy().astype(np.int64) * (n_items + 1) + touched["item_id"].to_numpy())
    p = weights / weights.sum()
    n_popular = int(round(popular_share * n))

    def draw(count: int, popular: int) -> np.ndarray:
        return np.concatenate([rng.choice(candidates, size=popular, p=p), rng.choice(candidates, size=count - popular)])

    items = draw(n, n_popular)
    clash = np.isin(users * (n_items + 1) + items, banned)
    for _ in range(5):
        if not clash.any():
            break
        items[clash] = draw(int(clash.sum()), 0)
        clash = np.isin(users * (n_items + 1) + items, banned)
    keep = ~clash
    negatives = BehaviourPairs(
        users[keep],
        np.repeat(pairs.times, per_pair)[keep],
        items[keep],
        np.zeros((int(keep.sum()), pairs.labels.shape[1]), dtype=np.float32),
        np.zeros(int(keep.sum()), dtype=bool),
    )
    return concat_pairs([pairs, negatives])


def concat_pairs(parts: Sequence[BehaviourPairs]) -> BehaviourPairs:
    return BehaviourPairs(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("users", "times", "items", "labels", "observed"))
    )


@dataclass
class BehaviourSplit:
    """The head's outputs and its labelled pairs (observed + sampled) of each part of the split."""

    outputs: list[str]
    train: BehaviourPairs
    valid: BehaviourPairs
    test: BehaviourPairs


def behaviour_split(
    events: pl.DataFrame,
    outputs: list[str],
    item_counts: np.ndarray,
    cold_items: np.ndarray,
    negatives: int,
    popular_share: float,
    max_pairs: int,
    seed: int,
) -> BehaviourSplit:
    """Pairs of each part with `negatives` sampled items each (see `with_negatives`).

    `item_counts[i]` is item index i's training-event count; negatives are drawn among items with
    training events, and cold items (kept out of training) never make training pairs. A sampled
    negative avoids every item the user touched up to the end of its part: training pairs look at the
    training part only, test pairs at everything (evaluation may use all labels).
    """
    rng = np.random.default_rng(seed)
    n_items = len(item_counts) - 1
    warm = np.flatnonzero(item_counts[1:] > 0) + 1
    weights = item_counts[warm].astype(np.float64)
    train = observed_pairs(events, ["train"], outputs, cold_items)
    if len(train) > max_pairs:
        train = train.take(np.sort(rng.choice(len(train), size=max_pairs, replace=False)))
    made = {}
    for part, seen in (("train", ["train"]), ("valid", ["train", "valid"]), ("test", ["train", "valid", "test"])):
        positives = train if part == "train" else observed_pairs(events, [part], outputs)
        touched = events.filter(pl.col(PART).is_in(seen)).select("user_id", "item_id")
        made[part] = with_negatives(positives, negatives, warm, weights, touched, n_items, rng, popular_share)
    return BehaviourSplit(outputs, **made)


def state_vectors(embed_users, users: np.ndarray, times: np.ndarray) -> np.ndarray:
    """User vectors at each (user, time) state, embedding each distinct state once.

    `embed_users(users, times)` is a user tower's batched encoder (training's or the Retriever's)."""
    states, inverse = np.unique(np.stack([users, times], axis=1), axis=0, return_inverse=True)
    return embed_users(states[:, 0], states[:, 1])[inverse.reshape(-1)]
