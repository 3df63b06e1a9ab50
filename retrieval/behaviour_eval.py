"""Offline evaluation of the behaviour head: AUC and log-loss per output, and reranking retrieval by it.

Per output on the test pairs (each user's test interactions plus sampled items they never touched, at the
user's state just before the test period): positives are the pairs with that event, negatives the other
test pairs of those users and the sampled items. That AUC rewards relevance as much as the event itself,
so the conditional AUC is given too, among interacted pairs only (purchase vs view-only; rating >= 4 vs
< 4): the hard, honest number for "what will the user do with an item they do touch".

Reranking: for the test queries of `evaluate` (target events when the run has a target domain), the
RERANK_DEPTH-deep candidate list of the plain dot product is re-ordered by each output's probability;
Recall@k and NDCG@k of the plain top-k and of each re-ordered top-k are compared on the same users.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from tandemrec.data.behaviour_pairs import BehaviourPairs, state_vectors
from tandemrec.data.examples import EvalQueries
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.evaluate import unseen_targets
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.metrics import log_loss, ranking_metrics, roc_auc
from tandemrec.retrieval.retriever import RERANK_DEPTH, RERANK_DEPTH_FACTOR, Retriever
from tandemrec.towers.behaviour_head import BehaviourHead


def pair_probabilities(retriever: Retriever, pairs: BehaviourPairs, shared: bool = False) -> np.ndarray:
    """The head's probabilities (n, n_outputs) for pairs of users (at their times) and index items.
    `shared`: the processes of a job's group call this together and embed the users together."""
    head = retriever.require_behaviour("behaviour evaluation")
    users = state_vectors(partial(retriever.embed_users, shared=shared), pairs.users, pairs.times)
    return head.probabilities(users, retriever.index.vectors(pairs.items - 1))


def output_metrics(probabilities: np.ndarray, pairs: BehaviourPairs, outputs: list[str]) -> dict:
    """AUC, log-loss and counts per output over all pairs, and the conditional AUC among observed ones."""
    result = {}
    for j, name in enumerate(outputs):
        p, y = probabilities[:, j], pairs.labels[:, j]
        seen = pairs.observed
        result[name] = {
            "auc": roc_auc(p, y),
            "log_loss": log_loss(p, y),
            "positives": int(y.sum()),
            "negatives": int(len(y) - y.sum()),
            "conditional_auc": roc_auc(p[seen], y[seen]),
            "conditional_positives": int(y[seen].sum()),
            "conditional_negatives": int(seen.sum() - y[seen].sum()),
        }
    return result


def rerank_comparison(retriever: Retriever, queries: EvalQueries, k: int = 10, shared: bool = False) -> dict:
    """Recall@k and NDCG@k of the plain top-k and of the top-k re-ordered by each output's probability.
    `shared`: as `pair_probabilities`'."""
    head = retriever.require_behaviour("rerank evaluation")
    seen, targets = unseen_targets(retriever, queries)
    keep = [i for i, t in enumerate(targets) if len(t)]
    if not keep:
        raise RetrievalError("rerank evaluation: no test user has a target item they had not seen before")
    depth = min(retriever.index.live_count, max(RERANK_DEPTH, RERANK_DEPTH_FACTOR * k))
    vectors = retriever.embed_users(queries.users[keep], queries.times[keep], shared=shared)
    candidates, _ = retriever.index.search(vectors, depth, exclude=[seen[i] for i in keep])
    valid = candidates >= 0
    item_vectors = retriever.index.vectors(np.where(valid, candidates, 0).reshape(-1))
    p = head.probabilities(np.repeat(vectors, depth, axis=0), item_vectors).reshape(len(keep), depth, -1)
    wanted = [targets[i] for i in keep]

    def scored(top: np.ndarray) -> dict:
        metrics = ranking_metrics(top, wanted, [k], len(retriever.index))
        return {f"recall@{k}": metrics[f"recall@{k}"], f"ndcg@{k}": metrics[f"ndcg@{k}"]}

    result = {"users": len(keep), "candidates": depth, "plain": scored(candidates[:, :k])}
    for j, name in enumerate(head.outputs):
        order = np.argsort(np.where(valid, -p[:, :, j], np.inf), axis=1, kind="stable")[:, :k]
        result[f"rerank_{name}"] = scored(np.take_along_axis(candidates, order, axis=1))
    return result


def evaluate_behaviour(
    retriever: Retriever, test: BehaviourPairs, outputs: list[str], queries: EvalQueries, k: int = 10, shared: bool = False
) -> dict:
    """Per-output metrics on the test pairs (labelled by `outputs`) and the rerank comparison on the test
    queries. `shared`: the processes of a job's group call this together and embed the users together."""
    head_outputs = retriever.require_behaviour("behaviour evaluation").outputs
    if head_outputs != list(outputs):
        raise RetrievalError(
            f"the behaviour head predicts {head_outputs} but the run's data has outputs {list(outputs)}: "
            "retrain it with `tandemrec behaviour RUN`"
        )
    return {
        "outputs": output_metrics(pair_probabilities(retriever, test, shared), test, outputs),
        "test_pairs": {"observed": int(test.observed.sum()), "sampled": int((~test.observed).sum())},
        "rerank": rerank_comparison(retriever, queries, k, shared),
    }


def top_k_propensity(
    head: BehaviourHead,
    users: np.ndarray,
    items: np.ndarray,
    item_ids: list[str],
    seen: list[np.ndarray],
    k: int = 10,
) -> np.ndarray:
    """(n_users, n_outputs): each head output's mean probability over the user's top-k items (see
    `top_k_mean`): how likely the user is to do each thing with what they would be recommended. The
    per-user behaviour columns of the user export."""
    return top_k_mean(lambda _, vectors, rows: head.probabilities(vectors, items[rows]), users, items, item_ids, seen, k)


def top_k_mean(
    score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    users: np.ndarray,
    items: np.ndarray,
    item_ids: list[str],
    seen: list[np.ndarray],
    k: int = 10,
    chunk: int = 8192,
) -> np.ndarray:
    """(n_users, n_outputs): the mean of `score(user positions, user vectors, item rows)` ((m, n_outputs)
    for m pairs) over each user's top-k items by exact dot product, seen items (`seen[i]`: rows of `items`)
    left out. User position i is row i of `users`."""
    index = ItemIndex.build(items, item_ids)
    k = min(k, len(item_ids))
    out = None
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        top, _ = index.search(block, k, exclude=seen[start : start + chunk])
        valid = top >= 0
        positions = np.repeat(np.arange(start, start + len(block)), k)
        p = score(positions, np.repeat(block, k, axis=0), np.where(valid, top, 0).reshape(-1))
        p = p.reshape(len(block), k, -1) * valid[..., None]
        if out is None:
            out = np.zeros((len(users), p.shape[-1]), dtype=np.float32)
        out[start : start + chunk] = p.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]
    return np.zeros((0, 0), dtype=np.float32) if out is None else out
