"""`index`, `export` and `evaluate` launched under torchrun: the processes embed together and the files
and metrics are those of a single process."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_ok, torchrun
from tandemrec.retrieval.embeddings import FORMATS, read_embeddings
from tandemrec.retrieval.index import ItemIndex

pytestmark = [pytest.mark.slow, pytest.mark.distributed]  # torchrun subprocesses


def _torchrun(n: int, *argv: str) -> subprocess.CompletedProcess:
    """`tandemrec ARGV` launched by torchrun on n processes; it must succeed."""
    return run_ok(torchrun(n, "-m", "tandemrec.cli", *argv))


def _jobs(n: int, run: Path) -> str:
    """index, export (Parquet and .npy) and evaluate of `run` on n processes; the output of process 0."""
    verbs = (["index"], ["export", "--format", "parquet,npy"], ["evaluate"])
    return "".join(_torchrun(n, *verb, str(run)).stdout for verb in verbs)


def _leaves(tree: dict, prefix: str = "") -> dict:
    """A nested metrics dict as {"a/b/c": leaf}."""
    out = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _without_times(manifest: dict) -> dict:
    return {key: {k: v for k, v in entry.items() if k != "created"} for key, entry in manifest.items()}


def test_two_processes_write_the_files_and_metrics_of_one(trained_run: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for run in (one, two):
        shutil.copytree(trained_run, run)
        for made in ("index", "embeddings", "search", "metrics.json"):  # what the jobs below write again
            target = run / made
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

    printed = {n: _jobs(n, run) for n, run in ((1, one), (2, two))}

    for name in ("items.parquet", "users.parquet", "items.npy", "users.npy", "items.ids.json", "users.ids.json"):
        assert (one / "embeddings" / name).read_bytes() == (two / "embeddings" / name).read_bytes(), name
    manifests = [json.loads((run / "embeddings" / "manifest.json").read_text()) for run in (one, two)]
    assert _without_times(manifests[0]) == _without_times(manifests[1])
    ids, vectors, _ = read_embeddings(two / "embeddings", "users")
    assert len(ids) == 300 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    indexes = [ItemIndex.load(run / "index") for run in (one, two)]
    assert np.array_equal(indexes[0].vectors(np.arange(len(indexes[0]))), indexes[1].vectors(np.arange(len(indexes[1]))))
    assert indexes[0].metadata["recall_at_10"] == indexes[1].metadata["recall_at_10"]
    assert json.loads((one / "metrics.json").read_text()) == json.loads((two / "metrics.json").read_text())
    for name in ("weights.json", "text_features.npy"):  # the search state, chosen on validation events
        assert (one / "search" / name).read_bytes() == (two / "search" / name).read_bytes(), name
    # Process 0 alone prints: one "indexed ..." line and one metrics table, as on one process.
    assert printed[2].count("indexed ") == 1 and printed[2].count("recall@10") == printed[1].count("recall@10") > 0


def test_an_export_in_shards_deals_the_users_out_and_writes_the_files_of_one_process(
    trained_run: Path, tmp_path: Path
) -> None:
    """With --shard-rows, each process embeds and writes only its own users' shards (none holds every
    user's vector), and the files and manifest are a single process's."""
    runs, logged = {}, {}
    for n in (1, 2):
        runs[n] = tmp_path / f"run{n}"
        shutil.copytree(trained_run, runs[n])
        shutil.rmtree(runs[n] / "embeddings", ignore_errors=True)
        logged[n] = _torchrun(n, "export", str(runs[n]), "--format", ",".join(FORMATS), "--shard-rows", "64").stderr
    # 300 users in shards of 64: five, dealt 0, 2, 4 to process 0 and 1, 3 to process 1.
    assert "process 0 of 2 embeds and writes shards [0, 2, 4] of 5 (172 of 300 rows)" in logged[2]
    assert "process 1 of 2 embeds and writes shards [1, 3] of 5 (128 of 300 rows)" in logged[2]
    one, two = runs[1] / "embeddings", runs[2] / "embeddings"
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    assert "users-00004-of-00005.parquet" in names and "users-00004-of-00005.ids.json" in names
    for name in names:
        if not name.endswith((".safetensors", "manifest.json")):  # those two hold the export's time
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
    manifests = [_without_times(json.loads((folder / "manifest.json").read_text())) for folder in (one, two)]
    for manifest in manifests:  # a safetensors file's checksum covers its time too
        for entry in manifest.values():
            entry["sha256"] = {k: v for k, v in entry["sha256"].items() if not k.endswith(".safetensors")}
    assert manifests[0] == manifests[1]
    for fmt in FORMATS:
        for what in ("items", "users"):
            ids, vectors, _ = read_embeddings(one, what, fmt)  # checksums and counts against the manifest
            ids2, vectors2, _ = read_embeddings(two, what, fmt)
            assert ids == ids2 and np.array_equal(vectors, vectors2)


def test_index_export_and_evaluate_on_two_processes_with_row_wise_tables_hold_half_of_each_and_match_one(
    trained_run: Path, tmp_path: Path
) -> None:
    """The processes load the model with its tables sharded as the run's `train.sharding` says (row-wise
    here): each reads and holds only its rows of the user table, and the vectors and metrics are a whole
    model's."""
    from tandemrec.run import Run
    from tandemrec.run_embeddings import embed_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for made in ("index", "embeddings", "search", "metrics.json"):
        target = run / made
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    config = json.loads((run / "config.json").read_text())
    config["train"]["sharding"] = "row_wise"
    (run / "config.json").write_text(json.dumps(config))
    for verb in (["index"], ["export", "--format", "npy", "--shard-rows", "64"], ["evaluate"]):
        done = _torchrun(2, *verb, str(run))
        held = dict(re.findall(r"process (\d) of 2 holds user_id rows (\d+-\d+) of 301", done.stderr))
        assert sorted(held.items()) == [("0", "0-151"), ("1", "151-301")], f"{verb}: {done.stderr[-3000:]}"

    whole = embed_run(Run(run))
    ids, vectors, _ = read_embeddings(run / "embeddings", "users", "npy")
    assert ids == whole.user_ids and np.allclose(vectors, whole.users, atol=1e-6)
    ids, vectors, _ = read_embeddings(run / "embeddings", "items", "npy")
    assert ids == whole.item_ids and np.allclose(vectors, whole.items, atol=1e-6)
    index = ItemIndex.load(run / "index")
    assert np.allclose(index.vectors(np.arange(len(index))), whole.items, atol=1e-6)
    assert json.loads((run / "search" / "weights.json").read_text())["validation"]["queries"] > 0
    sharded = json.loads((run / "metrics.json").read_text())
    run_ok([sys.executable, "-m", "tandemrec.cli", "evaluate", str(run)])  # alone: the whole model, one thread as each above
    alone = json.loads((run / "metrics.json").read_text())
    assert {"behaviour", "search", "baseline_settings"} <= sharded.keys()
    flat, whole = _leaves(sharded), _leaves(alone)
    assert flat.keys() == whole.keys()
    for key, value in flat.items():
        assert value == (pytest.approx(whole[key], abs=1e-6) if isinstance(value, float) else whole[key]), key
