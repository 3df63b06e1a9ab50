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

    .venv/bin/python benchmarks/retrieval.py                       # 100K and 1M, all kinds (~20 min)
    .venv/bin/python benchmarks/retrieval.py --sizes 20000 --kinds flat,ivf --out /tmp/r.md
    .venv/bin/python benchmarks/retrieval.py --threads 1    # steadier when another job holds a core
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

from tandemrec.data.atomic import atomic_write_text
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_build import build_tuned_index, recall_at_k

DIM = 128
K = 10
CLUSTER_SIZE = 1_000
SUBSPACE = 16
QUERIES = 1_000
TARGET_RECALL = 0.95
SINGLE_SECONDS = 3.0  # time spent on one-at-a-time queries per kind (at most SINGLE_MAX queries)
SINGLE_MAX = 500
REPEATS = 5
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
    return x / np.linalg.norm(x, axis=1, keepdims=True)


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
    wrapped = lambda q: catalogue.search(q, K)  # noqa: E731
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
        recall=recall_at_k(index, test, exact),
        qps_single_faiss=single_qps(raw, test),
        qps_single_retriever=single_qps(wrapped, test),
        qps_batch_faiss=len(test) / min(batch_faiss),
        qps_batch_retriever=len(test) / min(batch_retriever),
        speedup=min(batch_exact) / min(batch_faiss),
    )
    return row, index


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


def run(sizes: list[int], kinds: list[str], seed: int = 0) -> list[Row]:
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
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated catalogue sizes")
    parser.add_argument(
        "--kinds", default="flat,ivf,ivfpq,hnsw", help="comma-separated kinds; flat first (the exact reference)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"markdown results file (default: {RESULTS})")
    parser.add_argument("--threads", type=int, help="FAISS OpenMP threads (default: FAISS's, one per core)")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    if kinds[0] != "flat":
        parser.error("--kinds must start with flat: it is the exact reference for recall and speed-up")
    rows = run([int(s) for s in args.sizes.split(",")], kinds)
    text = (
        "# Retrieval benchmark\n\n"
        f"`benchmarks/retrieval.py`: {machine()}. Synthetic clustered unit vectors, dim {DIM}, k={K}; "
        f"search parameters tuned at build to recall@10 >= {TARGET_RECALL} on {QUERIES:,} tuning queries, "
        f"recall and speed measured on {QUERIES:,} other queries; batch = {QUERIES:,} queries in one call; "
        "x exact = batched FAISS QPS over exact (flat) search's, timed interleaved with it; Retriever overhead = "
        f"FAISS batched QPS / Retriever batched QPS. Load average at the end: {os.getloadavg()[0]:.1f}.\n\n"
        f"{table(rows)}\n"
    )
    atomic_write_text(args.out, text)
    print(f"\n{table(rows)}\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
