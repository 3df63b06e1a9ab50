"""Build an index of a chosen kind, tune it on real queries, and record the recall it reaches.

An approximate index is only as good as its recall on the queries it will serve. Measuring recall@10
against exact search at build time, on a sample of the run's own user embeddings, puts that number in the
manifest, lets the build raise nprobe / efSearch until a target is met (unless the caller fixed them), and
refuses (or warns about) an index that still misses it.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import faiss
import numpy as np
from tqdm import tqdm

from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_kinds import available_memory, plan_index

log = logging.getLogger(__name__)

RECALL_K = 10
MIN_GAIN = 0.005  # tuning stops when doubling the search parameter gains less recall than this
_TUNED = {"nprobe": "nprobe", "efSearch": "ef_search"}  # FAISS parameter -> IndexConfig field


def build_tuned_index(
    vectors: np.ndarray,
    ids: Sequence[str],
    queries: np.ndarray,
    config: IndexConfig,
    metadata: dict | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ItemIndex:
    """An index of `config.kind` over `vectors`, its recall@10 on a sample of `queries` in its metadata.

    The search parameter starts where the plan puts it (or where the config fixes it) and, when not
    fixed, doubles until recall@10 reaches `config.min_recall`, the search is exhaustive, or doubling
    stops paying (less than MIN_GAIN recall: PQ codes cap recall whatever the search). Below the
    target the build raises RetrievalError (on_low_recall="error") or logs a warning ("warn").

    `progress` shows a bar over the build's stages (FAISS trains and adds in one call each, with no progress
    of its own) and one over the tuning's doublings of the search parameter.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[0] == 0 or queries.shape[1] != vectors.shape[1]:
        raise RetrievalError(
            f"recall queries must be a non-empty (m, {vectors.shape[1]}) matrix, got shape {queries.shape}"
        )
    budget = int(config.memory_fraction * available_memory())
    plan = plan_index(config.kind, vectors.shape[0], vectors.shape[1], budget)
    fixed = {name: getattr(config, field) for name, field in _TUNED.items() if getattr(config, field) is not None}
    search = {name: fixed.get(name, value) for name, value in plan.search.items()}
    # FAISS builds in one call with no progress of its own (minutes for HNSW over millions): say what runs.
    log.info("index %s (%s): building over %d vectors of dim %d", plan.kind, plan.factory, *vectors.shape)
    with tqdm(total=3, desc="index build", unit="stage", disable=not progress) as bar:  # build, exact, recall
        index = ItemIndex.build(
            vectors, ids, plan.factory, {**(metadata or {}), "kind": plan.kind},
            search=search, train_size=plan.train_size, ef_construction=plan.ef_construction, seed=seed,
        )
        bar.update()
        rng = np.random.default_rng(seed)
        sample = queries[np.sort(rng.choice(len(queries), min(len(queries), config.recall_queries), replace=False))]
        k = min(RECALL_K, len(index))
        _, exact = faiss.knn(sample, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        bar.update()
        recall = ann_recall_at_k(index, sample, exact)
        bar.update()
    limits = index.search_param_limits
    tuned = set(search) - set(fixed)
    doublings = sum(max(0, math.ceil(math.log2(limits[name] / search[name]))) for name in tuned)  # at most
    with tqdm(total=doublings, desc="index tuning", unit="step", disable=not progress or not doublings) as bar:
        for name in tuned:
            while recall < config.min_recall and search[name] < limits[name]:
                wider = min(limits[name], 2 * search[name])
                index.set_search_params(**{name: wider})
                gained = ann_recall_at_k(index, sample, exact) - recall
                bar.update()
                if gained < MIN_GAIN:  # the codes, not the search, limit recall now: searching wider only costs
                    index.set_search_params(**{name: search[name]})
                    break
                search[name], recall = wider, recall + gained
    index.annotate(recall_at_10=round(recall, 4), recall_queries=len(sample), min_recall=config.min_recall)
    log.info(
        "index %s (%s, %s): recall@%d %.4f on %d user queries", plan.kind, plan.factory, search, k, recall, len(sample)
    )
    if recall < config.min_recall:
        message = (
            f"index kind {plan.kind!r} ({plan.factory}, {search}) reaches recall@{k} {recall:.4f} against exact "
            f"search, below index.min_recall={config.min_recall}: choose another kind, raise nprobe/ef_search, "
            "or lower index.min_recall (index.on_low_recall=\"warn\" keeps the index anyway)"
        )
        if config.on_low_recall == "error":
            raise RetrievalError(message)
        log.warning(message)
    return index


def ann_recall_at_k(index: ItemIndex, queries: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k (rows of `exact`) that the index returns in its top-k: how
    faithful an approximate index is to exact search (not `training.validation.user_recall_at_k`)."""
    found, _ = index.search(queries, exact.shape[1])
    hits = [np.intersect1d(a, b).size for a, b in zip(found, exact)]
    return float(np.mean(hits) / exact.shape[1])

