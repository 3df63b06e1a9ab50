"""Bad configs are refused once, where they are built, with a ConfigError that names the key path, the
value and what is allowed; from a TOML file, a `--set` override and Python alike. Valid edge values and
every shipped config still load. Nothing here trains."""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest

from tandemrec.config import DataConfig, RunConfig, load_config, override_section, read_run_config
from tandemrec.config_schema import from_dict, to_dict
from tandemrec.data.split import SplitConfig
from tandemrec.errors import ConfigError, TandemrecError
from tandemrec.retrieval.config import IndexConfig
from tandemrec.towers.config import Cardinalities, ItemTowerConfig, TwoTowerConfig, UserTowerConfig
from tandemrec.training.behaviour_config import BehaviourConfig
from tandemrec.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
SHARDINGS = (
    "['table_wise', 'column_wise', 'row_wise', 'table_row_wise', 'table_column_wise', 'grid_shard', "
    "'data_parallel']"
)


def refusal(build, *args) -> str:
    """The message of the ConfigError that `build(*args)` raises."""
    with pytest.raises(ConfigError) as caught:
        build(*args)
    return str(caught.value)


def toml_file(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "override, message",
    [
        # ranges
        ("train.lr=-0.01", "config key 'train.lr' must be a number > 0, got -0.01"),
        ("train.lr=0", "config key 'train.lr' must be a number > 0, got 0"),
        ("model.dim=0", "config key 'model.dim' must be an integer >= 1, got 0"),
        ("model.temperature=-1", "config key 'model.temperature' must be a number > 0, got -1"),
        ("train.batch_size=0", "config key 'train.batch_size' must be an integer >= 1, got 0"),
        ("train.patience=-1", "config key 'train.patience' must be an integer >= 0, got -1"),
        ("train.seed=-1", "config key 'train.seed' must be an integer >= 0, got -1"),
        ("train.backbone_lr_decay=1.5", "config key 'train.backbone_lr_decay' must be a number in (0, 1], got 1.5"),
        ("model.item.modality_dropout=1", "config key 'model.item.modality_dropout' must be a number in [0, 1), got 1"),
        ("model.item.id_dropout=-0.1", "config key 'model.item.id_dropout' must be a number in [0, 1), got -0.1"),
        ("model.item.text.max_length=0", "config key 'model.item.text.max_length' must be an integer >= 1, got 0"),
        (
            "model.item.image.trainable_blocks=-2",
            "config key 'model.item.image.trainable_blocks' must be an integer >= -1, got -2",
        ),
        ("index.min_recall=1.5", "config key 'index.min_recall' must be a number in [0, 1], got 1.5"),
        ("index.memory_fraction=0", "config key 'index.memory_fraction' must be a number in (0, 1], got 0"),
        ("index.nprobe=0", "config key 'index.nprobe' must be an integer >= 1 or unset, got 0"),
        ("data.split.test_fraction=1.0", "config key 'data.split.test_fraction' must be a number in [0, 1), got 1.0"),
        ("data.split.valid_last=-1", "config key 'data.split.valid_last' must be an integer >= 0, got -1"),
        (
            "data.domains.train_target_fraction=2",
            "config key 'data.domains.train_target_fraction' must be a number in [0, 1], got 2",
        ),
        (
            "behaviour.popular_negatives=-0.5",
            "config key 'behaviour.popular_negatives' must be a number in [0, 1], got -0.5",
        ),
        ("eval.examples=-1", "config key 'eval.examples' must be an integer >= 0, got -1"),
        # types
        ("train.epochs=abc", "config key 'train.epochs' must be an integer >= 1, got 'abc'"),
        ("train.epochs=1.5", "config key 'train.epochs' must be an integer >= 1, got 1.5"),
        ("train.epochs=true", "config key 'train.epochs' must be an integer >= 1, got True"),
        ("train.lr=fast", "config key 'train.lr' must be a number > 0, got 'fast'"),
        ("train.logq=1", "config key 'train.logq' must be true or false, got 1"),
        ("data.path=3", "config key 'data.path' must be a string or unset, got 3"),
        ("data.events=[1, 2]", "config key 'data.events' must be a list of strings or unset, got [1, 2]"),
        (
            "model.item.image.pretrained=false",
            "config key 'model.item.image.pretrained' must be a string or unset, got False",
        ),
        # list and table elements
        (
            "model.user.hidden=[32, 0]",
            "config key 'model.user.hidden' must be a list of integers, each >= 1, got [32, 0]",
        ),
        (
            "model.user.hidden=[32, 1.5]",
            "config key 'model.user.hidden' must be a list of integers, each >= 1, got [32, 1.5]",
        ),
        ("model.user.hidden=32", "config key 'model.user.hidden' must be a list of integers, each >= 1, got 32"),
        ("eval.ks=[0]", "config key 'eval.ks' must be a list of integers, each >= 1, got [0]"),
        ("eval.ks=[]", "config key 'eval.ks' must be a non-empty list of integers, each >= 1, got []"),
        (
            "model.sizes.user_attributes={age=0}",
            "config key 'model.sizes.user_attributes' must be a table of integers, each >= 1, got {'age': 0}",
        ),
    ],
)
def test_bad_value_through_set(override, message):
    assert refusal(load_config, None, [override]) == message


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.item.fusion=sum", "config key 'model.item.fusion' must be one of ['concat', 'gated'], got 'sum'"),
        (
            "model.item.text.pooling=max",
            "config key 'model.item.text.pooling' must be one of ['mean', 'cls'], got 'max'",
        ),
        (
            "index.kind=annoy",
            "config key 'index.kind' must be one of ['auto', 'flat', 'ivf', 'ivfpq', 'hnsw'], got 'annoy'",
        ),
        (
            "index.on_low_recall=ignore",
            "config key 'index.on_low_recall' must be one of ['error', 'warn'], got 'ignore'",
        ),
        (
            "train.lr_schedule=linear",
            "config key 'train.lr_schedule' must be one of ['constant', 'cosine'], got 'linear'",
        ),
        (
            "train.embedding_optimizer=adam",
            "config key 'train.embedding_optimizer' must be one of ['rowwise_adagrad', 'adagrad', 'sgd'], got 'adam'",
        ),
        ("train.domains=both", "config key 'train.domains' must be one of ['joint', 'source', 'target'], got 'both'"),
        ("train.sharding=diagonal", f"config key 'train.sharding' must be one of {SHARDINGS}, got 'diagonal'"),
        (
            'train.table_sharding={items="diagonal"}',
            f"config key 'train.table_sharding' must be a table of strings, each one of {SHARDINGS}, "
            "got {'items': 'diagonal'}",
        ),
        ("train.device=tpu", "config key 'train.device' must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        (
            "data.source=csv",
            "config key 'data.source' must be one of "
            "['synthetic', 'dataset', 'movielens', 'amazon', 'hm', 'retailrocket', 'generic'], got 'csv'",
        ),
    ],
)
def test_value_outside_an_enum(override, message):
    assert refusal(load_config, None, [override]) == message


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["data.split.cut_at=next-tuesday"],
            "config key 'data.split.cut_at' must be an ISO 8601 date or time, got 'next-tuesday'",
        ),
        (
            ['data.split.valid_from="2026-01-08"'],
            "config key 'data.split.valid_from' applies only with cut_at (a global cut), got '2026-01-08'",
        ),
        (
            ["data.split.cut_at=2026-01-08", "data.split.valid_from=2026-01-10"],
            "config key 'data.split.valid_from' must not be after cut_at ('2026-01-08'), got '2026-01-10'",
        ),
    ],
)
def test_bad_split_times(overrides, message):
    assert refusal(load_config, None, overrides) == message


