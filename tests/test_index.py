"""ItemIndex against a numpy brute-force reference, its save format, and the atomic write helpers."""

import hashlib
import json

import faiss
import numpy as np
import pytest

from tandemrec.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.index import ItemIndex

N, DIM = 300, 16


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int, banned=None):
    scores = queries @ vectors.T
    if banned is not None:
        for row, positions in enumerate(banned):
            scores[row, positions] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def vectors(rng):
    return unit_rows(rng, N)


@pytest.fixture
def index(vectors):
    return ItemIndex.build(vectors, [f"item{i}" for i in range(N)], metadata={"model_hash": "abc"})


def test_search_matches_brute_force(index, vectors, rng):
    queries = unit_rows(rng, 20)
    positions, scores = index.search(queries, 10)
    expected_positions, expected_scores = brute_force(vectors, queries, 10)
    assert positions.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(positions, expected_positions)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_exclusion_is_respected_and_still_gives_k_results(index, vectors, rng):
    queries = unit_rows(rng, 20)
    best, _ = brute_force(vectors, queries, 40)
    banned = [best[i, : 3 * i] for i in range(20)]  # the best items themselves, 0 to 57 of them
    positions, scores = index.search(queries, 10, exclude=banned)
    expected_positions, expected_scores = brute_force(vectors, queries, 10, banned)
    assert (positions >= 0).all()
    for row, excluded in enumerate(banned):
        assert not np.isin(positions[row], excluded).any()
    np.testing.assert_array_equal(positions, expected_positions)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_fewer_eligible_items_than_k_pads(rng):
    small = ItemIndex.build(unit_rows(rng, 5), list("abcde"))
    positions, scores = small.search(unit_rows(rng, 2), 4, exclude=[np.array([0, 1, 2, 2]), np.array([], int)])
    assert sorted(positions[0, :2]) == [3, 4] and positions[0, 2:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[0, :2]).all()
    assert (positions[1] >= 0).all()


class ForgetfulIndex:
    """An approximate index stand-in: every search short of the whole catalogue misses its last result."""

    def __init__(self, inner):
        self.inner, self.d, self.metric_type, self.budgets = inner, inner.d, inner.metric_type, []

    @property
    def ntotal(self):
        return self.inner.ntotal

    def search_c(self, n, queries, k, scores, positions, params):  # FAISS's C entry point, as ItemIndex calls it
        self.budgets.append(k)
        self.inner.search_c(n, queries, k, scores, positions, params)
        if k < self.ntotal:
            faiss.rev_swig_ptr(positions, n * k).reshape(n, k)[:, -1] = -1
            faiss.rev_swig_ptr(scores, n * k).reshape(n, k)[:, -1] = -np.inf


def test_an_approximate_miss_is_made_up_by_a_wider_search(vectors, rng):
    inner = faiss.IndexFlatIP(DIM)
    inner.add(vectors)
    forgetful = ForgetfulIndex(inner)
    queries = unit_rows(rng, 3)
    positions, _ = ItemIndex(forgetful, [str(i) for i in range(N)]).search(queries, 5)
    np.testing.assert_array_equal(positions, brute_force(vectors, queries, 5)[0])
    assert forgetful.budgets == [5, 10]


def test_approximate_factory_builds_and_searches(vectors, rng):
    ivf = ItemIndex.build(vectors, [str(i) for i in range(N)], factory="IVF4,Flat")
    positions, _ = ivf.search(unit_rows(rng, 4), 5, exclude=[np.arange(10)] * 4)
    assert ivf.factory == "IVF4,Flat" and positions.shape == (4, 5)
    assert not np.isin(positions, np.arange(10)).any()


def test_positions_and_vectors_round_trip(index, vectors):
    positions = index.position(["item7", "item0", "item299"])
    assert positions.tolist() == [7, 0, 299]
    np.testing.assert_array_equal(index.vectors(positions), vectors[[7, 0, 299]])
    assert len(index) == N and index.dim == DIM and index.ids[:2] == ["item0", "item1"]


def test_add_then_search_finds_the_new_item(index, rng):
    new = unit_rows(rng, 2)
    index.add(new, ["fresh0", "fresh1"])
    positions, scores = index.search(new, 1)
    assert positions[:, 0].tolist() == index.position(["fresh0", "fresh1"]).tolist() == [N, N + 1]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert len(index) == N + 2 and index.ids[-1] == "fresh1"


def test_save_load_round_trip(index, rng, tmp_path):
    index.save(tmp_path / "idx")
    loaded = ItemIndex.load(tmp_path / "idx", expect_dim=DIM, expect_model_hash="abc")
    queries = unit_rows(rng, 8)
    for got, want in zip(loaded.search(queries, 7), index.search(queries, 7)):
        np.testing.assert_array_equal(got, want)
    assert loaded.ids == index.ids and loaded.metadata == {"model_hash": "abc"} and loaded.factory == "Flat"
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("format", "factory", "dim", "count", "metric", "model_hash")} == {
        "format": 1, "factory": "Flat", "dim": DIM, "count": N, "metric": "inner_product", "model_hash": "abc",
    }
    assert manifest["created"].endswith("+00:00")
    assert manifest["index_sha256"] == sha256_file(tmp_path / "idx" / "index.faiss")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["ids.json", "index.faiss", "manifest.json"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_index_file_fails_the_checksum(index, tmp_path, damage):
    index.save(tmp_path)
    path = tmp_path / "index.faiss"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RetrievalError, match=r"index file .* is corrupt or truncated \(checksum mismatch"):
        ItemIndex.load(tmp_path)


