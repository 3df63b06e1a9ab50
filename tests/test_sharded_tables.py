"""Tables that no process holds whole: seeded rows drawn shard by shard, a plan refused before any table
memory exists, and one safetensors file streamed from the pieces each process holds."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config
from tandemrec.io.safetensors_stream import Layout, Piece
from tandemrec.towers.config import Cardinalities
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training import distributed
from tandemrec.training.checkpoint import Checkpoints, TrainState
from tandemrec.training.table_init import ROW_BLOCK, CarriedRows, TableInit


def test_seeded_rows_are_the_same_however_the_table_is_cut() -> None:
    init, key, shape = TableInit(seed=7), "user_tower.ebc.embedding_bags.user_id.weight", (2 * ROW_BLOCK + 37, 12)
    whole = torch.empty(shape)
    init.fill(key, shape, whole)
    rows = torch.cat([_filled(init, key, shape, (a, b), (0, 12)) for a, b in ((0, 5), (5, ROW_BLOCK + 3), (ROW_BLOCK + 3, shape[0]))])
    columns = torch.cat([_filled(init, key, shape, (0, shape[0]), (a, b)) for a, b in ((0, 4), (4, 12))], dim=1)
    assert torch.equal(rows, whole) and torch.equal(columns, whole)
    bound = (1.0 / shape[0]) ** 0.5
    assert whole.abs().max() <= bound and whole.std() > bound / 3  # TorchRec's default: uniform in +-sqrt(1/rows)
    other = torch.empty(shape)
    TableInit(seed=8).fill(key, shape, other)
    assert not torch.equal(other, whole)
    TableInit(seed=7).fill("item_tower.ebc.embedding_bags.item_id.weight", shape, other)
    assert not torch.equal(other, whole)  # each table draws its own rows


def test_carried_rows_replace_the_drawn_ones_in_the_shard_that_holds_them(tmp_path: Path) -> None:
    key, shape = "t", (10, 4)
    source = torch.arange(2 * ROW_BLOCK * 4 + 40, dtype=torch.float32).reshape(-1, 4)  # another run's table
    save_file({key: source}, str(tmp_path / "source.safetensors"))
    # Rows 0, 4 and 9 here take source rows 0, 2 * ROW_BLOCK + 5 and 3: read block by block, in any order.
    carried = CarriedRows(np.array([0, 4, 9]), np.array([0, 2 * ROW_BLOCK + 5, 3]), tmp_path / "source.safetensors", key)
    init = TableInit(seed=0, carried={key: carried})
    upper, lower = _filled(init, key, shape, (0, 5), (0, 4)), _filled(init, key, shape, (5, 10), (2, 4))
    assert torch.equal(upper[0], source[0]) and torch.equal(upper[4], source[2 * ROW_BLOCK + 5])
    assert torch.equal(lower[4], source[3, 2:])
    plain = _filled(TableInit(seed=0), key, shape, (0, 5), (0, 4))
    assert torch.equal(upper[1:4], plain[1:4])


def _filled(init: TableInit, key: str, shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    out = torch.empty(rows[1] - rows[0], cols[1] - cols[0])
    init.fill(key, shape, out, rows[0], cols[0])
    return out


def test_a_meta_model_is_sharded_with_seeded_rows_and_its_dense_weights_on_cpu() -> None:
    config = tiny_config().model
    config = dataclasses.replace(config, sizes=Cardinalities(users=50, items=30, categories=4))
    torch.manual_seed(0)
    model = TwoTower(config, device=torch.device("meta"), load_weights=False)
    assert all(t.is_meta for k, t in model.state_dict().items() if ".embedding_bags." in k)
    env = distributed.init("cpu")
    try:
        dmp, _ = distributed.shard(model, env, 0.1, "row_wise", init=TableInit(seed=3))
        state = dmp.state_dict()
        for key, value in state.items():
            if ".embedding_bags." in key:
                [shard] = value.local_shards()
                expected = torch.empty(tuple(value.size()))
                TableInit(seed=3).fill(key, tuple(value.size()), expected)
                assert torch.equal(shard.tensor, expected), key
    finally:
        distributed.shutdown(env)


def test_the_best_checkpoint_is_restored_into_the_sharded_model_and_kept_past_the_last_ones(tmp_path: Path) -> None:
    from torchrec.optim.keyed import CombinedOptimizer

    config = dataclasses.replace(tiny_config().model, sizes=Cardinalities(users=70_000, items=30, categories=4))
    model = TwoTower(config, device=torch.device("meta"), load_weights=False)
    env = distributed.init("cpu")
    try:
        dmp, _ = distributed.shard(model, env, 0.1, "row_wise", init=TableInit(seed=3))
        optimizer = CombinedOptimizer([dmp.fused_optimizer])
        checkpoints = Checkpoints(tmp_path, {}, keep=1)
        checkpoints.save(TrainState(epoch=2, best_epoch=1), dmp, optimizer, {})  # the end of epoch 1, the best
        best = {k: _local(v).clone() for k, v in dmp.state_dict().items()}
        with torch.no_grad():
            for value in dmp.state_dict().values():
                _local(value).add_(1.0)
        checkpoints.save(TrainState(epoch=3, best_epoch=1), dmp, optimizer, {})  # epoch 2, not better
        checkpoints.save(TrainState(epoch=4, best_epoch=1), dmp, optimizer, {})
        assert [p.name for p in checkpoints._complete()] == ["epoch0002-step0000000", "epoch0004-step0000000"]
        checkpoints.restore_model(checkpoints.best(1), dmp)
        for key, value in dmp.state_dict().items():  # 70K rows: the user table is saved in several blocks
            assert torch.equal(_local(value), best[key]), key
    finally:
        distributed.shutdown(env)


def _local(value) -> torch.Tensor:
    """A state entry's own memory: its one local shard, or itself."""
    return value.local_shards()[0].tensor if hasattr(value, "local_shards") else value