@pytest.mark.parametrize(
    "override, path, takes",
    [
        ("train.epochz=3", "train.epochz", "TrainConfig takes ['backbone_lr', "),
        ("nosuch.key=1", "nosuch", "RunConfig takes ['behaviour', 'data', 'eval', 'index', 'model', 'train']"),
        (
            "model.user.depth=2",
            "model.user.depth",
            "UserTowerConfig takes ['attention_heads', 'attention_layers', 'embedding_dim', 'hidden', 'history_encoder', ",
        ),
        ("model.item.text.colour=1", "model.item.text.colour", "TextEncoderConfig takes ['local_files_only', "),
        (
            "model.sizes.shops=3",
            "model.sizes.shops",
            "Cardinalities takes ['categories', 'items', 'user_attributes', 'users']",
        ),
        ("data.split.test_first=1", "data.split.test_first", "SplitConfig takes ['cold_items', "),
        ("data.domains.sourse=[]", "data.domains.sourse", "DomainConfig takes ['seed', 'source', "),
        ("data.synthetic.n_userz=3", "data.synthetic.n_userz", "SyntheticShopConfig takes ['activity_exponent', 'events_per_user', "),
        ("behaviour.hiden=[8]", "behaviour.hiden", "BehaviourConfig takes ['batch_size', "),
    ],
)
def test_unknown_key_at_each_level(override, path, takes):
    assert refusal(load_config, None, [override]).startswith(f"unknown config key(s) ['{path}']; {takes}")


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs", "override 'train.epochs' must look like section.key=value"),
        ("=3", "override '=3' must look like section.key=value"),
        ("train.epochs.x=1", "override 'train.epochs.x=1': 'epochs' is not a section"),
        ("train=3", "config key 'train' must be a table of TrainConfig fields, got 3"),
        (
            "model.item.image=true",
            "config key 'model.item.image' must be a table of ImageEncoderConfig fields (or false to switch it off), "
            "got True",
        ),
    ],
)
def test_malformed_override(override, message):
    assert refusal(load_config, None, [override]) == message


