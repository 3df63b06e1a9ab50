"""One-query calls return exactly what the batch path returns for the same query.

A search of a single query over every row takes its own, cheaper route (one FAISS call, its exclusions a
Python set instead of sorted numpy keys, see `ItemIndex._one_pass`): both routes are run on the same
queries, for every index kind, with exclusions, filters and removed rows. The Retriever's one-query forms are checked
against their batch forms on the trained run.
"""

import numpy as np
import pytest

from conftest import benchmark_script
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.retriever import Retriever

N, DIM, K = 3000, 16, 10
FACTORIES = {"Flat": {}, "IVF32,Flat": {"nprobe": 2}, "HNSW16": {"efSearch": 16}}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((30, DIM)))
    vectors = unit(centres[rng.integers(0, 30, N)] + 0.3 * rng.standard_normal((N, DIM)))
    return vectors, unit(vectors[rng.integers(0, N, 12)] + 0.1 * rng.standard_normal((12, DIM)))


def build(vectors: np.ndarray, factory: str) -> ItemIndex:
    return ItemIndex.build(vectors, [f"i{r}" for r in range(N)], factory, search=FACTORIES[factory])


def batch_route(monkeypatch) -> None:
    """Send one-query searches down the batch route too, for comparison."""
    one_pass = ItemIndex._one_pass
    monkeypatch.setattr(ItemIndex, "_one_pass", lambda *args: (None, one_pass(*args)[1]))


def one_by_one(index: ItemIndex, queries: np.ndarray, exclude, allowed) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        index.search(queries[i : i + 1], K, None if exclude is None else [exclude[i]], allowed)
        for i in range(len(queries))
    ]


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_one_query_route_matches_the_batch_route(data, factory, monkeypatch):
    vectors, queries = data
    index = build(vectors, factory)
    rng = np.random.default_rng(1)
    best, _ = index.search(queries, 40)
    # Each query loses some of its own best rows (so results shift), a repeat and rows far away.
    exclude = [np.concatenate([best[i, : 3 + i], best[i, :2], rng.integers(0, N, 5)]) for i in range(len(queries))]
    allowed = rng.random(N) < 0.5
    index.remove([f"i{r}" for r in best[0, 40 - 3 :]])  # removed rows count as ineligible, not excluded
    cases = [(None, None), (exclude, None), (None, allowed), (exclude, allowed), ([np.zeros(0, dtype=np.int64)] * 12, None)]
    fast = [one_by_one(index, queries, e, a) for e, a in cases]
    batch_route(monkeypatch)
    slow = [one_by_one(index, queries, e, a) for e, a in cases]
    for fast_case, slow_case in zip(fast, slow):
        for (fast_pos, fast_scores), (slow_pos, slow_scores) in zip(fast_case, slow_case):
            np.testing.assert_array_equal(fast_pos, slow_pos)
            np.testing.assert_array_equal(fast_scores, slow_scores)
            assert fast_pos.shape == (1, K) and fast_pos.dtype == np.int64 and fast_scores.dtype == np.float32


def test_an_exact_index_gives_a_lone_query_what_its_batch_row_gets(data):
    vectors, queries = data
    index = build(vectors, "Flat")  # exact: a row's answer cannot depend on its batch's over-fetching
    best, _ = index.search(queries, K)
    exclude = [best[i, : i % 4] for i in range(len(queries))]
    positions, scores = index.search(queries, K, exclude)
    for i, (pos, sc) in enumerate(one_by_one(index, queries, exclude, None)):
        np.testing.assert_array_equal(pos[0], positions[i])
        np.testing.assert_allclose(sc[0], scores[i], rtol=1e-6)
        assert not np.isin(pos[0], exclude[i]).any()