def test_a_plan_over_the_memory_per_process_is_refused_before_any_table_is_allocated() -> None:
    config = tiny_config().model
    # 2 billion rows x 16 dims: 119 GiB, which this machine could never allocate.
    config = dataclasses.replace(config, sizes=Cardinalities(users=2_000_000_000, items=30, categories=4))
    model = TwoTower(config, device=torch.device("meta"), load_weights=False)
    env = distributed.init("cpu")
    try:
        with pytest.raises(distributed.ShardingError) as refused:
            distributed.shard(model, env, 0.1, "row_wise", max_memory=4 * 2**30)
    finally:
        distributed.shutdown(env)
    message = str(refused.value)
    assert "1 process(es) on cpu with 4.00 GiB each" in message
    assert "largest tables (without optimizer state): user_tower.ebc.embedding_bags.user_id.weight 119.21 GiB" in message
    assert "Global storage requirement for model parallel: Storage(hbm = 0.0 GB, ddr = 126.66 GB)." in message
    assert "train.max_memory_per_process" in message and "--nproc_per_node" in message


def test_max_memory_per_process_must_be_a_size() -> None:
    assert tiny_config("train.max_memory_per_process=1.5GiB").train.max_memory_bytes() == 3 * 2**29
    with pytest.raises(ValueError, match="max_memory_per_process' must be a size such as"):
        tiny_config("train.max_memory_per_process=lots")


def test_pieces_written_in_place_make_a_safetensors_file_that_safetensors_reads(tmp_path: Path) -> None:
    table = torch.randn(1000, 6)
    tensors = {
        "table": table,
        "scalar": torch.tensor(1.5),
        "ids": torch.arange(7, dtype=torch.int64),
        "half": torch.randn(3, 2).to(torch.bfloat16),
        "flags": torch.tensor([True, False, True]),
    }
    layout = Layout.of({k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}, {"format": "pt"})
    path = tmp_path / "model.safetensors"
    layout.create(path)
    # Two "processes": one holds rows 0..599 whole, the other rows 600.. in two column pieces.
    layout.write(path, [Piece("table", (0, 0), table[:600]), Piece("scalar", (), tensors["scalar"])])
    layout.write(
        path,
        [Piece("table", (600, 0), table[600:, :2]), Piece("table", (600, 2), table[600:, 2:])]
        + [Piece(k, (0,) * v.dim(), v) for k, v in tensors.items() if k in ("ids", "half", "flags")],
    )
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value), key
    assert path.stat().st_size == layout.size


def test_a_piece_that_does_not_fit_its_tensor_is_refused(tmp_path: Path) -> None:
    layout = Layout.of({"table": ((10, 4), torch.float32)})
    layout.create(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"piece of 'table' at \(8, 0\) with shape \(4, 4\).*does not fit"):
        layout.write(tmp_path / "w.safetensors", [Piece("table", (8, 0), torch.zeros(4, 4))])
    with pytest.raises(ValueError, match="does not fit"):
        layout.write(tmp_path / "w.safetensors", [Piece("table", (0, 0), torch.zeros(2, 4, dtype=torch.float64))])
