"""Retrieval benchmark: each FAISS index kind on synthetic catalogues of 100K and 1M item vectors (dim 128).

Why synthetic: the index's cost depends on the vectors' count, dimension and structure, not on where they
came from, and no run here has a million items. The vectors are clustered (1,000 items per cluster, each
cluster spread over its own 16-dimensional subspace, plus a little isotropic noise), so that approximate
search meets neighbourhoods like those of learned embeddings; queries are data points moved by noise.

Per kind, built through the same plan and tuning as `tandemrec index` (search parameter raised until
recall@10 >= 0.95 on 1,000 tuning queries): build time, index size (FAISS serialisation), recall@10 against
exact search on 1,000 other queries, queries per second one at a time and in one batch of 1,000, the
batched speed-up over exact search, and the Retriever's overhead over calling FAISS directly on the same
index with the same parameters (ItemCatalogue.search, the path of Retriever.search_vectors and every other
Retriever query: checks, filters, exclusions, id mapping, result objects). All ratios come from the same
run, measurements interleaved, best of several repeats: these machines are noisy.

On catalogues up to 100K items it also times one-query `Retriever.search_vectors`, `similar_items` and
`recommend` call by call against what each must do anyway in raw FAISS (and, for `recommend`, the user
tower's forward), and prints the ratio: the Python a single request pays on top of the search.

    .venv/bin/python benchmarks/retrieval.py                       # 100K and 1M, all kinds (~20 min)
    .venv/bin/python benchmarks/retrieval.py --sizes 20000 --kinds flat,ivf --out /tmp/r.md
    .venv/bin/python benchmarks/retrieval.py --threads 1    # steadier when another job holds a core
    .venv/bin/python benchmarks/retrieval.py --sizes 100000 --kinds flat,ivf,hnsw --threads 1 --one-query-calls 1000
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import polars as pl
import torch

from tandemrec.config import load_config
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.data.vocab import Vocabulary
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.io.atomic import atomic_write_text
from tandemrec.jobs import sized
from tandemrec.retrieval.arguments import check_found, check_k, matrix, query_vectors
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_build import ann_recall_at_k, build_tuned_index
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.retrieval.retriever import Retriever
from tandemrec.retrieval.rwlock import ReadWriteLock
from tandemrec.towers.inference import embed
from tandemrec.towers.two_tower import TwoTower

DIM = 128
K = 10
CLUSTER_SIZE = 1_000
SUBSPACE = 16
QUERIES = 1_000
TARGET_RECALL = 0.95
SINGLE_SECONDS = 3.0  # time spent on one-at-a-time queries per kind (at most SINGLE_MAX queries)
SINGLE_MAX = 500
REPEATS = 5
# One-query Retriever calls (search_vectors, similar_items, recommend) are timed on catalogues up to this
# size, ONE_QUERY_CALLS calls each, for USERS synthetic users with USER_EVENTS events each.
ONE_QUERY_MAX_ITEMS = 100_000
ONE_QUERY_CALLS = 2_000
USERS = 1_000
USER_EVENTS = 20
RESULTS = Path(__file__).parent / "results" / "retrieval.md"


@dataclass
class Row:
    n: int
    kind: str
    factory: str
    search: dict[str, int]
    build_s: float
    bytes: int
    recall: float
    qps_single_faiss: float
    qps_single_retriever: float
    qps_batch_faiss: float
    qps_batch_retriever: float
    speedup: float  # batched FAISS QPS over exact search's, timed interleaved with it

    @property
    def overhead(self) -> float:
        return self.qps_batch_faiss / self.qps_batch_retriever


def clustered_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors in n / CLUSTER_SIZE clusters, each spread over its own low-dimensional subspace."""
    clusters = max(1, n // CLUSTER_SIZE)
    centres = _unit(rng.standard_normal((clusters, DIM), dtype=np.float32))
    bases = rng.standard_normal((clusters, SUBSPACE, DIM), dtype=np.float32) / np.sqrt(DIM)
    labels = rng.integers(0, clusters, n)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = labels[start : start + 100_000]
        z = 0.6 * rng.standard_normal((len(part), SUBSPACE), dtype=np.float32)
        noise = (0.1 / np.sqrt(DIM)) * rng.standard_normal((len(part), DIM), dtype=np.float32)
        out[start : start + len(part)] = _unit(centres[part] + np.einsum("nk,nkd->nd", z, bases[part]) + noise)
    return out


def queries_near(vectors: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m unit queries, each a random data point moved by noise (it is not in the catalogue itself)."""
    picked = vectors[rng.integers(0, len(vectors), m)]
    return _unit(picked + (0.3 / np.sqrt(DIM)) * rng.standard_normal(picked.shape, dtype=np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32: what FAISS and the Retriever take without a conversion."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32, copy=False)


def seconds(search: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    start = time.perf_counter()
    search(queries)
    return time.perf_counter() - start


def raw_search(index: ItemIndex) -> Callable[[np.ndarray], tuple]:
    """FAISS called directly: the same index object, its search parameter set the plain FAISS way."""
    raw = index.faiss_index
    for name, value in index.search_params.items():
        faiss.ParameterSpace().set_index_parameter(raw, name, value)
    return lambda q: raw.search(q, K)


def single_qps(search: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    done, start = 0, time.perf_counter()
    while done < min(SINGLE_MAX, len(queries)) and time.perf_counter() - start < SINGLE_SECONDS:
        search(queries[done : done + 1])
        done += 1
    return done / (time.perf_counter() - start)


def measure(
    kind: str,
    vectors: np.ndarray,
    tune: np.ndarray,
    test: np.ndarray,
    exact: np.ndarray,
    exact_search: Callable[[np.ndarray], object] | None,
) -> tuple[Row, ItemIndex]:
    """One kind's row; `exact_search` (FAISS flat on the same vectors; None for flat itself) is timed
    interleaved with it, so that the speed-up compares the two under the same machine load."""
    ids = [f"i{r}" for r in range(len(vectors))]
    config = IndexConfig(kind=kind, min_recall=TARGET_RECALL, on_low_recall="warn", recall_queries=len(tune))
    start = time.perf_counter()
    index = build_tuned_index(vectors, ids, tune, config)
    build_s = time.perf_counter() - start
    size = faiss.serialize_index(index.faiss_index).nbytes
    catalogue = ItemCatalogue(index, [None] * len(ids))
    raw = raw_search(index)
    wrapped = lambda q: catalogue.search(matrix(q, "queries", index.dim), K)  # noqa: E731 (checked like Retriever)
    exact_search = exact_search or raw
    raw(test), wrapped(test)  # warm up both paths
    batch_faiss, batch_retriever, batch_exact = [], [], []
    for _ in range(REPEATS):  # interleaved, so that all see the same machine
        batch_faiss.append(seconds(raw, test))
        batch_retriever.append(seconds(wrapped, test))
        batch_exact.append(batch_faiss[-1] if exact_search is raw else seconds(exact_search, test))
    row = Row(
        n=len(vectors),
        kind=kind,
        factory=index.factory or "",
        search=index.search_params,
        build_s=build_s,
        bytes=size,
        recall=ann_recall_at_k(index, test, exact),
        qps_single_faiss=single_qps(raw, test),
        qps_single_retriever=single_qps(wrapped, test),
        qps_batch_faiss=len(test) / min(batch_faiss),
        qps_batch_retriever=len(test) / min(batch_retriever),
        speedup=min(batch_exact) / min(batch_faiss),
    )
    return row, index


@dataclass
class OneQuery:
    """One-query Retriever calls against what they must do anyway, timed call by call, interleaved."""

    n: int
    kind: str
    call: str
    baseline: str
    us_baseline: float  # median microseconds per call
    us_retriever: float

    @property
    def ratio(self) -> float:
        return self.us_retriever / self.us_baseline


def synthetic_retriever(index: ItemIndex, seed: int = 0) -> Retriever:
    """A Retriever over `index` with an untrained ID-only two-tower model of the index's dim and a synthetic
    event log (USER_EVENTS items per user): the costs of the one-query paths depend on the index, the user
    tower and the history lengths, not on whether the model learned anything."""
    rng = np.random.default_rng(seed)
    item_ids = [i for i in index.ids if i is not None]
    vocabs = Vocabularies(
        users=Vocabulary([f"u{u:05d}" for u in range(USERS)], "users"),
        items=Vocabulary(item_ids, "items"),
        categories=Vocabulary(["all"], "categories"),
        attributes={},
    )
    config = load_config(None, [f"model.dim={index.dim}", "model.item.image=false", "model.item.text=false"])
    torch.manual_seed(seed)
    model = TwoTower(sized(config, vocabs).model)
    users = np.repeat(np.arange(1, USERS + 1), USER_EVENTS)
    log = EventLog(users, rng.integers(1, len(item_ids) + 1, users.size), np.tile(np.arange(USER_EVENTS), USERS))
    features = UserFeatures(log, np.zeros((USERS + 1, 0), dtype=np.int64), [], model.config.user.history_len)
    return Retriever(model, vocabs, features, index, pl.DataFrame({"item_id": item_ids, "title": item_ids}))


def paired_us(baseline: Callable[[int], object], call: Callable[[int], object], calls: int) -> tuple[float, float]:
    """Median microseconds per call of `baseline(i)` and `call(i)`, alternated call by call so that both
    see the same machine load (a batch timing of one would not); which of the two goes first alternates."""
    base, timed = np.empty(calls), np.empty(calls)
    for i in range(calls):
        for first in ((baseline, call) if i % 2 else (call, baseline)):
            began = time.perf_counter()
            first(i)
            (base if first is baseline else timed)[i] = time.perf_counter() - began
    return float(np.median(base)) * 1e6, float(np.median(timed)) * 1e6


def checked_search_floor(index: ItemIndex, lock: ReadWriteLock) -> Callable[[np.ndarray], list[Recommendations]]:
    """The least that any checked, thread-safe one-query search does: check the query (its values from its
    scores, as `search_vectors` does) and k, take the read lock, call FAISS's C search (on the index's own
    search parameters, as `raw_search` sets them), map rows to ids and make the result. Its ratio to raw
    FAISS is the floor of `search_vectors`' ratio in Python."""
    faiss_index, ids, dim, live = index.faiss_index, index.ids_at, index.dim, index.live_count

    def search(query: np.ndarray) -> list[Recommendations]:
        query, k = query_vectors(query, "vectors", dim), check_k(K, live)
        with lock.read():
            scores, positions = np.empty((1, k), dtype=np.float32), np.empty((1, k), dtype=np.int64)
            faiss_index.search_c(1, faiss.swig_ptr(query), k, faiss.swig_ptr(scores), faiss.swig_ptr(positions), None)
            found = [Recommendations(ids(positions[0]).tolist(), scores[0], "vector")]
        check_found(query, scores[0], "vectors")
        return found

    return search


def one_query_rows(kind: str, index: ItemIndex, test: np.ndarray, calls: int = ONE_QUERY_CALLS) -> list[OneQuery]:
    """`search_vectors`, `similar_items` and `recommend` with one query each against raw FAISS on the same
    index and k (similar_items: reading the item's stored vector back, then k + 1, as it leaves the item
    itself out; recommend: plus the user tower's forward on the user's stored features, which it must run
    anyway)."""
    retriever = synthetic_retriever(index)
    raw = raw_search(index)
    floor = checked_search_floor(index, ReadWriteLock())
    faiss_index = index.faiss_index
    items = [i for i in index.ids if i is not None]
    users = retriever.vocabs.users.ids[1:]

    def tower(i: int) -> np.ndarray:
        user = np.array([1 + i % USERS])
        return embed(retriever.model.user_tower, [retriever.features.batch(user)], retriever.device).numpy()

    # The baseline takes other queries than the call it is paired with (half the query set away): searching
    # a query right after its twin would find the twin's index lists or graph nodes still in the CPU cache.
    cases = {
        ("search_vectors", "faiss_index.search"): (
            lambda i: raw(test[(i + len(test) // 2) % len(test)][None]),
            lambda i: retriever.search_vectors(test[i % len(test)][None], K),
        ),
        ("floor: checked search", "faiss_index.search"): (
            lambda i: raw(test[(i + len(test) // 2) % len(test)][None]),
            lambda i: floor(test[i % len(test)][None]),
        ),
        ("similar_items", "faiss_index.reconstruct + search, k + 1"): (
            lambda i: faiss_index.search(faiss_index.reconstruct((i + len(items) // 2) % len(items))[None], K + 1),
            lambda i: retriever.similar_items(items[i % len(items)], K),
        ),
        ("recommend", "user tower + faiss_index.search"): (
            lambda i: raw(tower(i + USERS // 2)),
            lambda i: retriever.recommend(users[i % USERS], K),
        ),
    }
    rows = []
    for (call, baseline), (base, timed) in cases.items():
        paired_us(base, timed, min(100, calls))  # warm up
        rows.append(OneQuery(len(index), kind, call, baseline, *paired_us(base, timed, calls)))
        print(one_query_table([rows[-1]]).splitlines()[-1], flush=True)
    return rows


def one_query_table(rows: list[OneQuery]) -> str:
    lines = [
        "| items | kind | call | against | us baseline | us Retriever | ratio |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.n:,} | {r.kind} | `{r.call}` | {r.baseline} | {r.us_baseline:,.1f} | {r.us_retriever:,.1f} | "
            f"{r.ratio:.2f}x |"
        )
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    lines = [
        "| items | kind | FAISS factory, search | build s | size MB | recall@10 | QPS 1-query FAISS | "
        "QPS 1-query Retriever | QPS batch FAISS | x exact (batch) | QPS batch Retriever | Retriever overhead |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        search = ", ".join(f"{k} {v}" for k, v in r.search.items()) or "exact"
        lines.append(
            f"| {r.n:,} | {r.kind} | `{r.factory}`, {search} | {r.build_s:.1f} | {r.bytes / 2**20:.0f} | "
            f"{r.recall:.3f} | {r.qps_single_faiss:,.0f} | {r.qps_single_retriever:,.0f} | {r.qps_batch_faiss:,.0f} | "
            f"{r.speedup:.1f}x | {r.qps_batch_retriever:,.0f} | {r.overhead:.3f}x |"
        )
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__} "
        f"({faiss.omp_get_max_threads()} OpenMP threads, {faiss.get_num_gpus()} GPUs), "
        f"{datetime.now(timezone.utc).isoformat(timespec='minutes')}"
    )


def run(
    sizes: list[int],
    kinds: list[str],
    seed: int = 0,
    one_query: list[OneQuery] | None = None,
    one_query_calls: int = ONE_QUERY_CALLS,
) -> list[Row]:
    """A row per size and kind; given a `one_query` list, also the one-query calls of each kind's index of
    up to ONE_QUERY_MAX_ITEMS items, appended to it."""
    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        vectors = clustered_vectors(n, rng)
        tune, test = queries_near(vectors, QUERIES, rng), queries_near(vectors, QUERIES, rng)
        _, exact = faiss.knn(test, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
        exact_search = None
        for kind in kinds:
            row, index = measure(kind, vectors, tune, test, exact, exact_search)
            if kind == "flat":
                exact_search = raw_search(index)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            if one_query is not None and n <= ONE_QUERY_MAX_ITEMS and one_query_calls:
                one_query.extend(one_query_rows(kind, index, test, one_query_calls))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated catalogue sizes")
    parser.add_argument(
        "--kinds", default="flat,ivf,ivfpq,hnsw", help="comma-separated kinds; flat first (the exact reference)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"markdown results file (default: {RESULTS})")
    parser.add_argument("--threads", type=int, help="FAISS OpenMP threads (default: FAISS's, one per core)")
    parser.add_argument(
        "--one-query-calls", type=int, default=ONE_QUERY_CALLS,
        help=f"one-query Retriever calls timed per kind and call on catalogues up to {ONE_QUERY_MAX_ITEMS:,} (0: none)",
    )
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    if kinds[0] != "flat":
        parser.error("--kinds must start with flat: it is the exact reference for recall and speed-up")
    one_query: list[OneQuery] = []
    rows = run([int(s) for s in args.sizes.split(",")], kinds, one_query=one_query, one_query_calls=args.one_query_calls)
    one_query_text = "" if not one_query else (
        "\n## One query per call\n\n"
        "Median microseconds per call of each one-query Retriever call and of what it must do anyway, "
        f"{args.one_query_calls:,} calls each, alternated call by call (both see the same load); ratio = "
        "Retriever / baseline. Baselines: raw `faiss_index.search` on the same index and k (`similar_items`: "
        "`faiss_index.reconstruct` of the item's vector, then k + 1, as it leaves the item itself out; `recommend`: plus the user "
        "tower's forward on the user's stored features, so its ratio is the retrieval overhead on top of the "
        f"model). The Retriever: an untrained ID-only two-tower model of dim {DIM}, {USERS:,} synthetic users "
        f"with {USER_EVENTS} events each (excluded as seen by `recommend`). `floor: checked search` is no "
        "Retriever call but the least any checked, thread-safe one-query search does in Python (argument "
        "checks, read lock, FAISS's C search, ids and result object; `checked_search_floor`): the lowest "
        "ratio `search_vectors` could reach.\n\n"
        f"{one_query_table(one_query)}\n"
    )
    text = (
        "# Retrieval benchmark\n\n"
        f"`benchmarks/retrieval.py`: {machine()}. Synthetic clustered unit vectors, dim {DIM}, k={K}; "
        f"search parameters tuned at build to recall@10 >= {TARGET_RECALL} on {QUERIES:,} tuning queries, "
        f"recall and speed measured on {QUERIES:,} other queries; batch = {QUERIES:,} queries in one call; "
        "x exact = batched FAISS QPS over exact (flat) search's, timed interleaved with it; Retriever overhead = "
        f"FAISS batched QPS / Retriever batched QPS. Load average at the end: {os.getloadavg()[0]:.1f}.\n\n"
        f"{table(rows)}\n{one_query_text}"
    )
    atomic_write_text(args.out, text)
    print(f"\n{table(rows)}\n\n{one_query_table(one_query)}\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