def test_everything_excluded_pads_both_routes_alike(data, monkeypatch):
    vectors, queries = data
    index = build(vectors, "Flat")
    allowed = np.zeros(N, dtype=bool)
    allowed[[3, 7]] = True
    expected = (np.full((1, K), -1), np.full((1, K), -np.inf, dtype=np.float32))
    for route in ("one-query", "batch"):
        if route == "batch":
            batch_route(monkeypatch)
        positions, scores = index.search(queries[:1], K, [np.array([3, 7, 7])], allowed)
        np.testing.assert_array_equal(positions, expected[0])
        np.testing.assert_array_equal(scores, expected[1])
        positions, _ = index.search(queries[:1], K, [np.array([7])], allowed)
        assert positions[0, 0] == 3 and (positions[0, 1:] == -1).all()


@pytest.mark.parametrize(
    "exclude, message",
    [
        ([np.array([-1, 4])], rf"exclude\[0\] must lie in \[0, {N}\), got values from -1 to 4"),
        ([np.array([2, N])], rf"exclude\[0\] must lie in \[0, {N}\), got values from 2 to {N}"),
        ([np.array([1.5])], r"exclude\[0\] must be a 1-D array of integer row positions, got float64 \(1,\)"),
        ([np.array([1]), np.array([2])], r"exclude has 2 entries, expected one per query \(1\)"),
    ],
)
def test_one_query_exclusion_errors_read_as_the_batch_ones(data, exclude, message, monkeypatch):
    vectors, queries = data
    index = build(vectors, "Flat")
    with pytest.raises(RetrievalError, match=message):
        index.search(queries[:1], K, exclude)
    batch_route(monkeypatch)
    with pytest.raises(RetrievalError, match=message):
        index.search(queries[:1], K, exclude)


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_an_items_neighbours_take_the_batch_routes_answer(data, factory, monkeypatch):
    vectors, _ = data
    twins = vectors.copy()
    twins[1] = twins[0]  # item 0 need not come first among its own neighbours: its twin scores the same
    index = ItemIndex.build(twins, [f"i{r}" for r in range(N)], factory, search=FACTORIES[factory])
    items = ["i0", "i1", "i7", f"i{N - 1}"]
    cases = [(item, k) for item in items for k in (K, N)]  # N: one short, as the item itself is left out
    fast = [index.neighbours([item], k, None) for item, k in cases]
    batch_route(monkeypatch)
    for (item, k), (positions, scores) in zip(cases, fast):
        slow_positions, slow_scores = index.neighbours([item], k, None)
        assert positions.shape == (1, k) and int(item[1:]) not in positions[0]
        assert (positions[0, -1] == -1) == (k == N)
        np.testing.assert_array_equal(positions, slow_positions)
        np.testing.assert_array_equal(scores, slow_scores)
    with pytest.raises(RetrievalError, match=r"item_ids: 1 unknown ids, e.g. \['nope'\]"):
        index.neighbours(["nope"], K, None)


@pytest.mark.parametrize("factory, name, values", [("IVF32,Flat", "nprobe", (1, 4, 32)), ("HNSW16", "efSearch", (10, 40, 400))])
def test_search_parameters_govern_a_plain_one_query_search(data, factory, name, values, monkeypatch):
    """The one-query route leaves the parameters on the FAISS index itself; the batch route passes them per
    call: set and reset, both must search alike, and a wider search must change some answer."""
    vectors, queries = data
    index = build(vectors, factory)
    answers = {}
    for value in values:
        index.set_search_params(**{name: value})
        answers[value] = [index.search(queries[i : i + 1], K)[0] for i in range(len(queries))]
    assert any((a != b).any() for a, b in zip(answers[values[0]], answers[values[-1]]))
    batch_route(monkeypatch)
    for value in values:
        index.set_search_params(**{name: value})
        for i, fast in enumerate(answers[value]):
            np.testing.assert_array_equal(fast, index.search(queries[i : i + 1], K)[0])


