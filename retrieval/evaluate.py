"""Offline evaluation with full ranking over the catalogue, next to a popularity baseline ranked the same way."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tandemrec.data.examples import EvalQueries
from tandemrec.retrieval.metrics import ranking_metrics
from tandemrec.retrieval.retriever import Retriever


def popularity_topk(counts: np.ndarray, exclude: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Most frequent rows first, each user's excluded rows left out; ties broken by row."""
    order = np.argsort(-counts, kind="stable")
    top = np.full((len(exclude), k), -1, dtype=np.int64)
    for i, rows in enumerate(exclude):
        head = order[: k + len(rows)]
        head = head[~np.isin(head, rows)][:k]
        top[i, : len(head)] = head
    return top


def evaluate(
    retriever: Retriever,
    queries: EvalQueries,
    train_counts: np.ndarray,
    ks: Sequence[int] = (10, 50),
) -> dict[str, dict[str, float]]:
    """Metrics of the model and of popularity on `queries`, with seen items excluded for both.

    Since seen items are never recommended, a target the user had already seen can never be hit: such
    targets are left out, and users with only such targets are skipped (counted in the result).
    `train_counts[r]` is the training-event count of index row r. Users' features are taken just
    before each query's time, so nothing from the evaluated period leaks in.
    """
    k_max = max(ks)
    n_items = len(retriever.index)
    seen = retriever.seen_rows(queries.users, queries.times)
    targets = [np.setdiff1d(t - 1, s) for t, s in zip(queries.targets, seen)]
    keep = np.flatnonzero([len(t) > 0 for t in targets])
    seen, targets = [seen[i] for i in keep], [targets[i] for i in keep]
    vectors = retriever.embed_users(queries.users[keep], queries.times[keep])
    model_top, _ = retriever.index.search(vectors, k_max, exclude=seen)
    return {
        "tandemrec": ranking_metrics(model_top, targets, ks, n_items),
        "popularity": ranking_metrics(popularity_topk(train_counts, seen, k_max), targets, ks, n_items),
        "users": {"evaluated": int(len(keep)), "skipped_all_targets_seen": int(len(queries) - len(keep))},
    }
