"""Negatives beyond the in-batch items: mixed (random catalogue items) and hard (mined from an index).

In-batch negatives are drawn by popularity, so the long tail is rarely pushed away from users; mixed
negative sampling adds uniformly drawn catalogue items to every step (Yang et al., WWW 2020). Hard
negatives are the items the current model ranks high for a user that the user never took: mined with a
FAISS inner-product index of the item vectors, refreshed every few epochs.
"""
from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np
from tqdm import tqdm

from tandemrec.errors import ConfigError

MINING_CHUNK = 4096  # users searched at a time


def mixed_negatives(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` item indices drawn uniformly (without replacement) from `pool`."""
    if count <= 0 or len(pool) == 0:
        return np.zeros(0, dtype=np.int64)
    return rng.choice(pool, size=min(count, len(pool)), replace=False).astype(np.int64)


def candidate_log_q(frequencies: np.ndarray, pool: np.ndarray, batch_size: int, count: int) -> np.ndarray:
    """log q(i) of every item index when a step's candidates are `batch_size` in-batch items (drawn by
    training frequency, each item counted once more so that none has q = 0) plus `count` uniform draws from
    `pool`: the mixture of the two samplers (the in-batch one alone when `count` is 0)."""
    frequencies = np.asarray(frequencies, dtype=np.float64) + 1.0
    unigram = frequencies / frequencies.sum()
    uniform = np.zeros_like(unigram)
    uniform[pool] = 1.0 / max(len(pool), 1)
    q = (batch_size * unigram + count * uniform) / (batch_size + count)
    return np.log(np.maximum(q, 1e-12))


class HardNegativeMiner:
    """Per user, the `depth` items the current model scores highest among those the user never had.

    Refreshed from fresh item and user vectors (`refresh`); a step then draws, for each row, one item of
    its user's list other than the row's positive (`draw`).
    """

    def __init__(self, n_users: int, depth: int) -> None:
        if depth <= 0:
            raise ConfigError(f"train.hard_negative_depth must be positive, got {depth}")
        self.depth = depth
        self.lists = np.zeros((n_users, depth), dtype=np.int64)  # item indices; 0 = none

    def refresh(
        self,
        users: np.ndarray,
        user_vectors: np.ndarray,
        item_vectors: np.ndarray,
        seen: Sequence[np.ndarray],
        progress: bool = False,
    ) -> None:
        """users[r] has vector user_vectors[r] and had the item indices seen[r]; item_vectors row j is
        item index j + 1. Every training user is re-mined, which takes a while on a large catalogue:
        `progress` shows a bar."""
        index = faiss.IndexFlatIP(item_vectors.shape[1])
        index.add(np.ascontiguousarray(item_vectors, dtype=np.float32))
        longest = max((len(s) for s in seen), default=0)
        k = min(self.depth + longest, len(item_vectors))
        queries = np.ascontiguousarray(user_vectors, dtype=np.float32)
        with tqdm(total=len(users), desc="hard negatives", unit="user", disable=not progress) as bar:
            for start in range(0, len(users), MINING_CHUNK):  # chunks, so that the bar moves during the search
                end = start + MINING_CHUNK
                _, rows = index.search(queries[start:end], k)
                for user, found, had in zip(users[start:end], rows + 1, seen[start:end]):
                    fresh = found[~np.isin(found, had)][: self.depth]
                    self.lists[user] = 0
                    self.lists[user, : len(fresh)] = fresh
                bar.update(len(rows))

    def draw(self, users: np.ndarray, positives: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """Up to `count` distinct hard negatives for these rows: one random pick from each row's list that
        is not the row's positive, then a random subset of those."""
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        lists = self.lists[users]
        picks = lists[np.arange(len(users)), rng.integers(0, self.depth, size=len(users))]
        picks = np.unique(picks[(picks != 0) & (picks != positives)])
        return rng.permutation(picks)[:count].astype(np.int64)
