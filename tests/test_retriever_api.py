"""The Retriever API of issue 6 on a trained run: text and image search, cold-start adds, removals, filters,
unknown users, batch and table forms, concurrent calls, and clear errors for bad input."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest
from PIL import Image

from conftest import TINY_OVERRIDES
from tandemrec.config import load_config
from tandemrec.data.synthetic import CLASSES
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.recommendations import results_frame
from tandemrec.retrieval.retriever import Retriever

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

K = 10


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A tiny run trained with modality dropout, so that text-only and image-only queries land among items."""
    from tandemrec.jobs import build_index, train

    run = tmp_path_factory.mktemp("search") / "run"
    # The shipped pretrained MiniLM (frozen, as in the demo) instead of the tiny random BERT: product
    # search is the text path, and 4 epochs on a tiny shop are too few to teach a random encoder words.
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("model.item.text.")]
    train(load_config(None, [*overrides, "model.item.modality_dropout=0.5", "train.epochs=4"]), run, progress=False)
    build_index(run)
    return run


@pytest.fixture(scope="module")
def retriever(search_run) -> Retriever:
    """Shared by the read-only tests; tests that add or remove items load their own."""
    return Retriever.load(search_run)


@pytest.fixture(scope="module")
def category(retriever) -> dict[str, str]:
    return dict(zip(retriever.catalogue["item_id"].to_list(), retriever.catalogue["category"].to_list()))


def test_text_search_finds_items_of_the_named_class_far_better_than_chance(retriever, category):
    present = set(category.values())
    classes = [c for c in CLASSES if c.category in present]
    precision = [
        np.mean([category[i] == c.category for i in retriever.search(f"{c.material} {c.noun}", K).ids])
        for c in classes
    ]
    chance = 1 / len(present)
    assert np.mean(precision) > 2 * chance, precision


def test_image_search_takes_a_path_or_a_picture(retriever):
    path = retriever.image_root / retriever.catalogue["image"][0]
    by_path = retriever.search_image(path, K)
    by_picture = retriever.search_image(Image.open(path), K)
    assert by_path.source == "image" and len(by_path) == K
    assert by_path.ids == by_picture.ids
    np.testing.assert_allclose(by_path.scores, by_picture.scores, atol=1e-6)


def test_batch_forms_equal_the_single_forms(retriever):
    users = retriever.vocabs.users.ids[1:4]
    items = retriever.index.ids[:3]
    texts = ["brass lamp", "ceramic mug"]
    for batch, single in (
        (retriever.recommend_batch(users, K), [retriever.recommend(u, K) for u in users]),
        (retriever.similar_items_batch(items, K), [retriever.similar_items(i, K) for i in items]),
        (retriever.search_batch(texts, K), [retriever.search(t, K) for t in texts]),
    ):
        assert [b.ids for b in batch] == [s.ids for s in single]
    frame = results_frame(users, retriever.recommend_batch(users, 3))
    assert frame.columns == ["query", "rank", "item_id", "score", "source"]
    assert frame.height == 9 and frame["query"].to_list()[:3] == [users[0]] * 3


def test_add_items_embeds_new_items_and_makes_them_findable(search_run):
    retriever = Retriever.load(search_run)
    source = retriever.catalogue.head(1)
    new = pl.concat(
        [
            source.with_columns(pl.lit("new-a").alias("item_id")),
            source.with_columns(pl.lit("new-b").alias("item_id"), (pl.col("title") + " (new edition)").alias("title")),
        ]
    )
    n = len(retriever.items)
    assert retriever.add_items(new, image_root=retriever.image_root) == ["new-a", "new-b"]
    assert len(retriever.items) == n + 2 and retriever.index.ids[-2:] == ["new-a", "new-b"]
    assert retriever.similar_items("new-b", K).ids[0] == "new-a"  # the near-duplicate finds the new item
    assert "new-a" in retriever.similar_items_batch(["new-b"], K, ItemFilter(categories=[source["category"][0]]))[0].ids
    with pytest.raises(RetrievalError, match=r"1 ids already in the index, e.g. \['new-a'\]"):
        retriever.add_items(new.head(1))