def test_override_of_another_section_is_refused():
    message = refusal(override_section, BehaviourConfig(), "behaviour", ["train.epochs=1"])
    assert message == "override 'train.epochs=1': only behaviour.KEY=VALUE applies here"


def test_bad_override_of_one_section_names_its_path():
    message = refusal(override_section, BehaviourConfig(), "behaviour", ["behaviour.lr=-1"])
    assert message == "config key 'behaviour.lr' must be a number > 0, got -1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[train]\nlr = -1\n", "config key 'train.lr' must be a number > 0, got -1"),
        ("[model]\ndim = 1.5\n", "config key 'model.dim' must be an integer >= 1, got 1.5"),
        (
            '[model.item.image]\ntrainable_blocks = "all"\n',
            "config key 'model.item.image.trainable_blocks' must be an integer >= -1, got 'all'",
        ),
        ("epochs = 3\n", "unknown config key(s) ['epochs']; RunConfig takes "),
    ],
)
def test_bad_value_in_a_file(tmp_path, text, message):
    assert refusal(load_config, toml_file(tmp_path, text)).startswith(message)


def test_missing_file(tmp_path):
    assert refusal(load_config, tmp_path / "nope.toml") == f"config file '{tmp_path / 'nope.toml'}' does not exist"


def test_folder_instead_of_a_file(tmp_path):
    assert refusal(load_config, tmp_path) == f"config file '{tmp_path}' is not a file"


def test_file_that_is_not_toml(tmp_path):
    path = toml_file(tmp_path, "[train\nepochs = 3\n")
    assert refusal(load_config, path).startswith(f"{path}: not valid TOML: ")


def test_file_that_is_not_text(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes(b"\xff\xfe[train]\n")
    assert refusal(load_config, path).startswith(f"{path}: not valid TOML: 'utf-8' codec can't decode")


def test_extends_a_missing_file(tmp_path):
    path = toml_file(tmp_path, 'extends = "base.toml"\n')
    expected = f"{path}: extends 'base.toml': config file '{tmp_path / 'base.toml'}' does not exist"
    assert refusal(load_config, path) == expected


def test_extends_a_broken_file(tmp_path):
    toml_file(tmp_path, "[train\n", "base.toml")
    path = toml_file(tmp_path, 'extends = "base.toml"\n')
    expected = f"{path}: extends 'base.toml': {tmp_path / 'base.toml'}: not valid TOML"
    assert refusal(load_config, path).startswith(expected)


def test_extends_that_is_not_a_path(tmp_path):
    path = toml_file(tmp_path, "extends = 3\n")
    assert refusal(load_config, path) == f'{path}: extends must be "demo" or the path of a TOML file, got 3'


def test_extends_cycle(tmp_path):
    path = toml_file(tmp_path, 'extends = "run.toml"\n')
    message = refusal(load_config, path)
    assert message == f"{path}: extends 'run.toml': config file '{path}' extends itself (through ['{path}'])"


def test_run_config_that_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert refusal(read_run_config, path).startswith(f"run config '{path}' is not valid JSON: ")


def test_run_config_with_a_bad_value(tmp_path):
    path = tmp_path / "config.json"
    raw = to_dict(RunConfig())
    raw["train"]["epochs"] = 0
    path.write_text(json.dumps(raw))
    expected = f"run config '{path}': config key 'train.epochs' must be an integer >= 1, got 0"
    assert refusal(read_run_config, path) == expected


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TrainConfig(lr=-1), "config key 'lr' must be a number > 0, got -1"),
        (lambda: TrainConfig(epochs="3"), "config key 'epochs' must be an integer >= 1, got '3'"),
        (
            lambda: dataclasses.replace(TrainConfig(), patience=-2),
            "config key 'patience' must be an integer >= 0, got -2",
        ),
        (lambda: TwoTowerConfig(dim=True), "config key 'dim' must be an integer >= 1, got True"),
        (
            lambda: IndexConfig(kind="annoy"),
            "config key 'kind' must be one of ['auto', 'flat', 'ivf', 'ivfpq', 'hnsw'], got 'annoy'",
        ),
        (lambda: SplitConfig(test_fraction=1), "config key 'test_fraction' must be a number in [0, 1), got 1"),
        (lambda: BehaviourConfig(hidden=(64,)), "config key 'hidden' must be a list of integers, each >= 1, got (64,)"),
        (lambda: Cardinalities(users=0), "config key 'users' must be an integer >= 1, got 0"),
        (
            lambda: ItemTowerConfig(image={"model_name": "x"}),
            "config key 'image' must be a table of ImageEncoderConfig fields or unset, got {'model_name': 'x'}",
        ),
        (lambda: UserTowerConfig(history_len=None), "config key 'history_len' must be an integer >= 1, got None"),
        (
            lambda: DataConfig(synthetic={"n_userz": 1}),
            "unknown config key(s) ['synthetic.n_userz']; SyntheticShopConfig takes",
        ),
    ],
)
def test_python_construction_is_checked_the_same_way(build, message):
    assert refusal(build).startswith(message)


