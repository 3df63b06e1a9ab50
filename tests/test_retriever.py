"""Retriever on a trained run: seen items excluded, brute-force agreement, exports, errors, evaluate()."""

import json
import shutil

import numpy as np
import pytest
import torch

from tandemrec.config import read_run_config
from tandemrec.data.dataset import Dataset
from tandemrec.data.prepared import prepare
from tandemrec.retrieval.embeddings import read_embeddings
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.evaluate import evaluate
from tandemrec.retrieval.retriever import Retriever
from tandemrec.towers.serialization import model_hash
from tandemrec.towers.text_encoder import load_tokenizer, make_tokenize
from tandemrec.towers.two_tower import TwoTower

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

ATOL = 1e-5


@pytest.fixture(scope="module")
def retriever(trained_run) -> Retriever:
    return Retriever.load(trained_run)


@pytest.fixture(scope="module")
def seen(trained_run) -> dict[str, set[str]]:
    """Every item each user had any event with, read straight from the run's dataset."""
    interactions = Dataset.load(trained_run / "dataset").interactions
    out: dict[str, set[str]] = {}
    for user, item in zip(interactions["user_id"].to_list(), interactions["item_id"].to_list()):
        out.setdefault(user, set()).add(item)
    return out


@pytest.fixture(scope="module")
def exported(trained_run):
    item_ids, items, item_manifest = read_embeddings(trained_run / "embeddings", "items")
    user_ids, users, user_manifest = read_embeddings(trained_run / "embeddings", "users")
    return item_ids, items, item_manifest, user_ids, users, user_manifest


@pytest.fixture(scope="module")
def all_users(retriever) -> list[str]:
    return retriever.vocabs.users.ids[1:]