def test_remove_items_takes_them_out_and_k_is_still_met(search_run):
    retriever = Retriever.load(search_run)
    user = retriever.vocabs.users.ids[1]
    before = retriever.recommend(user, K).ids
    retriever.remove_items(before[:3])
    after = retriever.recommend(user, K).ids
    assert len(after) == K and not set(after) & set(before[:3])
    assert after[: K - 3] == before[3:]
    with pytest.raises(RetrievalError, match="unknown ids"):
        retriever.similar_items(before[0])
    with pytest.raises(RetrievalError, match=r"unknown ids, e.g. \['no-such-item'\]"):
        retriever.remove_items(["no-such-item"])


def test_filters_keep_k_results_when_k_items_are_eligible(retriever, category):
    user = retriever.vocabs.users.ids[2]
    name = sorted(set(category.values()))[0]
    in_category = retriever.recommend(user, K, filter=ItemFilter(categories=[name]))
    assert len(in_category) == K and {category[i] for i in in_category.ids} == {name}
    unfiltered = retriever.recommend(user, K, exclude_seen=False)
    denied = retriever.recommend(user, K, exclude_seen=False, filter=ItemFilter(deny=unfiltered.ids[:5]))
    assert len(denied) == K and not set(denied.ids) & set(unfiltered.ids[:5])
    allow = retriever.index.ids[:12]
    allowed = retriever.similar_items(allow[0], K, ItemFilter(allow=allow))
    assert len(allowed) == K and set(allowed.ids) <= set(allow[1:])
    few = retriever.search("lamp", K, ItemFilter(allow=allow[:3]))
    assert sorted(few.ids) == sorted(allow[:3])  # fewer eligible than k: all of them, nothing else
    popular = retriever.recommend("nobody", K, filter=ItemFilter(categories=[name]))
    assert popular.source == "popularity" and {category[i] for i in popular.ids} == {name} and len(popular) == K


def test_bad_filters_are_refused(retriever):
    with pytest.raises(RetrievalError, match=r"filter.categories: unknown \['spaceships'\]"):
        retriever.search("lamp", K, ItemFilter(categories=["spaceships"]))
    with pytest.raises(RetrievalError, match=r"filter.allow: item_ids: 1 unknown ids, e.g. \['ghost'\]"):
        retriever.search("lamp", K, ItemFilter(allow=["ghost"]))
    with pytest.raises(RetrievalError, match="filter.deny must be a list of item ids, got a single string"):
        ItemFilter(deny="item001")


def test_unknown_users_fall_back_to_given_features_then_popularity(retriever):
    items = retriever.index.ids
    popular = retriever.recommend("nobody", K)
    assert popular.source == "popularity"
    assert np.all(np.diff(popular.scores) <= 0) and popular.scores[0] == pytest.approx(retriever.popularity.max())
    history = items[:4]
    given = retriever.recommend("nobody", K, history=history)
    assert given.source == "features" and len(given) == K and not set(given.ids) & set(history)
    assert retriever.recommend(None, K, history=history).ids == given.ids
    name = retriever.features.attribute_names[0]
    value = retriever.vocabs.attributes[name].ids[1]
    assert retriever.recommend("nobody", K, attributes={name: value}).source == "features"
    known = retriever.vocabs.users.ids[1]
    assert retriever.recommend(known, K, history=[]).source == "features"
    assert retriever.recommend(known, K).source == "model"
    assert retriever.recommend("nobody", K, history=[], attributes={}).source == "popularity"


def test_bad_user_features_are_refused(retriever):
    with pytest.raises(RetrievalError, match=r"history: item_ids: 1 unknown ids, e.g. \['ghost'\]"):
        retriever.recommend("nobody", K, history=["ghost"])
    with pytest.raises(RetrievalError, match=r"attributes: unknown names \['shoe_size'\]"):
        retriever.recommend("nobody", K, attributes={"shoe_size": "42"})
    with pytest.raises(RetrievalError, match="history must be a list of item ids"):
        retriever.recommend("nobody", K, history="item001")
    with pytest.raises(RetrievalError, match="recommend needs a user_id"):
        retriever.recommend()


