"""Issue 14 item 6, API inputs: every public `Retriever` method names the wrong argument and what it expected
(a RetrievalError with that exact message) instead of a TypeError from deep inside; odd but valid input (a
lone surrogate, an items table without its optional columns, ids as arrays) gets a correct answer; and
mixed valid calls from four threads get the serial answers. One trained run (the session's) serves all."""
from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.recommendations import results_frame
from tandemrec.retrieval.retriever import Retriever
from tandemrec.towers.text_encoder import clean_text

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

K = 5


@dataclass(frozen=True)
class Run:
    """What the cases need to know of the run: two users and items, sizes, a picture, a valid vector."""

    r: Retriever
    user: str
    user2: str
    item: str
    item2: str
    n_items: int
    n_users: int
    dim: int
    picture: Path
    vector: np.ndarray

    def frame(self, item_id: str, **columns: object) -> pl.DataFrame:
        """A one-row items table for `item_id`, a copy of the first catalogue row with `columns` replaced."""
        row = self.r.catalogue.head(1).with_columns(pl.lit(item_id).alias("item_id"))
        return row.with_columns(pl.lit(v).alias(c) for c, v in columns.items())


@pytest.fixture(scope="module")
def run(trained_run) -> Run:
    """Read-only: the bad calls below must leave it as it was (checked at the end)."""
    r = Retriever.load(trained_run)
    users, items = r.vocabs.users.ids[1:3], r.index.ids[:2]
    return Run(
        r, users[0], users[1], items[0], items[1], len(r.items), len(r.vocabs.users), r.index.dim,
        r.image_root / r.catalogue["image"][0], r.index.vectors(np.array([3])),
    )


@pytest.fixture(scope="module")
def writable(trained_run) -> Retriever:
    """A second retriever on the same run for the tests that add items (each adds its own ids)."""
    return Retriever.load(trained_run)


ADD = "item_id, title and optionally text, category, image"
TIMES = "times must be None or a 1-D array of int64 UTC microseconds (or datetime64), got"
Case = Callable[[Run], object]


def bad(call: Case, message: str | Callable[[Run], str], name: str):
    return pytest.param(call, message, id=name)


