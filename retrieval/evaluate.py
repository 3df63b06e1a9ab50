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


def unseen_targets(retriever: Retriever, queries: EvalQueries) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query: the index rows the user had seen before its time, and its target rows not among them
    (a seen item is never recommended, so a seen target could never be hit)."""
    seen = retriever.seen_rows(queries.users, queries.times)
    return seen, [np.setdiff1d(t - 1, s) for t, s in zip(queries.targets, seen)]


def evaluate(
    retriever: Retriever,
    queries: EvalQueries,
    train_counts: np.ndarray,
    ks: Sequence[int] = (10, 50),
    cold_rows: np.ndarray | None = None,
) -> dict:
    """Metrics of the model and of popularity on `queries`, with seen items excluded for both.

    Since seen items are never recommended, a target the user had already seen can never be hit: such
    targets are left out, and users with only such targets are skipped (counted in the result).
    `train_counts[r]` is the training-event count of index row r. Users' features are taken just
    before each query's time, so nothing from the evaluated period leaks in. With `cold_rows` (items
    kept out of training), the metrics are also given for cold and warm targets apart.
    """
    k_max = max(ks)
    seen, targets = unseen_targets(retriever, queries)
    vectors = retriever.embed_users(queries.users, queries.times)
    model_top, _ = retriever.index.search(vectors, k_max, exclude=seen)
    popular_top = popularity_topk(train_counts, seen, k_max)

    def compare(wanted: list[np.ndarray]) -> dict:
        keep = [i for i, t in enumerate(wanted) if len(t)]
        if not keep:
            return {"users": {"evaluated": 0}}
        chosen = [wanted[i] for i in keep]
        return {
            "tandemrec": ranking_metrics(model_top[keep], chosen, ks, len(retriever.index)),
            "popularity": ranking_metrics(popular_top[keep], chosen, ks, len(retriever.index)),
            "users": {"evaluated": len(keep), "skipped": len(wanted) - len(keep)},
        }

    result = compare(targets)
    if cold_rows is not None and len(cold_rows):
        result["cold"] = compare([np.intersect1d(t, cold_rows) for t in targets])
        result["warm"] = compare([np.setdiff1d(t, cold_rows) for t in targets])
    return result