def test_eight_threads_get_the_answers_of_serial_calls(retriever):
    users = retriever.vocabs.users.ids[1:81] + ["nobody-1", "nobody-2"]
    serial = [retriever.recommend(u, K) for u in users]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda u: retriever.recommend(u, K), users))
        texts = list(pool.map(lambda t: retriever.search(t, K), ["brass lamp"] * 16))
    for s, p in zip(serial, parallel):
        assert s.ids == p.ids and s.source == p.source
        np.testing.assert_allclose(s.scores, p.scores, atol=1e-6)
    assert all(t.ids == texts[0].ids for t in texts)


@pytest.mark.parametrize("k", [0, -1, 2.5, None])
def test_bad_k_is_refused_everywhere(retriever, k):
    vector = retriever.index.vectors(np.array([0]))
    path = retriever.image_root / retriever.catalogue["image"][0]
    for call in (
        lambda: retriever.recommend("nobody", k),
        lambda: retriever.recommend("nobody", k, history=[]),
        lambda: retriever.search("lamp", k),
        lambda: retriever.search_image(path, k),
        lambda: retriever.search_vectors(vector, k),
        lambda: retriever.similar_items(retriever.index.ids[0], k),
    ):
        with pytest.raises(RetrievalError, match="k must be a positive integer"):
            call()


def test_k_larger_than_the_catalogue_is_refused(retriever):
    n = len(retriever.items)
    for call in (
        lambda: retriever.recommend("nobody", n + 1),
        lambda: retriever.search("lamp", n + 1),
        lambda: retriever.similar_items_batch(retriever.index.ids[:2], n + 1),
    ):
        with pytest.raises(RetrievalError, match=f"k={n + 1} exceeds the {n} items"):
            call()


def test_empty_and_unreadable_queries_are_refused(retriever, tmp_path):
    for text in ("", "   "):
        with pytest.raises(RetrievalError, match="text must be a non-empty string"):
            retriever.search(text)
    with pytest.raises(RetrievalError, match="no text queries given"):
        retriever.search_batch([])
    with pytest.raises(RetrievalError, match="takes a list of text queries"):
        retriever.search_batch("lamp")
    with pytest.raises(RetrievalError, match="no image queries given"):
        retriever.search_image_batch([])
    with pytest.raises(RetrievalError, match="image file '.*nowhere.png' does not exist"):
        retriever.search_image(tmp_path / "nowhere.png")
    (tmp_path / "junk.png").write_text("not a picture")
    with pytest.raises(RetrievalError, match="junk.png' is not a readable image"):
        retriever.search_image(tmp_path / "junk.png")
    with pytest.raises(RetrievalError, match="vectors is empty"):
        retriever.search_vectors(np.zeros((0, retriever.index.dim), dtype=np.float32))
    with pytest.raises(RetrievalError, match="no item ids given"):
        retriever.similar_items_batch([])
    with pytest.raises(RetrievalError, match=r"unknown ids, e.g. \['no-such-item'\]"):
        retriever.similar_items("no-such-item")
    with pytest.raises(RetrievalError, match=r"items: missing column\(s\) \['title'\]"):
        retriever.add_items(pl.DataFrame({"item_id": ["x"]}))
    with pytest.raises(RetrievalError, match="items must be a non-empty polars DataFrame"):
        retriever.add_items(pl.DataFrame({"item_id": [], "title": []}))


def test_an_index_from_another_model_or_a_damaged_file_is_refused(search_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(search_run, run, ignore=shutil.ignore_patterns("shop"))
    index = ItemIndex.load(run / "index")
    ItemIndex.build(np.eye(len(index), 8, dtype=np.float32), index.ids, metadata=index.metadata).save(run / "index")
    with pytest.raises(RetrievalError, match=r"has dim 8, expected \d+"):
        Retriever.load(run)
    index.save(run / "index")
    data = (run / "index" / "index.faiss").read_bytes()
    (run / "index" / "index.faiss").write_bytes(data[: len(data) // 3])
    with pytest.raises(RetrievalError, match="index file .* is corrupt or truncated"):
        Retriever.load(run)