def copy_run(trained_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(trained_run, dest, ignore=shutil.ignore_patterns("shop"))
    return dest


def assert_is_top_k(ids, scores, reference: dict[str, float], k: int):
    """`ids` are k items with the k best reference scores, their scores as the reference says, best first."""
    assert len(ids) == k and len(set(ids)) == k
    assert np.all(np.diff(scores) <= 1e-7), "scores must be sorted descending"
    np.testing.assert_allclose(scores, [reference[i] for i in ids], atol=ATOL)
    best = np.sort(np.fromiter(reference.values(), dtype=np.float64))[::-1][:k]
    np.testing.assert_allclose(np.sort(scores)[::-1], best, atol=ATOL)


def test_load_gives_a_consistent_retriever(retriever, exported):
    item_ids, items, *_ = exported
    assert len(retriever.index) == len(item_ids) == len(retriever.vocabs.items) - 1
    assert retriever.index.ids == item_ids
    assert retriever.index.dim == retriever.model.config.dim == items.shape[1]
    assert not retriever.model.training


def test_recommend_never_returns_seen_items(retriever, seen, all_users):
    results = retriever.recommend_batch(all_users, k=10)
    assert len(results) == len(all_users)
    for user, rec in zip(all_users, results):
        assert len(rec) == 10
        assert not set(rec.ids) & seen.get(user, set()), user
        assert np.all(np.diff(rec.scores) <= 1e-7)


def test_recommend_single_user_agrees_with_batch(retriever, seen, all_users):
    batch = retriever.recommend_batch(all_users[:5], k=7)
    for user, expected in zip(all_users[:5], batch):
        one = retriever.recommend(user, k=7)
        assert one.ids == expected.ids
        np.testing.assert_allclose(one.scores, expected.scores, atol=ATOL)
        assert not set(one.ids) & seen[user]


def test_recommend_with_seen_excluded_is_brute_force_over_unseen(retriever, seen, exported, all_users):
    item_ids, items, _, user_ids, users, _ = exported
    assert user_ids == all_users
    scores = users @ items.T
    results = retriever.recommend_batch(all_users[:50], k=10)
    for row, (user, rec) in enumerate(zip(all_users[:50], results)):
        reference = {i: s for i, s in zip(item_ids, scores[row]) if i not in seen[user]}
        assert_is_top_k(rec.ids, rec.scores, reference, 10)


def test_recommend_including_seen_is_brute_force(retriever, exported, all_users):
    item_ids, items, _, _, users, _ = exported
    scores = users @ items.T
    results = retriever.recommend_batch(all_users, k=10, exclude_seen=False)
    for row, rec in enumerate(results):
        assert_is_top_k(rec.ids, rec.scores, dict(zip(item_ids, scores[row])), 10)


def test_recommend_including_seen_does_return_seen_items(retriever, seen, all_users):
    results = retriever.recommend_batch(all_users, k=10, exclude_seen=False)
    hits = sum(bool(set(rec.ids) & seen[user]) for user, rec in zip(all_users, results))
    assert hits > 0  # a trained model ranks some history items high; excluding them is the default's job


def test_recommend_everything_returns_exactly_the_unseen_items(retriever, seen, all_users):
    user = all_users[0]
    rec = retriever.recommend(user, k=len(retriever.index))
    assert set(rec.ids) == set(retriever.index.ids) - seen[user]
    assert len(rec) == len(retriever.index) - len(seen[user])


def test_user_vectors_match_the_export(retriever, exported, all_users):
    *_, users, manifest = exported
    np.testing.assert_allclose(retriever.user_vectors(all_users), users, atol=ATOL)
    assert manifest["normalized"] is True


def test_similar_items_excludes_the_item_and_is_brute_force(retriever, exported):
    item_ids, items, *_ = exported
    for row in (0, 17, len(item_ids) - 1):
        item = item_ids[row]
        result = retriever.similar_items(item, k=6)
        assert item not in result.ids
        reference = {i: s for i, s in zip(item_ids, items @ items[row]) if i != item}
        assert_is_top_k(result.ids, result.scores, reference, 6)


def test_similar_items_whole_catalogue(retriever):
    item = retriever.index.ids[3]
    result = retriever.similar_items(item, k=len(retriever.index))
    assert len(result) == len(retriever.index) - 1 and item not in result.ids


def test_recommendations_to_frame(retriever, all_users):
    frame = retriever.recommend(all_users[1], k=4).to_frame()
    assert frame.columns == ["rank", "item_id", "score"]
    assert frame["rank"].to_list() == [1, 2, 3, 4]


@pytest.mark.parametrize("k", [0, -3, 2.5, "5", None])
def test_bad_k_is_refused(retriever, all_users, k):
    with pytest.raises(RetrievalError, match="k must be a positive integer"):
        retriever.recommend(all_users[0], k=k)
    with pytest.raises(RetrievalError, match="k must be a positive integer"):
        retriever.similar_items(retriever.index.ids[0], k=k)


def test_k_larger_than_catalogue(retriever, all_users):
    n = len(retriever.index)
    with pytest.raises(RetrievalError, match=f"k={n + 1} exceeds the {n} items"):
        retriever.recommend(all_users[0], k=n + 1)
    with pytest.raises(RetrievalError, match=f"k={n + 1} exceeds the {n} items"):
        retriever.similar_items(retriever.index.ids[0], k=n + 1)


def test_unknown_user(retriever, all_users):
    """recommend falls back to popularity for users the run does not know (issue 6); embedding them fails."""
    assert retriever.recommend("nobody-42").source == "popularity"
    assert [r.source for r in retriever.recommend_batch([all_users[0], "ghost"])] == ["model", "popularity"]
    with pytest.raises(RetrievalError, match=r"\['ghost'\] \(1 in all\)"):
        retriever.user_vectors([all_users[0], "ghost"])


def test_unknown_item(retriever):
    with pytest.raises(RetrievalError, match=r"unknown ids, e.g. \['no-such-item'\]"):
        retriever.similar_items("no-such-item")


def test_recommend_batch_refuses_a_single_string(retriever, all_users):
    with pytest.raises(RetrievalError, match="takes a list of user ids"):
        retriever.recommend_batch(all_users[0])


def test_recommend_batch_refuses_no_users(retriever):
    with pytest.raises(RetrievalError, match="no user ids given"):
        retriever.recommend_batch([])


def test_load_missing_run_folder(tmp_path):
    with pytest.raises(RetrievalError, match="does not exist"):
        Retriever.load(tmp_path / "no-run-here")


def test_load_run_without_index(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    shutil.rmtree(run / "index")
    with pytest.raises(RetrievalError, match=r"has no index/ \(train, then index the run\)"):
        Retriever.load(run)


def test_load_index_built_by_another_model(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    manifest_path = run / "index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model_hash"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="index was built by another model"):
        Retriever.load(run)


def test_exported_item_embeddings_equal_the_model(trained_run, exported):
    """Embed the catalogue again with the saved model, the way build_index does, and compare."""
    item_ids, items, manifest, *_ = exported
    model = TwoTower.from_pretrained(trained_run / "model")
    config = read_run_config(trained_run / "config.json")
    data = prepare(Dataset.load(trained_run / "dataset"), config.data.split, model.config.user.history_len)
    tokenize = make_tokenize(load_tokenizer(str(trained_run / "model" / "tokenizer")))
    content = data.content(tokenize, model.config.item.text.max_length, model.item_tower.image.image_size)
    with torch.no_grad():
        vectors = torch.cat([model.item_tower(batch) for batch in content.batches(50)]).numpy()
    assert item_ids == data.vocabs.items.ids[1:]
    np.testing.assert_allclose(items, vectors, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=ATOL)
    assert manifest["model_hash"] == model_hash(trained_run / "model")
    assert manifest["count"] == len(item_ids) and manifest["dim"] == model.config.dim


def test_index_holds_the_exported_vectors(retriever, exported):
    _, items, *_ = exported
    np.testing.assert_allclose(retriever.index.vectors(np.arange(len(items))), items, atol=ATOL)


def test_tampered_export_fails_its_checksum(trained_run, tmp_path):
    folder = tmp_path / "embeddings"
    shutil.copytree(trained_run / "embeddings", folder)
    data = bytearray((folder / "items.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "items.parquet").write_bytes(bytes(data))
    with pytest.raises(RetrievalError, match="does not match its manifest checksum"):
        read_embeddings(folder, "items")
    read_embeddings(folder, "users")  # the other export is untouched


def test_export_entry_or_file_missing(trained_run, tmp_path):
    folder = tmp_path / "embeddings"
    shutil.copytree(trained_run / "embeddings", folder)
    with pytest.raises(RetrievalError, match="has no entry for 'things'"):
        read_embeddings(folder, "things")
    (folder / "users.parquet").unlink()
    with pytest.raises(RetrievalError, match="users.parquet' is missing"):
        read_embeddings(folder, "users")


def test_evaluate_reports_both_systems_and_users(trained_run, retriever):
    config = read_run_config(trained_run / "config.json")
    data = prepare(Dataset.load(trained_run / "dataset"), config.data.split, retriever.model.config.user.history_len)
    metrics = evaluate(retriever, data.test, data.item_frequencies()[1:], ks=(5, 10))
    assert set(metrics) == {"tandemrec", "popularity", "users"}
    for system in ("tandemrec", "popularity"):
        values = metrics[system]
        for name in ("recall@5", "recall@10", "ndcg@10", "hit_rate@10", "mrr"):
            assert 0.0 <= values[name] <= 1.0, (system, name)
        assert values["recall@5"] <= values["recall@10"]
    users = metrics["users"]
    assert set(users) == {"evaluated", "skipped"}
    assert users["evaluated"] > 0
    assert users["evaluated"] + users["skipped"] == len(data.test)