BAD_CALLS = [
    # user ids
    bad(lambda x: x.r.recommend_batch(None), "user_ids must be a list of user ids, got None", "recommend_batch-None"),
    bad(lambda x: x.r.recommend_batch(x.user), lambda x: f"user_ids must be a list of user ids, got a single string "
        f"{x.user!r} (it takes a list of user ids, even for one)", "recommend_batch-str"),
    bad(lambda x: x.r.recommend_batch([]), "user_ids: no user ids given", "recommend_batch-empty"),
    bad(lambda x: x.r.recommend_batch([x.user, 7]),
        "user_ids[1] must be a string, got int 7 (1 of 2 entries are not strings)", "recommend_batch-int-id"),
    bad(lambda x: x.r.recommend(5), "user_id must be a string id or None, got int 5", "recommend-int-user"),
    bad(lambda x: x.r.recommend(None), "recommend needs a user_id, or history / attributes given at call time",
        "recommend-nobody"),
    bad(lambda x: x.r.user_vectors(None), "user_ids must be a list of user ids, got None", "user_vectors-None"),
    bad(lambda x: x.r.profile(3), "user_id must be a string id or None, got int 3", "profile-int-user"),
    # k
    bad(lambda x: x.r.recommend(x.user, True), "k must be a positive integer, got True", "k-bool"),
    bad(lambda x: x.r.recommend(x.user, 2.0), "k must be a positive integer, got 2.0", "k-float"),
    bad(lambda x: x.r.recommend_batch([x.user], "3"), "k must be a positive integer, got '3'", "k-str"),
    bad(lambda x: x.r.profile(x.user, -1), "k must be a positive integer, got -1", "k-negative-profile"),
    bad(lambda x: x.r.similar_items(x.item, None), "k must be a positive integer, got None", "k-None-similar"),
    bad(lambda x: x.r.recommend(None, x.n_items + 1, history=[x.item]),
        lambda x: f"k={x.n_items + 1} exceeds the {x.n_items} items in the index", "k-too-large"),
    # flags, filters, rerank
    bad(lambda x: x.r.recommend(x.user, K, exclude_seen="no"), "exclude_seen must be True or False, got str 'no'",
        "exclude_seen-str"),
    bad(lambda x: x.r.recommend_batch([x.user], K, None), "exclude_seen must be True or False, got None",
        "exclude_seen-None"),
    bad(lambda x: x.r.recommend(x.user, K, filter={"categories": ["mugs"]}),
        "filter must be an ItemFilter (categories / allow / deny) or None, got dict {'categories': ['mugs']}",
        "filter-dict"),
    bad(lambda x: x.r.search_vectors(x.vector, K, ["mugs"]),
        "filter must be an ItemFilter (categories / allow / deny) or None, got list ['mugs']", "filter-list"),
    bad(lambda x: ItemFilter(allow=5), "filter.allow must be a list of item ids, got int 5", "filter-allow-int"),
    bad(lambda x: ItemFilter(categories=["mugs", None]),
        "filter.categories[1] must be a string, got None (1 of 2 entries are not strings)", "filter-category-None"),
    bad(lambda x: x.r.recommend(x.user, K, rerank=5), "rerank must be a string or None, got int 5", "rerank-int"),
    bad(lambda x: x.r.recommend_batch([x.user], K, rerank="click"),
        lambda x: f"rerank: unknown event type 'click'; this run's head predicts {x.r.behaviour.outputs}",
        "rerank-unknown"),
    # call-time user features
    bad(lambda x: x.r.recommend(None, history=x.item), lambda x: f"history must be a list of item ids, got a single "
        f"string {x.item!r} (it takes a list of item ids, even for one)", "history-str"),
    bad(lambda x: x.r.profile(None, history=[None]),
        "history[0] must be a string, got None (1 of 1 entries are not strings)", "history-None-id"),
    bad(lambda x: x.r.recommend(None, attributes=["region"]),
        "attributes must be a mapping of attribute name to value, or None, got list ['region']", "attributes-list"),
    bad(lambda x: x.r.recommend(None, attributes={"region": None}),
        "attributes['region'] must be a string value, got None", "attributes-None-value"),
    bad(lambda x: x.r.predict_behaviour(None, [x.item], attributes={3: "north"}),
        "attributes: attribute names must be strings, got int 3", "attributes-int-name"),
    # item ids
    bad(lambda x: x.r.predict_behaviour(x.user, None), "items must be a list of item ids, got None", "items-None"),
    bad(lambda x: x.r.predict_behaviour(x.user, [x.item, None]),
        "items[1] must be a string, got None (1 of 2 entries are not strings)", "items-None-id"),
    bad(lambda x: x.r.similar_items(None), "item_id must be a string id, got None", "similar-None"),
    bad(lambda x: x.r.similar_items_batch(None), "item_ids must be a list of item ids, got None",
        "similar_batch-None"),
    bad(lambda x: x.r.similar_items_batch({x.item}), lambda x: f"item_ids must be a list of item ids, got set "
        f"{{{x.item!r}}}", "similar_batch-set"),
    bad(lambda x: x.r.similar_items_batch([]), "item_ids: no item ids given", "similar_batch-empty"),
    # texts
    bad(lambda x: x.r.search(None), "text must be a non-empty string, got None", "search-None"),
    bad(lambda x: x.r.search("  "), "text must be a non-empty string, got str '  '", "search-blank"),
    bad(lambda x: x.r.search_batch("lamp"), "texts must be a list of text queries, got a single string 'lamp' "
        "(it takes a list of text queries, even for one)", "search_batch-str"),
    bad(lambda x: x.r.search_batch(["lamp", 3]), "texts[1] must be a non-empty string, got int 3",
        "search_batch-int"),
    bad(lambda x: x.r.search_batch([]), "texts: no text queries given", "search_batch-empty"),
    bad(lambda x: x.r.search("lamp", 0), "k must be a positive integer, got 0", "search-k"),
    # images
    bad(lambda x: x.r.search_image(42), "image must be a PIL image or an image file path, got int 42",
        "search_image-int"),
    bad(lambda x: x.r.search_image("/no/such.png"), "image: image file '/no/such.png' does not exist",
        "search_image-missing"),
    bad(lambda x: x.r.search_image_batch(Image.new("RGB", (4, 4))),
        "images must be a list of image queries, got a single Image (wrap it in a list)", "search_image_batch-one"),
    bad(lambda x: x.r.search_image_batch([]), "images: no image queries given", "search_image_batch-empty"),
    bad(lambda x: x.r.search_image_batch([x.picture, None]),
        "images[1] must be a PIL image or an image file path, got None", "search_image_batch-None"),
    # vectors
    bad(lambda x: x.r.search_vectors(x.vector[0]), lambda x: f"vectors must be a 2-D (n, d) matrix, got shape "
        f"({x.dim},) (batch a single vector as (1, d))", "vectors-1d"),
    bad(lambda x: x.r.search_vectors(np.ones((1, 3))), lambda x: f"vectors has dimension 3, the index has "
        f"dimension {x.dim}", "vectors-dim"),
    bad(lambda x: x.r.search_vectors(np.full((1, x.dim), np.nan)), "vectors holds NaN or infinite values",
        "vectors-nan"),
    bad(lambda x: x.r.search_vectors(np.full((1, x.dim), np.inf)), "vectors holds NaN or infinite values",
        "vectors-inf"),
    bad(lambda x: x.r.search_vectors(np.full((1, x.dim), "a")), "vectors must be numeric, got dtype <U1",
        "vectors-str"),
    bad(lambda x: x.r.search_vectors(np.zeros((0, x.dim))), lambda x: f"vectors is empty (shape (0, {x.dim}))",
        "vectors-empty"),
    bad(lambda x: x.r.search_vectors([[1.0], [1.0, 2.0]]), "vectors must be a 2-D (n, d) matrix, got a ragged list",
        "vectors-ragged"),
    # times and user indices
    bad(lambda x: x.r.user_vectors([x.user], np.array([1.5])), f"{TIMES} ndarray array([1.5])", "times-float"),
    bad(lambda x: x.r.user_vectors([x.user], "2024-01-01"), f"{TIMES} str '2024-01-01'", "times-str"),
    bad(lambda x: x.r.user_vectors([x.user, x.user2], np.array([1])), "times has 1 entries, expected one per user (2)",
        "times-length"),
    bad(lambda x: x.r.user_vectors([x.user], np.array(["NaT"], dtype="datetime64[us]")), "times holds NaT (not a time)",
        "times-nat"),
    bad(lambda x: x.r.embed_users(np.array([-1])), lambda x: f"users must lie in [0, {x.n_users}), got values from -1 "
        "to -1", "users-negative"),
    bad(lambda x: x.r.embed_users(np.array([1.0])),
        "users must be a 1-D integer array of user indices, got ndarray array([1.])", "users-float"),
    bad(lambda x: x.r.seen_rows("x"), "users must be a 1-D integer array of user indices, got str 'x'", "seen-str"),
    # add_items
    bad(lambda x: x.r.add_items(None), f"items must be a polars DataFrame ({ADD}), got None", "add-None"),
    bad(lambda x: x.r.add_items(x.r.catalogue.head(0)),
        "items must be a non-empty polars DataFrame, got one with no rows", "add-empty"),
    bad(lambda x: x.r.add_items(pl.DataFrame({"item_id": ["x"]})),
        f"items: missing column(s) ['title']; expected {ADD}", "add-no-title"),
    bad(lambda x: x.r.add_items(pl.DataFrame({"item_id": ["x"], "title": [3]})),
        "items.title must be a String column, got Int64", "add-int-title"),
    bad(lambda x: x.r.add_items(x.frame("x", category=7)), "items.category must be a String column, got Int32",
        "add-int-category"),
    bad(lambda x: x.r.add_items(pl.concat([x.frame("d"), x.frame("d")])),
        "items.item_id must be unique; repeated: ['d']", "add-duplicate"),
    bad(lambda x: x.r.add_items(x.frame("x").with_columns(pl.lit(None, pl.String).alias("item_id"))),
        "items.item_id must not be null (1 null ids)", "add-null-id"),
    bad(lambda x: x.r.add_items(x.frame(x.item)), lambda x: f"items: 1 ids already in the index, e.g. [{x.item!r}]",
        "add-present"),
    bad(lambda x: x.r.add_items(x.frame("x"), image_root=5),
        "image_root must be a folder path (str or Path) or None, got int 5", "add-root-int"),
    bad(lambda x: x.r.add_items(x.frame("x"), image_root="/no/such/dir"),
        "image_root: folder '/no/such/dir' does not exist", "add-root-missing"),
    # remove_items
    bad(lambda x: x.r.remove_items(x.item), lambda x: f"item_ids must be a list of item ids, got a single string "
        f"{x.item!r} (it takes a list of item ids, even for one)", "remove-str"),
    bad(lambda x: x.r.remove_items(None), "item_ids must be a list of item ids, got None", "remove-None"),
    bad(lambda x: x.r.remove_items([x.item, x.item]), lambda x: f"item_ids must not repeat ids; repeated: [{x.item!r}]",
        "remove-repeated"),
    bad(lambda x: x.r.remove_items(["ghost"]), "item_ids: 1 unknown ids, e.g. ['ghost'] (not in the index, or removed)",
        "remove-unknown"),
    # results as one table
    bad(lambda x: results_frame([x.user], x.r.recommend_batch([x.user, x.user2], K)),
        "queries has 1 entries but results 2: one query per result", "results_frame-lengths"),
    # load
    bad(lambda x: Retriever.load(None), "run_dir must be a path (str or Path), got None", "load-None"),
    bad(lambda x: Retriever.load(x.r.image_root.parent, device="gpux"),
        "device must be a torch device such as 'cpu' or 'cuda:0', got str 'gpux'", "load-device"),
]


