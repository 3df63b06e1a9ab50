"""Embedding export in Parquet, .npy and safetensors: read back equals the model, manifests are checked,
and the `export`, `index` and `search` verbs do what they say."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tandemrec.cli import main
from tandemrec.config import read_run_config
from tandemrec.data.dataset import Dataset
from tandemrec.data.prepared import prepare
from tandemrec.export_job import export_run
from tandemrec.retrieval.embeddings import FORMATS, export_embeddings, read_embeddings
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.retriever import Retriever
from tandemrec.towers.serialization import model_hash
from tandemrec.towers.text_encoder import load_tokenizer, make_tokenize
from tandemrec.towers.two_tower import TwoTower

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

ATOL = 1e-5


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """A copy of the trained run with items and users exported in every format."""
    run = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("shop"))
    export_run(run, ("items", "users"), FORMATS)
    return run


@pytest.fixture(scope="module")
def model_vectors(exported):
    """Item vectors from the model's item tower on the catalogue's content, user vectors from its user tower."""
    model = TwoTower.from_pretrained(exported / "model")
    config = read_run_config(exported / "config.json")
    data = prepare(Dataset.load(exported / "dataset"), config.data.split, model.config.user.history_len)
    tokenize = make_tokenize(load_tokenizer(str(exported / "model" / "tokenizer")))
    content = data.content(tokenize, model.config.item.text.max_length, model.item_tower.image.image_size)
    with torch.no_grad():
        items = torch.cat([model.item_tower(batch) for batch in content.batches(64)]).numpy()
    user_ids = data.vocabs.users.ids[1:]
    users = Retriever.load(exported).user_vectors(user_ids)
    return {"items": (data.vocabs.items.ids[1:], items), "users": (user_ids, users)}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("what", ["items", "users"])
def test_export_read_back_equals_the_model(exported, model_vectors, what, fmt):
    ids, vectors, entry = read_embeddings(exported / "embeddings", what, fmt)
    want_ids, want = model_vectors[what]
    assert ids == want_ids and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, want, atol=ATOL)
    assert entry["model_hash"] == model_hash(exported / "model") and entry["format"] == fmt
    assert entry["count"] == len(ids) and entry["dim"] == want.shape[1] and entry["normalized"] is True
    assert entry["metric"] == "inner_product" and entry["dtype"] == "float32" and entry["created"].endswith("+00:00")


def test_manifest_has_one_entry_per_file_with_checksums(exported):
    manifest = json.loads((exported / "embeddings" / "manifest.json").read_text())
    assert {f"{w}.{f}" for w in ("items", "users") for f in FORMATS} <= set(manifest)
    assert set(manifest["items.npy"]["sha256"]) == {"items.npy", "items.ids.json"}
    assert set(manifest["users.safetensors"]["sha256"]) == {"users.safetensors", "users.ids.json"}
    assert set(manifest["items.parquet"]["sha256"]) == {"items.parquet"}


@pytest.fixture
def folder(exported, tmp_path):
    dest = tmp_path / "embeddings"
    shutil.copytree(exported / "embeddings", dest)
    return dest


@pytest.mark.parametrize("name", ["items.npy", "items.safetensors", "items.ids.json"])
def test_a_changed_or_truncated_file_fails_its_checksum(folder, name):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) - 7])
    fmt = "npy" if name == "items.ids.json" else name.split(".")[1]
    with pytest.raises(RetrievalError, match=f"'{folder / name}' does not match its manifest checksum"):
        read_embeddings(folder, "items", fmt)


def test_a_manifest_that_disagrees_with_the_data_is_refused(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["users.npy"]["count"] += 1
    manifest["users.safetensors"]["dim"] = 3
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match=r"users.npy': \d+ ids and \d+ x \d+ vectors, manifest says"):
        read_embeddings(folder, "users", "npy")
    with pytest.raises(RetrievalError, match=r"manifest says \d+ x 3"):
        read_embeddings(folder, "users", "safetensors")
    with pytest.raises(RetrievalError, match="has no entry for 'users' in format 'parquet'"):
        (folder / "manifest.json").write_text(json.dumps({}))
        read_embeddings(folder, "users", "parquet")
    with pytest.raises(RetrievalError, match="format must be one of"):
        read_embeddings(folder, "users", "csv")


def test_a_false_normalisation_claim_is_caught(tmp_path):
    export_embeddings(tmp_path, "items", ["a", "b"], np.array([[3.0, 4.0], [0.6, 0.8]]), "hash", ("npy",))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["items.npy"]["normalized"] is False
    manifest["items.npy"]["normalized"] = True
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="the manifest says the vectors are L2-normalised, they are not"):
        read_embeddings(tmp_path, "items", "npy")
    with pytest.raises(RetrievalError, match=r"export formats must be among .*got \['csv'\]"):
        export_embeddings(tmp_path, "items", ["a"], np.ones((1, 2)), "hash", ("csv",))


def _unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_shards_hold_at_most_shard_rows_and_read_back_whole(tmp_path, fmt):
    ids, vectors = [f"u{i}" for i in range(10)], _unit_rows(10)
    segment = (np.arange(10) % 3, "a column")
    written = export_embeddings(tmp_path, "users", ids, vectors, "hash", (fmt,), {"segment": segment}, shard_rows=4)
    stems = [f"users-0000{i}-of-00003" for i in range(3)]
    assert [p.name for p in written] == [f"{stem}.{fmt}" for stem in stems]
    entry = json.loads((tmp_path / "manifest.json").read_text())[f"users.{fmt}"]
    assert entry["files"] == [p.name for p in written] and entry["shard_rows"] == 4 and entry["count"] == 10
    assert set(entry["sha256"]) == {p.name for p in written} | (set() if fmt == "parquet" else {f"{s}.ids.json" for s in stems})
    got_ids, got, _ = read_embeddings(tmp_path, "users", fmt)
    assert got_ids == ids and np.array_equal(got, vectors)
    if fmt == "parquet":
        import polars as pl

        shards = [pl.read_parquet(p) for p in written]
        assert [s.height for s in shards] == [4, 4, 2]
        assert shards[2]["segment"].to_list() == [2, 0] and shards[2]["id"].to_list() == ["u8", "u9"]


def test_a_new_export_removes_the_files_of_another_sharding(tmp_path):
    ids, vectors = [f"i{i}" for i in range(5)], _unit_rows(5)
    export_embeddings(tmp_path, "items", ids, vectors, "hash", ("npy",), shard_rows=2)
    export_embeddings(tmp_path, "users", ids, vectors, "hash", ("npy",), shard_rows=2)
    assert len(list(tmp_path.glob("items-*.npy"))) == 3
    export_embeddings(tmp_path, "items", ids, vectors, "hash", ("npy",))  # one file again
    assert sorted(p.name for p in tmp_path.glob("items*")) == ["items.ids.json", "items.npy"]
    assert len(list(tmp_path.glob("users-*"))) == 6  # another export's shards are not touched
    export_embeddings(tmp_path, "items", ids, vectors, "hash", ("npy",), shard_rows=4)
    assert sorted(p.name for p in tmp_path.glob("items*.npy")) == ["items-00000-of-00002.npy", "items-00001-of-00002.npy"]
    assert read_embeddings(tmp_path, "items", "npy")[0] == ids


def test_a_missing_or_changed_shard_is_named(tmp_path):
    ids, vectors = [f"i{i}" for i in range(5)], _unit_rows(5)
    export_embeddings(tmp_path, "items", ids, vectors, "hash", ("parquet",), shard_rows=2)
    second = tmp_path / "items-00001-of-00003.parquet"
    second.write_bytes(second.read_bytes()[:-5])
    with pytest.raises(RetrievalError, match=f"'{second}' does not match its manifest checksum"):
        read_embeddings(tmp_path, "items", "parquet")
    second.unlink()
    with pytest.raises(RetrievalError, match=f"embedding file '{second}' is missing"):
        read_embeddings(tmp_path, "items", "parquet")
    with pytest.raises(RetrievalError, match="shard_rows must be 0 .* got -1"):
        export_embeddings(tmp_path, "items", ids, vectors, "hash", ("parquet",), shard_rows=-1)


def test_export_verb_writes_the_asked_files(exported, capsys):
    assert main(["export", str(exported), "--what", "users", "--format", "npy,safetensors"]) == 0
    out = capsys.readouterr().out
    assert "users.npy" in out and "users.safetensors" in out and "items" not in out
    assert main(["export", str(exported), "--what", "things"]) == 2
    assert "what must name some of ['items', 'users']" in capsys.readouterr().err


def test_export_verb_writes_shards(exported, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    assert main(["export", str(run), "--what", "users", "--shard-rows", "100"]) == 0
    out = capsys.readouterr().out.split()
    assert [Path(p).name for p in out] == [f"users-0000{i}-of-00003.parquet" for i in range(3)]  # 300 users
    assert not (run / "embeddings" / "users.parquet").exists()
    assert main(["export", str(run), "--shard-rows", "-5"]) == 2
    assert "shard_rows must be 0 (one file) or a positive row count, got -5" in capsys.readouterr().err


def test_index_verb_builds_the_asked_kind_and_reports_recall(exported, capsys):
    assert main(["index", str(exported), "--kind", "hnsw"]) == 0
    assert "kind hnsw" in capsys.readouterr().out
    manifest = json.loads((exported / "index" / "manifest.json").read_text())
    assert manifest["kind"] == "hnsw" and manifest["recall_at_10"] >= 0.95 and "efSearch" in manifest["search"]
    retriever = Retriever.load(exported)
    assert len(retriever.recommend(retriever.vocabs.users.ids[1], 10)) == 10
    assert main(["index", str(exported), "--kind", "ivf", "--nprobe", "1", "--min-recall", "1.0"]) == 2
    assert "below index.min_recall=1.0" in capsys.readouterr().err
    assert json.loads((exported / "index" / "manifest.json").read_text())["kind"] == "hnsw"  # left as it was


def test_search_verb_prints_the_matches(exported, capsys):
    assert main(["search", str(exported), "brass lamp", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| rank | title") and len(out.strip().splitlines()) == 2 + 3  # header, rule, 3 rows
    assert main(["search", str(exported), "   "]) == 2
    assert "text must be a non-empty string" in capsys.readouterr().err
