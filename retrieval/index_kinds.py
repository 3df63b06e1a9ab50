"""The index kinds a run can ask for, turned into FAISS factory strings sized for its catalogue.

A kind is a name a person can choose (flat, ivf, ivfpq, hnsw, or auto); what FAISS needs is a factory
string whose sizes depend on the catalogue (inverted lists, PQ codes), a training sample size, and the
search parameter that trades speed for recall. Keeping that mapping in one small table lets the build,
the benchmark and the manifest agree on what each kind means.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from tandemrec.retrieval.errors import RetrievalError

FLAT_MAX = 50_000  # below this many items exact search is cheap enough that approximation buys nothing
HNSW_M = 32  # graph neighbours per node
# Candidates kept while linking a node. FAISS's default (40) links clustered catalogues badly: on 300K of
# benchmarks/retrieval.py's clustered vectors, recall@10 at efSearch 32 was 0.82 with 40 and 0.99 with 80.
HNSW_EF_CONSTRUCTION = 80
IVF_POINTS_PER_LIST = 40  # training rows per inverted list (FAISS warns below 39)
IVF_FIRST_NPROBE_SHARE = 128  # tuning starts at nprobe = nlist / 128 ...
FIRST_EF_SEARCH = 32  # ... and efSearch = 32, then doubles until the recall target is met


@dataclass(frozen=True)
class IndexPlan:
    """What to build: the FAISS factory string, its starting search parameters and training size."""

    kind: str
    factory: str
    search: dict[str, int] = field(default_factory=dict)  # nprobe (IVF) or efSearch (HNSW); none for flat
    train_size: int | None = None  # rows sampled to train quantisers; None: nothing to train
    ef_construction: int | None = None  # HNSW only


def plan_index(kind: str, n: int, dim: int, memory_budget: int | None = None) -> IndexPlan:
    """The plan for `kind` over n vectors of dimension `dim`; `auto` chooses by size and `memory_budget`."""
    if n <= 0:
        raise RetrievalError(f"cannot index an empty catalogue (n={n})")
    if kind == "auto":
        kind = choose_kind(n, dim, available_memory() if memory_budget is None else memory_budget)
    if kind == "flat":
        return IndexPlan("flat", "Flat")
    if kind == "hnsw":
        search = {"efSearch": FIRST_EF_SEARCH}
        return IndexPlan("hnsw", f"HNSW{HNSW_M}", search, ef_construction=HNSW_EF_CONSTRUCTION)
    nlist = ivf_lists(n)
    train_size = min(n, IVF_POINTS_PER_LIST * nlist)
    search = {"nprobe": max(1, nlist // IVF_FIRST_NPROBE_SHARE)}
    if kind == "ivf":
        return IndexPlan("ivf", f"IVF{nlist},Flat", search, train_size)
    if kind == "ivfpq":
        train_size = min(n, max(train_size, 39 * 256))  # enough rows for 256-code books where n allows
        bits = min(8, int(math.log2(train_size)))  # a codebook needs at least as many training rows as codes
        return IndexPlan("ivfpq", f"IVF{nlist},PQ{pq_subquantizers(dim)}x{bits}", search, train_size)
    raise RetrievalError(f"index kind must be one of auto, flat, ivf, ivfpq, hnsw, got {kind!r}")


def choose_kind(n: int, dim: int, memory_budget: int) -> str:
    """flat while exact search is cheap; hnsw, the fastest at recall@10 >= 0.95 on 1M vectors in
    benchmarks/retrieval.py, while it fits in `memory_budget`; then ivf (full vectors, no graph); ivfpq
    (16x smaller codes, lower recall) when nothing else fits."""
    if n <= FLAT_MAX:
        return "flat"
    return next((kind for kind in ("hnsw", "ivf") if estimated_bytes(kind, n, dim) <= memory_budget), "ivfpq")


def estimated_bytes(kind: str, n: int, dim: int) -> int:
    """Rough resident size of an index of `kind`: vectors or codes, ids and links."""
    per_vector = {
        "flat": 4 * dim,
        "ivf": 4 * dim + 16,  # vector, list id, direct-map entry
        "ivfpq": pq_subquantizers(dim) + 16,
        "hnsw": 4 * dim + 2 * HNSW_M * 4 + 16,  # vector, level-0 links (2M), upper levels
    }[kind]
    return n * per_vector


def ivf_lists(n: int) -> int:
    """About 4 sqrt(n) inverted lists (a power of two), with at least IVF_POINTS_PER_LIST rows each."""
    wanted = 2 ** round(math.log2(4 * math.sqrt(n)))
    return max(1, min(wanted, n // IVF_POINTS_PER_LIST))


def pq_subquantizers(dim: int) -> int:
    """The largest divisor of dim up to dim / 4: one byte per four dimensions (16x smaller than float32)."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


def available_memory() -> int:
    """Bytes of memory available now (physical pages free), for `auto`."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
