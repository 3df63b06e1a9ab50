"""benchmarks/retrieval.py at a toy size: its data is what it claims and its table holds every measurement."""


import numpy as np
import pytest

from conftest import benchmark_script



@pytest.fixture(scope="module")
def bench():
    with benchmark_script("retrieval") as module:
        yield module


def test_synthetic_vectors_are_clustered_unit_vectors(bench):
    rng = np.random.default_rng(0)
    vectors = bench.clustered_vectors(4000, rng)
    queries = bench.queries_near(vectors, 50, rng)
    assert vectors.shape == (4000, bench.DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    nearest = (queries @ vectors.T).max(axis=1)
    assert nearest.mean() > 0.8  # queries sit near the data, not among random directions (~0.3 apart)


def test_a_toy_run_fills_the_table(bench, monkeypatch):
    monkeypatch.setattr(bench, "SINGLE_SECONDS", 0.2)
    monkeypatch.setattr(bench, "QUERIES", 100)
    rows = bench.run([3000], ["flat", "ivf", "hnsw"])
    assert [r.kind for r in rows] == ["flat", "ivf", "hnsw"]
    flat = rows[0]
    assert flat.recall == 1.0 and flat.speedup == 1.0 and flat.search == {}
    for row in rows:
        assert row.build_s >= 0 and row.bytes > 0 and 0 < row.recall <= 1
        assert min(row.qps_single_faiss, row.qps_single_retriever, row.qps_batch_faiss, row.qps_batch_retriever) > 0
    table = bench.table(rows)
    assert table.count("\n") == 4 and "| 3,000 | hnsw | `HNSW32`, efSearch" in table
