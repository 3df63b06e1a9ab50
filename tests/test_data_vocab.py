import json

import numpy as np
import polars as pl
import pytest

from tandemrec.data import DataError, Vocabulary


def test_build_is_sorted_unique_and_order_independent():
    vocab = Vocabulary.build(["pear", "apple", "fig", "apple"], name="items")
    assert vocab.ids == ["<unk>", "apple", "fig", "pear"]
    assert len(vocab) == 4
    assert Vocabulary.build(["fig", "pear", "apple"], name="items").ids == vocab.ids
    assert "fig" in vocab and "kiwi" not in vocab and "<unk>" not in vocab
    assert vocab.name == "items"
    assert Vocabulary.UNKNOWN == 0


@pytest.mark.parametrize("kind", [list, np.array, pl.Series])
def test_encode_decode_round_trip(kind):
    vocab = Vocabulary.build(["pear", "apple", "fig"], name="items")
    indices = vocab.encode(kind(["fig", "pear", "fig", "apple"]))
    assert indices.dtype == np.int64
    assert indices.tolist() == [2, 3, 2, 1]
    assert vocab.decode(indices) == ["fig", "pear", "fig", "apple"]
    assert vocab.encode([]).tolist() == []


def test_encode_matches_a_dict_on_many_rows():
    rng = np.random.default_rng(0)
    ids = [f"item{i}" for i in range(5000)]
    vocab = Vocabulary.build(ids, name="items")
    queries = np.array(ids)[rng.integers(0, len(ids), 100_000)]
    lookup = {id_: index for index, id_ in enumerate(vocab.ids)}
    assert vocab.encode(queries).tolist() == [lookup[q] for q in queries]


def test_unknown_ids_raise_with_name_examples_and_count():
    vocab = Vocabulary.build(["a", "b"], name="users")
    unknown = ["x1", "a", "x2", "x3", "x4", "x5", "x6", "x1"]
    with pytest.raises(DataError) as error:
        vocab.encode(unknown)
    message = str(error.value)
    assert "'users'" in message and "7 of 8 ids are unknown" in message
    assert "'x1', 'x2', 'x3', 'x4', 'x5'" in message and "x6" not in message
    assert vocab.encode(unknown, unknown="zero").tolist() == [0, 1, 0, 0, 0, 0, 0, 0]
    assert vocab.encode(np.array(["b", None], dtype=object), unknown="zero").tolist() == [2, 0]
    with pytest.raises(ValueError, match="unknown must be"):
        vocab.encode(["a"], unknown="skip")


def test_decode_refuses_indices_out_of_range():
    vocab = Vocabulary.build(["a"], name="cats")
    assert vocab.decode([0, 1]) == ["<unk>", "a"]
    with pytest.raises(DataError, match=r"'cats'.*\[2, -1\] out of range 0..1"):
        vocab.decode([1, 2, -1])


def test_build_refuses_reserved_and_null_ids():
    with pytest.raises(DataError, match="reserved"):
        Vocabulary.build(["a", "<unk>"], name="items")
    with pytest.raises(DataError, match="1 null ids"):
        Vocabulary.build(["a", None], name="items")


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.build(["b", "é", "a"], name="items")
    path = tmp_path / "sub" / "items.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded.ids == vocab.ids and loaded.name == "items"
    assert loaded.encode(["é"]).tolist() == [3]
    assert [p.name for p in path.parent.iterdir()] == ["items.json"]


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"name": "x"}), json.dumps({"name": "x", "ids": ["a", "a"]}), json.dumps([1])],
)
def test_load_refuses_bad_files(tmp_path, content):
    path = tmp_path / "v.json"
    path.write_text(content)
    with pytest.raises(DataError, match=str(path)):
        Vocabulary.load(path)