def test_edited_ids_fail_the_checksum(index, tmp_path):
    index.save(tmp_path)
    ids = json.loads((tmp_path / "ids.json").read_text())
    ids[0], ids[1] = ids[1], ids[0]
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    with pytest.raises(RetrievalError, match=r"ids file .* is corrupt or truncated"):
        ItemIndex.load(tmp_path)


def test_load_refuses_a_mismatched_or_incomplete_folder(index, tmp_path):
    with pytest.raises(RetrievalError, match="index folder .*nowhere does not exist"):
        ItemIndex.load(tmp_path / "nowhere")
    index.save(tmp_path)
    with pytest.raises(RetrievalError, match=f"has dim {DIM}, expected 8"):
        ItemIndex.load(tmp_path, expect_dim=8)
    with pytest.raises(RetrievalError, match="index was built by another model .*'abc', expected 'other'"):
        ItemIndex.load(tmp_path, expect_model_hash="other")
    (tmp_path / "ids.json").unlink()
    with pytest.raises(RetrievalError, match="has no ids.json"):
        ItemIndex.load(tmp_path)


def test_load_refuses_a_broken_manifest(index, tmp_path):
    index.save(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(RetrievalError, match="manifest.json is not valid JSON"):
        ItemIndex.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "dim": DIM}))
    with pytest.raises(RetrievalError, match="lacks the keys"):
        ItemIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("queries", "k", "exclude", "match"),
    [
        (np.zeros((1, DIM)), 0, None, "k must be a positive integer, got 0"),
        (np.zeros((1, DIM)), 2.0, None, "k must be a positive integer"),
        (np.zeros((1, DIM)), N + 1, None, f"k={N + 1} exceeds the {N} items"),
        (np.zeros(DIM), 1, None, r"queries must be a 2-D \(n, d\) matrix, got shape \(16,\)"),
        (np.zeros((1, 8)), 1, None, f"queries has dimension 8, the index has dimension {DIM}"),
        (np.zeros((0, DIM)), 1, None, "queries is empty"),
        (np.full((1, DIM), np.nan), 1, None, "queries holds NaN"),
        (np.zeros((2, DIM)), 1, [np.array([1])], r"exclude has 1 entries, expected one per query \(2\)"),
        (np.zeros((1, DIM)), 1, [np.array([N])], rf"exclude\[0\] must lie in \[0, {N}\)"),
        (np.zeros((1, DIM)), 1, [np.array([0.5])], r"exclude\[0\] must be a 1-D array of integer"),
    ],
)
def test_bad_search_input_is_refused(index, queries, k, exclude, match):
    with pytest.raises(RetrievalError, match=match):
        index.search(queries, k, exclude=exclude)


def test_bad_build_and_add_input_is_refused(index, vectors):
    with pytest.raises(RetrievalError, match=r"ids must be unique; repeated: \['a'\]"):
        ItemIndex.build(vectors[:3], ["a", "b", "a"])
    with pytest.raises(RetrievalError, match="vectors has 3 rows but 2 ids"):
        ItemIndex.build(vectors[:3], ["a", "b"])
    with pytest.raises(RetrievalError, match="ids must be strings"):
        ItemIndex.build(vectors[:2], ["a", 2])
    with pytest.raises(RetrievalError, match="factory 'Nonsense' is not a FAISS index factory string"):
        ItemIndex.build(vectors, [str(i) for i in range(N)], factory="Nonsense")
    with pytest.raises(RetrievalError, match="must use METRIC_INNER_PRODUCT"):
        ItemIndex(faiss.IndexFlatL2(DIM), [])
    with pytest.raises(RetrievalError, match=r"metadata keys \['dim'\] are reserved"):
        ItemIndex.build(vectors[:1], ["a"], metadata={"dim": 3})
    with pytest.raises(RetrievalError, match=r"ids: 1 already in the index, e.g. \['item3'\]"):
        index.add(vectors[:2], ["new", "item3"])
    with pytest.raises(RetrievalError, match=f"vectors has dimension 4, the index has dimension {DIM}"):
        index.add(np.zeros((1, 4)), ["new"])
    with pytest.raises(RetrievalError, match=r"item_ids: 2 unknown ids, e.g. \['nope', 'nada'\]"):
        index.position(["item1", "nope", "nada"])
    with pytest.raises(RetrievalError, match=r"positions must lie in \[0, 300\)"):
        index.vectors(np.array([-1]))
    assert len(index) == N  # refused adds left the index as it was


def test_atomic_path_failure_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_writers_and_checksum(tmp_path):
    path = tmp_path / "sub" / "m.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]
