"""Checkpoints and sharding plans in one process: resuming, and every way a resume or plan can be refused."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from tandemrec.jobs import train
from tandemrec.run_lock import LOCK_FILE
from tandemrec.training.checkpoint import CheckpointError

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds


def snapshot(folder: Path) -> dict[str, str]:
    """Every artifact's hash; the run's lock file says only who last held the run."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def test_a_run_keeps_its_latest_checkpoints_and_plan(trained_run: Path) -> None:
    names = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert names == ["epoch0002-step0000000", "epoch0003-step0000000"]  # one per epoch, the last two kept
    meta = json.loads((trained_run / "checkpoints" / names[-1] / "meta.json").read_text())
    assert meta["state"]["epoch"] == 3 and len(meta["state"]["history"]) == 2 and meta["world_size"] == 1
    assert set(meta["files"]) >= {".metadata"}
    plan = json.loads((trained_run / "sharding_plan.json").read_text())
    assert plan["world_size"] == 1 and {t["sharding_type"] for t in plan["tables"]} == {"table_wise"}


def test_resume_continues_where_the_run_stopped(run_copy: Path) -> None:
    before = [json.loads(line) for line in (run_copy / "train_metrics.jsonl").read_text().splitlines()]
    result = train(tiny_config("train.epochs=3"), run_copy, progress=False, resume=True)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert result.history[:2] == before  # the first two epochs are not run again
    assert (run_copy / "checkpoints" / "epoch0004-step0000000").is_dir()


def test_checkpoint_from_another_model_config_is_refused_and_nothing_is_written(run_copy: Path) -> None:
    before = snapshot(run_copy)
    with pytest.raises(CheckpointError, match=r"another configuration.*model\.dim: 32 -> 16"):
        train(tiny_config("model.dim=16"), run_copy, progress=False, resume=True)
    assert snapshot(run_copy) == before


def test_corrupted_checkpoint_file_is_named_and_nothing_is_written(run_copy: Path) -> None:
    latest = sorted((run_copy / "checkpoints").iterdir())[-1]
    shard = next(p for p in latest.iterdir() if p.suffix == ".distcp")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    before = snapshot(run_copy)
    with pytest.raises(CheckpointError, match=f"'{shard}' is corrupted"):
        train(tiny_config(), run_copy, progress=False, resume=True)
    assert snapshot(run_copy) == before


def test_resume_without_a_checkpoint_is_a_clear_error(run_copy: Path) -> None:
    shutil.rmtree(run_copy / "checkpoints")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        train(tiny_config(), run_copy, progress=False, resume=True)
    with pytest.raises(CheckpointError, match="has no dataset"):
        train(tiny_config(), run_copy / "elsewhere", progress=False, resume=True)


def test_a_half_written_checkpoint_is_never_resumed(run_copy: Path) -> None:
    from tandemrec.jobs import fingerprint
    from tandemrec.training.checkpoint import Checkpoints

    checkpoints = Checkpoints(run_copy / "checkpoints", fingerprint(tiny_config()))
    latest = checkpoints.latest()
    (run_copy / "checkpoints" / ".epoch0009-step0000000.tmp").mkdir()  # what a killed save leaves
    assert checkpoints.latest() == latest


def test_tables_that_cannot_fit_in_this_many_processes_are_refused() -> None:
    from tandemrec.towers.config import Cardinalities
    from tandemrec.towers.two_tower import TwoTower
    from tandemrec.training import distributed

    config = tiny_config().model
    huge = dataclasses.replace(config, sizes=Cardinalities(users=4_000_000_000, items=100, categories=5, user_attributes={}))
    model = TwoTower(huge, device=torch.device("meta"))  # nothing allocated
    env = distributed.init("cpu")
    try:
        with pytest.raises(distributed.ShardingError, match=r"over 1 process\(es\) on cpu .*insufficient storage.*--nproc_per_node"):
            distributed.shard(model, env, 0.05)
        with pytest.raises(distributed.ShardingError, match=r"tables the model does not have: \['users'\]"):
            distributed.shard(model, env, 0.05, "table_wise", {"users": "row_wise"})
        with pytest.raises(distributed.ShardingError, match="'diagonal' is not one of"):
            distributed.shard(model, env, 0.05, "diagonal")
        with pytest.raises(distributed.ShardingError, match="data_parallel tables are not trained on CPU"):
            distributed.shard(model, env, 0.05, "table_wise", {"category": "data_parallel"})
    finally:
        distributed.shutdown(env)
