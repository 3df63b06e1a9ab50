"""A saved model loaded by a job's processes with its tables sharded over them: each shard read from the
file a block of rows at a time, the dense weights read without the tables, the same model as a whole
load, and a file that does not match its config refused with what differs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config
from tandemrec.towers.config import Cardinalities
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training import distributed, table_init
from tandemrec.training.sharded_model import held_rows, load_sharded
from tandemrec.training.table_init import SavedTables


def test_a_shard_is_read_from_the_saved_table_across_row_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_init, "ROW_BLOCK", 3)
    table = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    save_file({"t": table}, str(tmp_path / "w.safetensors"))
    saved = SavedTables(tmp_path / "w.safetensors")
    out = torch.empty(7, 2)
    saved.fill("t", (10, 4), out, 2, 1)  # rows 2..8, columns 1..2: three blocks
    assert torch.equal(out, table[2:9, 1:3])
    with pytest.raises(EncoderLoadError, match=r"w.safetensors' have no table u"):
        saved.fill("u", (10, 4), out)
    with pytest.raises(EncoderLoadError, match=r"table t in '.*w.safetensors' is \[10, 4\], the model's config says \[12, 4\]"):
        saved.fill("t", (12, 4), out)


def _saved_model(folder: Path) -> TwoTower:
    config = dataclasses.replace(tiny_config().model, sizes=Cardinalities(users=50, items=30, categories=4))
    torch.manual_seed(0)
    model = TwoTower(config, load_weights=False).eval()
    with torch.no_grad():
        model.item_tower.new_item_offset.normal_()  # a buffer the sharding wrapper materialises afresh
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("sharding", ["table_wise", "row_wise"])
def test_a_saved_model_loads_sharded_with_every_tensor_as_saved(tmp_path: Path, sharding: str) -> None:
    whole = _saved_model(tmp_path / "model")
    train = dataclasses.replace(tiny_config().train, sharding=sharding)
    env = distributed.init("cpu")
    try:
        model, _ = load_sharded(tmp_path / "model", train)
        state = model.state_dict()
        for key, expected in whole.state_dict().items():
            value = state[key]
            held = value.local_shards()[0].tensor if distributed.is_table(key) else value
            assert torch.equal(held, expected), key
        assert not model.training
        assert "user_id rows 0-50 of 50" in held_rows(model) and "item_id rows 0-30 of 30" in held_rows(model)
    finally:
        distributed.shutdown(env)


def test_a_saved_model_that_does_not_match_its_config_is_refused_naming_what_differs(tmp_path: Path) -> None:
    _saved_model(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    env = distributed.init("cpu")
    try:
        save_file({**tensors, "stray": torch.zeros(2)}, str(weights))
        with pytest.raises(EncoderLoadError, match=r"do not match .*config.json: missing \[\], unexpected \['stray'\]"):
            load_sharded(tmp_path / "model", tiny_config().train)
        save_file(tensors, str(weights))
        config = json.loads((tmp_path / "model" / "config.json").read_text())
        config["sizes"]["users"] = 60
        (tmp_path / "model" / "config.json").write_text(json.dumps(config))
        with pytest.raises(EncoderLoadError, match=r"user_id.weight in .* is \[50, 16\], the model's config says \[60, 16\]"):
            load_sharded(tmp_path / "model", tiny_config().train)
    finally:
        distributed.shutdown(env)