def test_config_error_is_a_value_error_of_the_family():
    with pytest.raises(ValueError) as caught:
        TrainConfig(epochs=0)
    assert isinstance(caught.value, TandemrecError) and caught.value.keys == ("epochs",)


@pytest.mark.parametrize(
    "overrides, section, key, value",
    [
        (["train.lr=1"], "train", "lr", 1.0),
        (["model.temperature=2"], "model", "temperature", 2.0),
        (["data.domains.train_target_fraction=0"], "data.domains", "train_target_fraction", 0.0),
        (["data.domains.train_target_fraction=1"], "data.domains", "train_target_fraction", 1.0),
        (["behaviour.popular_negatives=0"], "behaviour", "popular_negatives", 0.0),
        (["index.min_recall=1"], "index", "min_recall", 1.0),
        (["index.memory_fraction=1"], "index", "memory_fraction", 1.0),
        (["data.split.test_fraction=0"], "data.split", "test_fraction", 0.0),
        (["train.patience=0"], "train", "patience", 0),
        (["model.item.image.trainable_blocks=-1"], "model.item.image", "trainable_blocks", -1),
        (["index.nprobe=1"], "index", "nprobe", 1),
        (["train.device=cuda:1"], "train", "device", "cuda:1"),
        (["data.split.cut_at=2026-01-10"], "data.split", "cut_at", "2026-01-10"),  # a TOML date: its ISO text
        (["model.user.hidden=[]"], "model.user", "hidden", []),
    ],
)
def test_valid_edge_values_are_accepted(overrides, section, key, value):
    config = load_config(None, overrides)
    for part in section.split("."):
        config = getattr(config, part)
    got = getattr(config, key)
    assert got == value and type(got) is type(value)


def test_an_int_for_a_float_becomes_a_float_in_python_too():
    assert isinstance(TrainConfig(lr=1).lr, float) and isinstance(DataConfig().split.cold_items, float)


@pytest.mark.parametrize(
    "config", [None, *sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.toml"))]
)
def test_shipped_configs_load_and_round_trip(config):
    loaded = load_config(None if config is None else REPO / config)
    assert from_dict(RunConfig, to_dict(loaded)) == loaded


def test_the_packaged_demo_config_is_the_default():
    assert resources.files("tandemrec.configs").joinpath("demo.toml").is_file()
    assert load_config("demo") == load_config(None)


def test_saved_run_config_with_sizes_reads_back(tmp_path):
    config = load_config(None, ["model.item.image=false", "train.epochs=2", "data.split.cut_at=2026-01-10"])
    config.model.sizes = Cardinalities(users=301, items=121, categories=7, user_attributes={"age": 5, "region": 4})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(to_dict(config)))
    assert read_run_config(path) == config