@pytest.mark.parametrize("call, message", BAD_CALLS)
def test_a_bad_argument_is_named_with_what_was_expected(run, call, message):
    expected = message(run) if callable(message) else message
    with pytest.raises(RetrievalError) as err:
        call(run)
    assert str(err.value) == expected


def test_bad_calls_changed_nothing(run):
    """Runs after the bad calls (file order): every refusal came before any change to the index."""
    assert len(run.r.index) == len(run.r.items) == run.n_items
    assert run.r.index.ids == run.r.vocabs.items.ids[1:]


@pytest.mark.parametrize("ids", [tuple, np.array, pl.Series], ids=["tuple", "ndarray", "series"])
def test_id_lists_may_be_any_sequence_or_array(run, ids):
    users, items = [run.user, run.user2], [run.item, run.item2]
    assert [r.ids for r in run.r.recommend_batch(ids(users), K)] == [r.ids for r in run.r.recommend_batch(users, K)]
    assert [r.ids for r in run.r.similar_items_batch(ids(items), K)] == [
        r.ids for r in run.r.similar_items_batch(items, K)
    ]


def test_numpy_scalars_are_taken_for_k_and_flags(run):
    expected = run.r.recommend(run.user, K, exclude_seen=False)
    got = run.r.recommend(run.user, np.int64(K), exclude_seen=np.bool_(False))
    assert got.ids == expected.ids
    assert run.r.similar_items(run.item, np.int64(K)).ids == run.r.similar_items(run.item, K).ids
    vectors = run.r.index.vectors(np.arange(2))
    by_numpy_k, by_int_k = run.r.search_vectors(vectors, np.int64(K)), run.r.search_vectors(vectors, K)
    assert [r.ids for r in by_numpy_k] == [r.ids for r in by_int_k]
    assert run.r.profile(run.user, np.int64(K)).nearest_items.ids == run.r.profile(run.user, K).nearest_items.ids


