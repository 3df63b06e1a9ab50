"""Index kinds (flat, ivf, ivfpq, hnsw, auto): plans, save/load round trips, tuned recall in the manifest,
filters and removals that still give k results, and clear refusals of bad input."""

import json
import logging

import numpy as np
import pytest

import tandemrec.retrieval.index as index_module
from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_build import build_tuned_index
from tandemrec.retrieval.index_kinds import choose_kind, plan_index

N, DIM, N_QUERIES, K = 3000, 16, 200, 10
KINDS = ["flat", "ivf", "ivfpq", "hnsw"]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[str], np.ndarray]:
    """Clustered unit vectors and queries near them (30 clusters), like item and user embeddings."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, DIM))
    vectors = unit(centres[rng.integers(0, 30, N)] + 0.5 * rng.standard_normal((N, DIM)))
    queries = unit(vectors[rng.integers(0, N, N_QUERIES)] + 0.3 * rng.standard_normal((N_QUERIES, DIM)))
    return vectors, [f"item{i}" for i in range(N)], queries


# IVF-PQ trains its codebooks for ~20 s on two cores: not part of the quick run
@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.slow) if k == "ivfpq" else k for k in KINDS])
def built(request, data) -> ItemIndex:
    vectors, ids, queries = data
    config = IndexConfig(kind=request.param, on_low_recall="warn")  # PQ on 16 dims stays below 0.95
    return build_tuned_index(vectors, ids, queries, config, {"model_hash": "abc"})


def brute_force(vectors, queries, k, allowed=None):
    scores = queries @ vectors.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_each_kind_round_trips_through_save_and_load(built, data, tmp_path):
    _, _, queries = data
    built.save(tmp_path / "idx")
    loaded = ItemIndex.load(tmp_path / "idx", expect_dim=DIM, expect_model_hash="abc")
    for got, want in zip(loaded.search(queries, K), built.search(queries, K)):
        np.testing.assert_array_equal(got, want)
    assert loaded.search_params == built.search_params and loaded.factory == built.factory
    assert loaded.metadata == built.metadata
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["search"] == built.search_params and manifest["kind"] == built.metadata["kind"]


def test_build_measures_recall_and_tunes_towards_the_target(built, data):
    vectors, _, queries = data
    meta = built.metadata
    assert meta["kind"] in KINDS and meta["recall_queries"] == N_QUERIES and meta["min_recall"] == 0.95
    exact = brute_force(vectors, queries, K)
    found, _ = built.search(queries, K)
    measured = np.mean([np.intersect1d(a, b).size / K for a, b in zip(found, exact)])
    assert meta["recall_at_10"] == pytest.approx(measured, abs=1e-4)
    if meta["kind"] == "ivfpq":
        assert 0.2 < measured < 0.95  # 4 bytes per vector: the codes cap recall, tuning stops early
    else:
        assert measured >= 0.95


def test_vectors_read_back_for_similar_items(built, data):
    vectors, _, _ = data
    rows = np.array([0, 17, N - 1])
    tolerance = 0.5 if built.metadata["kind"] == "ivfpq" else 1e-6  # PQ decodes approximately
    np.testing.assert_allclose(built.vectors(rows), vectors[rows], atol=tolerance)


@pytest.mark.parametrize("exact_subset_max", [0, index_module.EXACT_SUBSET_MAX], ids=["selector", "exact-subset"])
def test_filters_still_give_k_results(built, data, monkeypatch, exact_subset_max):
    vectors, _, queries = data
    monkeypatch.setattr(index_module, "EXACT_SUBSET_MAX", exact_subset_max)
    rng = np.random.default_rng(1)
    for share in (0.005, 0.6):  # 15 rows (a narrow allow list) and most of the catalogue (a category)
        allowed = rng.random(N) < share
        positions, scores = built.search(queries[:20], K, allowed=allowed)
        assert (positions >= 0).all() and allowed[positions].all()
        assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 1e-6).all()
    few = np.zeros(N, dtype=bool)
    few[[3, 99, 2500]] = True
    positions, _ = built.search(queries[:5], K, allowed=few)
    assert sorted(positions[0, :3]) == [3, 99, 2500] and (positions[:, 3:] == -1).all()


def test_exact_subset_filter_is_exact(built, data):
    vectors, _, queries = data
    allowed = np.zeros(N, dtype=bool)
    allowed[::40] = True
    positions, _ = built.search(queries, K, allowed=allowed)
    if built.metadata["kind"] != "ivfpq":  # PQ scores decoded vectors, exact among them only
        np.testing.assert_array_equal(positions, brute_force(vectors, queries, K, allowed))


def test_removed_items_never_come_back_and_k_is_still_met(data, tmp_path):
    vectors, ids, queries = data
    index = build_tuned_index(vectors, ids, queries, IndexConfig(kind="hnsw"))
    best, _ = index.search(queries[:20], K)
    gone = sorted({ids[p] for p in best[:, :5].ravel()})
    removed = index.remove(gone)
    assert index.live_count == N - len(gone) and len(index) == N
    positions, _ = index.search(queries[:20], K)
    assert (positions >= 0).all() and not np.isin(positions, removed).any()
    with pytest.raises(RetrievalError, match="unknown ids.*or removed"):
        index.position(gone[:1])
    with pytest.raises(RetrievalError, match=f"k={N} exceeds the {N - len(gone)} items"):
        index.search(queries[:1], N)
    index.save(tmp_path)
    loaded = ItemIndex.load(tmp_path)
    assert loaded.ids == index.ids and loaded.ids[removed[0]] is None
    np.testing.assert_array_equal(loaded.search(queries[:20], K)[0], positions)
    loaded.add(vectors[removed[:1]], gone[:1])  # a removed id may come back, on a new row
    assert loaded.position(gone[:1]).tolist() == [N]


def test_fixed_search_parameter_is_kept(data):
    vectors, ids, queries = data
    index = build_tuned_index(vectors, ids, queries, IndexConfig(kind="ivf", nprobe=2, on_low_recall="warn"))
    assert index.search_params == {"nprobe": 2}


def test_low_recall_fails_or_warns(data, caplog):
    vectors, ids, queries = data
    strict = IndexConfig(kind="ivf", nprobe=1, min_recall=0.999)
    with pytest.raises(RetrievalError, match=r"recall@10 0\.\d+ .*below index\.min_recall=0\.999"):
        build_tuned_index(vectors, ids, queries, strict)
    with caplog.at_level(logging.WARNING):
        lenient = IndexConfig(kind="ivf", nprobe=1, min_recall=0.999, on_low_recall="warn")
        index = build_tuned_index(vectors, ids, queries, lenient)
    assert "below index.min_recall" in caplog.text and index.metadata["recall_at_10"] < 0.999


def test_plans_follow_the_catalogue():
    assert plan_index("ivf", 1_000_000, 128).factory == "IVF4096,Flat"
    assert plan_index("ivf", 1_000_000, 128).search == {"nprobe": 32}
    assert plan_index("ivfpq", 1_000_000, 128).factory == "IVF4096,PQ32x8"
    assert plan_index("hnsw", 10, 8).factory == "HNSW32"
    assert plan_index("ivf", 120, 8).factory == "IVF3,Flat"  # at least 40 training rows per list
    assert plan_index("ivfpq", 120, 8).factory == "IVF3,PQ2x6"  # 64 codes: no more than the rows
    assert plan_index("auto", 1000, 128).kind == "flat"
    assert choose_kind(1_000_000, 128, memory_budget=10 * 2**30) == "hnsw"
    assert choose_kind(1_000_000, 128, memory_budget=600 * 2**20) == "ivf"  # vectors fit, the graph does not
    assert choose_kind(1_000_000, 128, memory_budget=100 * 2**20) == "ivfpq"
    with pytest.raises(RetrievalError, match="index kind must be one of"):
        plan_index("annoy", 10, 8)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("kind", "annoy", "config key 'kind' must be one of"),
        ("on_low_recall", "ignore", "config key 'on_low_recall' must be one of"),
        ("nprobe", 0, "config key 'nprobe' must be an integer >= 1 or unset"),
        ("ef_search", 1.5, "config key 'ef_search' must be an integer >= 1 or unset"),
        ("min_recall", 1.5, r"config key 'min_recall' must be a number in \[0, 1\]"),
    ],
)
def test_bad_index_config_is_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        IndexConfig(**{field: value})


def test_search_parameters_are_checked(data):
    vectors, ids, _ = data
    ivf = ItemIndex.build(vectors, ids, "IVF8,Flat")
    with pytest.raises(RetrievalError, match=r"search parameters \['efSearch'\] do not apply .*takes \['nprobe'\]"):
        ivf.set_search_params(efSearch=64)
    with pytest.raises(RetrievalError, match="nprobe=9 exceeds the 8 lists"):
        ivf.set_search_params(nprobe=9)
    with pytest.raises(RetrievalError, match="must be a positive integer"):
        ivf.set_search_params(nprobe=0)


def test_bad_queries_and_files_are_refused(built, data, tmp_path):
    _, _, queries = data
    with pytest.raises(RetrievalError, match="queries is empty"):
        built.search(np.zeros((0, DIM), dtype=np.float32), K)
    with pytest.raises(RetrievalError, match="k must be a positive integer"):
        built.search(queries, 0)
    with pytest.raises(RetrievalError, match=f"k={N + 1} exceeds the {N} items"):
        built.search(queries, N + 1)
    with pytest.raises(RetrievalError, match=r"allowed must be a bool mask with one entry per index row"):
        built.search(queries, K, allowed=np.ones(5, dtype=bool))
    built.save(tmp_path)
    with pytest.raises(RetrievalError, match=f"has dim {DIM}, expected 32"):
        ItemIndex.load(tmp_path, expect_dim=32)
    with pytest.raises(RetrievalError, match="built by another model"):
        ItemIndex.load(tmp_path, expect_model_hash="another")
    path = tmp_path / "index.faiss"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RetrievalError, match="corrupt or truncated"):
        ItemIndex.load(tmp_path)
