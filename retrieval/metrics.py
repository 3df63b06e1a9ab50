"""Offline metrics, vectorised in numpy: ranking metrics over top-k lists, and the AUC and log-loss of
predicted outcome probabilities (behaviour evaluation and the outcome model's choice of kind alike).

One hit matrix (which ranked item is relevant) is computed once and every ranking metric is read off it,
so the metrics of an evaluation always agree with each other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tandemrec.retrieval.errors import RetrievalError

EPSILON = 1e-7  # how far log_loss keeps probabilities from 0 and 1


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None when a class is absent."""
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]  # 1-based average ranks
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of predicted probabilities (clipped off 0 and 1, so one confident miss
    is costly but finite): the score that prefers calibrated probabilities to merely well-ordered ones."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    y = np.asarray(labels, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def ranks_to_hits(topk: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """Bool matrix shaped like `topk`: True where the ranked item is one of the user's targets.

    `topk` is (n_users, K_max) item indices, best first, -1 for padding; `targets[i]` holds the relevant
    item indices of user i (non-empty).
    """
    hits, _ = _match(_check_topk(topk, None), targets, None)
    return hits


def ranking_metrics(
    topk: np.ndarray,
    targets: Sequence[np.ndarray],
    ks: Sequence[int] = (10,),
    n_items: int | None = None,
) -> dict[str, float]:
    """Means over users of recall, precision, F1, nDCG and hit rate at each k, coverage and MRR.

    Relevance is binary; a target item listed twice counts once. `coverage@k` (distinct items in all top-k
    lists / n_items) is reported only when `n_items` is given. `mrr` looks at the whole K_max columns.
    """
    topk = _check_topk(topk, n_items)
    hits, n_relevant = _match(topk, targets, n_items)
    k_max = topk.shape[1]
    for k in ks:
        if not 1 <= int(k) <= k_max:
            raise RetrievalError(f"ks: k={k} must be in [1, {k_max}] (the number of columns of topk)")

    discounts = 1.0 / np.log2(np.arange(2, k_max + 2))
    ideal_dcg = np.cumsum(discounts)
    result: dict[str, float] = {}
    for k in map(int, ks):
        n_hits = hits[:, :k].sum(axis=1)
        recall = n_hits / n_relevant
        precision = n_hits / k
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        ndcg = (hits[:, :k] @ discounts[:k]) / ideal_dcg[np.minimum(n_relevant, k) - 1]
        result[f"recall@{k}"] = float(recall.mean())
        result[f"precision@{k}"] = float(precision.mean())
        result[f"f1@{k}"] = float(f1.mean())
        result[f"ndcg@{k}"] = float(ndcg.mean())
        result[f"hit_rate@{k}"] = float((n_hits > 0).mean())
        if n_items is not None:
            shown = topk[:, :k]
            result[f"coverage@{k}"] = np.unique(shown[shown >= 0]).size / n_items
    first_hit = hits.argmax(axis=1)
    result["mrr"] = float(np.where(hits.any(axis=1), 1.0 / (first_hit + 1), 0.0).mean())
    return result


def _check_topk(topk: np.ndarray, n_items: int | None) -> np.ndarray:
    topk = np.asarray(topk)
    if topk.ndim != 2 or topk.shape[0] == 0 or topk.shape[1] == 0:
        raise RetrievalError(f"topk must be a non-empty (n_users, K_max) matrix, got shape {topk.shape}")
    if not np.issubdtype(topk.dtype, np.integer):
        raise RetrievalError(f"topk must hold integer item indices, got dtype {topk.dtype}")
    topk = topk.astype(np.int64, copy=False)
    if topk.min() < -1:
        raise RetrievalError("topk holds an index below -1 (-1 is the only padding value)")
    if n_items is not None:
        if n_items <= 0:
            raise RetrievalError(f"n_items must be positive, got {n_items}")
        if topk.max() >= n_items:
            raise RetrievalError(f"topk holds item index {topk.max()}, not below n_items={n_items}")
    ranked = np.sort(topk, axis=1)
    repeated = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
    if repeated.any():
        user = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise RetrievalError(f"topk row {user} ranks the same item twice")
    return topk


def _match(
    topk: np.ndarray, targets: Sequence[np.ndarray], n_items: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Hit matrix and the number of distinct relevant items per user."""
    n_users = topk.shape[0]
    if len(targets) != n_users:
        raise RetrievalError(f"targets has {len(targets)} entries, expected one per topk row ({n_users})")
    arrays = [np.asarray(t) for t in targets]
    for i, t in enumerate(arrays):
        if t.ndim != 1 or t.size == 0:
            raise RetrievalError(
                f"targets[{i}] must be a non-empty 1-D array of item indices, got shape {t.shape}"
            )
    items = np.concatenate(arrays)
    if not np.issubdtype(items.dtype, np.integer):
        raise RetrievalError(f"targets must hold integer item indices, got dtype {items.dtype}")
    items = items.astype(np.int64, copy=False)
    if items.min() < 0:
        raise RetrievalError(f"targets hold a negative item index ({items.min()})")
    if n_items is not None and items.max() >= n_items:
        raise RetrievalError(f"targets hold item index {items.max()}, not below n_items={n_items}")

    # One integer key per (user, item) pair turns the per-user membership test into a single np.isin.
    base = max(int(items.max()), int(topk.max())) + 1
    users = np.repeat(np.arange(n_users, dtype=np.int64), [t.size for t in arrays])
    target_keys = np.unique(users * base + items)
    ranked_keys = np.arange(n_users, dtype=np.int64)[:, None] * base + topk
    hits = np.isin(ranked_keys, target_keys) & (topk >= 0)
    n_relevant = np.bincount(target_keys // base, minlength=n_users)
    return hits, n_relevant