def test_times_as_datetime64_equal_times_as_microseconds(run):
    micros = np.array([1_700_000_000_000_000], dtype=np.int64)
    np.testing.assert_array_equal(
        run.r.user_vectors([run.user], micros.astype("datetime64[us]")), run.r.user_vectors([run.user], micros)
    )


def test_an_integer_attribute_value_is_read_as_its_digits(run):
    name = run.r.features.attribute_names[0]
    value = run.r.vocabs.attributes[name].ids[1]
    as_str = run.r.recommend(None, K, attributes={name: value})
    assert as_str.source == "features"
    assert run.r.recommend(None, K, attributes={name: 12345}).ids == run.r.recommend(
        None, K, attributes={name: "12345"}
    ).ids


def test_clean_text_replaces_lone_surrogates_only():
    assert clean_text("caf\udce9 \ud800") == "caf\ufffd \ufffd"
    text = "café ☕ 😀"
    assert clean_text(text) is text


def test_a_lone_surrogate_is_searched_as_the_replacement_character(run):
    odd = run.r.search("caf\udce9 brass lamp", K)
    assert odd.source == "text" and len(odd) == K
    replaced = run.r.search("caf\ufffd brass lamp", K)
    assert odd.ids == replaced.ids
    np.testing.assert_allclose(odd.scores, replaced.scores, atol=1e-6)
    assert run.r.recommend("caf\udce9", K).source == "popularity"  # an unknown user id like any other