def test_a_one_row_query_is_checked_for_finite_values(data):
    vectors, queries = data
    index = build(vectors, "Flat")
    huge = np.full((1, DIM), 1e20, dtype=np.float32)  # finite, though its squared norm overflows float32
    np.testing.assert_array_equal(index.search(huge, K)[0], index.search(np.ones((1, DIM), np.float32), K)[0])
    for bad in (np.nan, np.inf, -np.inf):
        query = queries[:1].copy()
        query[0, 3] = bad
        with pytest.raises(RetrievalError, match="queries holds NaN or infinite values"):
            index.search(query, K)
        with pytest.raises(RetrievalError, match="queries holds NaN or infinite values"):
            index.search(query.astype(np.float64), K)  # the converting route too


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_search_vectors_refuses_a_lone_non_finite_query_read_from_its_scores(data, factory):
    """A lone float query skips the value check before its search (`arguments.query_vectors`): NaN or
    infinity anywhere in it is still refused, on every index kind, with or without a filter, and a finite
    query whose inner products overflow is still answered."""
    vectors, queries = data
    with benchmark_script("retrieval", "retrieval_bench_finite") as bench:
        retriever = bench.synthetic_retriever(build(vectors, factory))
    huge = np.full((1, DIM), 1e20, dtype=np.float32)
    assert retriever.search_vectors(huge, K)[0].ids
    half = ItemFilter(allow=[f"i{r}" for r in range(0, N, 2)])
    for bad in (np.nan, np.inf, -np.inf):
        query = queries[:1].copy()
        query[0, 3] = bad
        for item_filter in (None, half):
            for given in (query, query.astype(np.float64), np.repeat(query, 2, axis=1)[:, ::2]):  # strided too
                with pytest.raises(RetrievalError, match="^vectors holds NaN or infinite values$"):
                    retriever.search_vectors(given, K, item_filter)
    converted = retriever.search_vectors(queries[:1].astype(np.float64), K)[0]
    assert converted.ids == retriever.search_vectors(queries[:1], K)[0].ids


@pytest.fixture(scope="module")
def retriever(trained_run) -> Retriever:
    retriever = Retriever.load(trained_run)
    assert retriever.index.factory == "Flat"  # exact: a batch's over-fetching cannot change a row
    return retriever


def same(a, b) -> None:
    assert a.ids == b.ids and a.source == b.source
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # the trained run
@pytest.mark.parametrize("item_filter", [None, "category", "deny"])
def test_retriever_one_query_forms_match_their_batch_forms(retriever, item_filter):
    users = retriever.vocabs.users.ids[1:6] + ["nobody"]
    items = [i for i in retriever.index.ids[:5] if i is not None]
    categories = [c for c in retriever.catalogue["category"].unique().to_list() if c is not None]
    chosen = {
        None: None,
        "category": ItemFilter(categories=categories[:2]),
        "deny": ItemFilter(deny=items[1:3]),
    }[item_filter]
    for user, batch in zip(users, retriever.recommend_batch(users, K, filter=chosen)):
        same(retriever.recommend(user, K, filter=chosen), batch)
    for item, batch in zip(items, retriever.similar_items_batch(items, K, chosen)):
        same(retriever.similar_items(item, K, chosen), batch)
    vectors = retriever.index.vectors(np.arange(4))
    for i, batch in enumerate(retriever.search_vectors(vectors, K, chosen)):
        same(retriever.search_vectors(vectors[i : i + 1], K, chosen)[0], batch)


def test_the_benchmark_times_each_one_query_call_against_its_baseline(data):
    with benchmark_script("retrieval", "retrieval_bench_one_query") as bench:
        vectors = bench.clustered_vectors(N, np.random.default_rng(0))
        index = ItemIndex.build(vectors, [f"i{r}" for r in range(N)])
        queries = bench.queries_near(vectors, 20, np.random.default_rng(1))
        assert vectors.dtype == queries.dtype == np.float32  # as FAISS takes them: no conversion is timed
        rows = bench.one_query_rows("flat", index, queries, calls=4)
        floor = bench.checked_search_floor(index, bench.ReadWriteLock())(queries[:1])[0]
    assert [r.call for r in rows] == ["search_vectors", "floor: checked search", "similar_items", "recommend"]
    assert all(r.us_baseline > 0 and r.us_retriever > 0 and r.ratio > 0 for r in rows)
    assert bench.one_query_table(rows).count("\n") == 5
    positions, scores = index.search(queries[:1], K)  # the floor is a real search: the same answer
    assert floor.ids == [f"i{r}" for r in positions[0]]
    np.testing.assert_array_equal(floor.scores, scores[0])
