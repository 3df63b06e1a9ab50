"""Offline evaluation with full ranking over the catalogue, next to popularity, content-kNN and random
references ranked the same way, for all, warm and cold targets (cold-start details in cold_start.py)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from tandemrec.data.examples import EvalQueries
from tandemrec.retrieval.baselines import ItemWeights, baseline_topk
from tandemrec.retrieval.cold_start import cold_exposure, content_knn_topk, exact_topk, random_ranking_metrics
from tandemrec.retrieval.metrics import ranking_metrics
from tandemrec.retrieval.retriever import Retriever

EXPOSURE_K = 10  # cold exposure looks at the first page of results


def popularity_topk(
    counts: np.ndarray, exclude: Sequence[np.ndarray], k: int, progress: bool = False
) -> np.ndarray:
    """Most frequent rows first, each user's excluded rows left out; ties broken by row. `progress`
    shows a bar."""
    order = np.argsort(-counts, kind="stable")
    top = np.full((len(exclude), k), -1, dtype=np.int64)
    for i, rows in enumerate(tqdm(exclude, desc="popularity", unit="user", disable=not progress)):
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
    text_features: np.ndarray | None = None,
    baselines: Mapping[str, ItemWeights] | None = None,
    progress: bool = False,
    user_vectors: np.ndarray | None = None,
) -> dict:
    """Metrics of the model and of its references on `queries`, with seen items excluded for all.

    Since seen items are never recommended, a target the user had already seen can never be hit: such
    targets are left out, and users with only such targets are skipped (counted in the result).
    `train_counts[r]` is the training-event count of index row r. Users' features are taken just
    before each query's time, so nothing from the evaluated period leaks in.

    With `text_features` (row r: the text-encoder output of index row r) the content-kNN reference is
    ranked too (see `content_knn_topk`), and so is each of `baselines` (EASE, item-kNN: see baselines.py),
    a user without a usable history getting the popularity ranking. With `cold_rows` (sorted; the items
    without training events, see `cold_start.cold_rows`) the metrics are also given for warm and cold
    targets apart, each next to the expected value of a random ranking; when some targets are cold, also
    the new-arrivals shelf (only the cold items ranked) and the cold exposure (are cold items shown as
    often as they are wanted?). `progress` shows a bar for the users' embedding and each reference's ranking.
    `user_vectors`: the queries' user vectors, when the caller embedded them already.
    """
    n_items = len(retriever.index)
    k_max = max(*ks, min(EXPOSURE_K, n_items))
    seen, targets = unseen_targets(retriever, queries)
    vectors = user_vectors
    if vectors is None:
        vectors = retriever.embed_users(queries.users, queries.times, progress, "evaluated users")
    tops = {
        "tandemrec": retriever.index.search(vectors, k_max, exclude=seen)[0],
        "popularity": popularity_topk(train_counts, seen, k_max, progress),
    }
    if text_features is not None:
        tops["content_knn"] = content_knn_topk(
            text_features, seen, k_max, fallback=tops["popularity"], progress=progress
        )
    for name, model in (baselines or {}).items():
        tops[name] = baseline_topk(model, seen, k_max, fallback=tops["popularity"], progress=progress, desc=name)

    result = compare(tops, targets, ks, n_items)
    if cold_rows is None or not len(cold_rows):
        return result
    n_eligible = n_items - np.array([len(s) for s in seen])
    cold = [np.intersect1d(t, cold_rows) for t in targets]
    result["warm"] = compare(tops, [np.setdiff1d(t, cold_rows) for t in targets], ks, n_items, n_eligible)
    if not any(len(t) for t in cold):
        return result
    result["cold"] = compare(tops, cold, ks, n_items, n_eligible)
    cold_vectors = retriever.index.vectors(cold_rows)
    shelf = {"tandemrec": exact_topk(vectors, cold_vectors, cold_rows, seen, k_max, progress, "new arrivals")}
    if text_features is not None:
        shelf["content_knn"] = content_knn_topk(
            text_features, seen, k_max, rows=cold_rows, progress=progress, desc="new arrivals content knn"
        )
    shelf_size = len(cold_rows) - np.array([np.isin(s, cold_rows).sum() for s in seen])
    result["new_arrivals"] = {**compare(shelf, cold, ks, None, shelf_size), "items": len(cold_rows)}
    evaluated = [i for i, t in enumerate(targets) if len(t)]
    result["cold_exposure"] = cold_exposure(
        {name: top[evaluated] for name, top in tops.items()}, [targets[i] for i in evaluated], cold_rows, EXPOSURE_K
    )
    return result


def compare(
    tops: dict[str, np.ndarray],
    wanted: list[np.ndarray],
    ks: Sequence[int],
    n_items: int | None,
    n_eligible: np.ndarray | None = None,
) -> dict:
    """`ranking_metrics` of each system's top-k over the users with some `wanted` rows, and with
    `n_eligible` (rankable items per user) the expected metrics of a random ranking (`random`)."""
    keep = [i for i, t in enumerate(wanted) if len(t)]
    if not keep:
        return {"users": {"evaluated": 0, "skipped": len(wanted)}}
    chosen = [wanted[i] for i in keep]
    result = {name: ranking_metrics(top[keep], chosen, ks, n_items) for name, top in tops.items()}
    if n_eligible is not None:
        result["random"] = random_ranking_metrics(np.array([len(t) for t in chosen]), n_eligible[keep], ks)
    result["users"] = {"evaluated": len(keep), "skipped": len(wanted) - len(keep)}
    return result