@pytest.mark.parametrize("column", ["text", "category", "image"])
def test_add_items_takes_a_table_without_an_optional_column(run, writable, column):
    """Without the column the item is embedded as with the column all null (no category: the unknown one)."""
    source = run.frame("x").with_columns(pl.lit(None, pl.String).alias(column))
    absent, null = f"absent-{column}", f"null-{column}"
    without = source.drop(column).with_columns(pl.lit(absent).alias("item_id"))
    assert writable.add_items(without, image_root=run.r.image_root) == [absent]
    writable.add_items(source.with_columns(pl.lit(null).alias("item_id")), image_root=run.r.image_root)
    vectors = writable.index.vectors(writable.index.position([absent, null]))
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert writable.catalogue.filter(pl.col("item_id") == absent)[column].to_list() == [None]
    assert writable.similar_items(absent, K).source == "item"


def test_add_items_takes_item_id_and_title_alone_and_all_null_columns(run, writable):
    minimal = pl.DataFrame({"item_id": ["bare"], "title": ["Brass reading lamp"]})
    nulls = minimal.with_columns(pl.lit(None).alias("category"), pl.lit("bare-nulls").alias("item_id"))
    assert nulls.schema["category"] == pl.Null
    assert writable.add_items(minimal) == ["bare"] and writable.add_items(nulls) == ["bare-nulls"]
    vectors = writable.index.vectors(writable.index.position(["bare", "bare-nulls"]))
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert writable.search_vectors(vectors[:1], 1)[0].ids in (["bare"], ["bare-nulls"])


def test_four_threads_of_mixed_calls_get_the_serial_answers(run):
    """200 valid calls of eight kinds, answered serially, then again from 4 threads in a shuffled order."""
    r, users, items = run.r, run.r.vocabs.users.ids[1:21], run.r.index.ids[:20]
    name = r.features.attribute_names[0]
    kinds: list[Callable[[int], object]] = [
        lambda i: r.recommend(users[i % 20], K),
        lambda i: r.recommend_batch([users[i % 20], "nobody"], K, exclude_seen=False, rerank="purchase"),
        lambda i: r.recommend(None, K, history=items[i % 7 : i % 7 + 3], attributes={name: "north"}),
        lambda i: r.similar_items(items[i % 20], K, ItemFilter(deny=[items[(i + 1) % 20]])),
        lambda i: r.search_vectors(r.index.vectors(np.array([i % 20])), K),
        lambda i: r.predict_behaviour(users[i % 20], items[:4]),
        lambda i: r.profile(users[i % 20], K),
        lambda i: r.user_vectors(users[i % 5 : i % 5 + 3]),
    ]
    calls = [(i, kinds[i % len(kinds)]) for i in range(200)]
    serial = [_answer(call(i)) for i, call in calls]
    order = list(range(len(calls)))
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = dict(zip(order, pool.map(lambda j: _answer(calls[j][1](calls[j][0])), order)))
    for j, expected in enumerate(serial):
        assert parallel[j][0] == expected[0], j
        np.testing.assert_allclose(parallel[j][1], expected[1], atol=1e-5)


def _answer(result: object) -> tuple[object, np.ndarray]:
    """A call's result as (exact part, float part) for comparison across threads."""
    if isinstance(result, list) and result and hasattr(result[0], "ids"):
        return [(r.ids, r.source) for r in result], np.concatenate([r.scores for r in result])
    if hasattr(result, "ids"):
        return (result.ids, result.source), result.scores
    if isinstance(result, pl.DataFrame):
        return result["item_id"].to_list(), result.drop("item_id").to_numpy()
    if isinstance(result, np.ndarray):
        return result.shape, result
    return (result.nearest_items.ids, result.history_items, result.segment), result.nearest_items.scores
