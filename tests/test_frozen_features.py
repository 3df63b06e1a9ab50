"""Frozen-backbone outputs are computed once per (weights, inputs) and then read from the cache."""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from tandemrec.data.content import ItemContent
from tandemrec.towers.config import ImageEncoderConfig, TextEncoderConfig
from tandemrec.towers.image_encoder import ImageEncoder
from tandemrec.towers.text_encoder import TextEncoder
from tandemrec.training.frozen_features import cache_frozen_backbones

TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 1, "layers": 1},
}
TINY_BERT = {
    "model_type": "bert", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 32,
}


class Tower(torch.nn.Module):
    """Just what cache_frozen_backbones reads of an item tower: its image and text encoders."""

    def __init__(self, image: ImageEncoder | None, text: TextEncoder | None) -> None:
        super().__init__()
        self.image, self.text = image, text


def _encoders(seed: int = 0) -> Tower:
    torch.manual_seed(seed)
    image = ImageEncoder(ImageEncoderConfig("tiny-cache-vit", model_config=TINY_VIT, trainable_blocks=0))
    text = TextEncoder(TextEncoderConfig(pretrained=False, model_config=TINY_BERT, trainable_layers=0))
    return Tower(image, text)


def _content(n: int = 12, seed: int = 0) -> ItemContent:
    g = torch.Generator().manual_seed(seed)
    return ItemContent(
        item_index=torch.arange(1, n + 1),
        category=torch.zeros(n, dtype=torch.int64),
        pixels=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        input_ids=torch.randint(1, 100, (n, 8), generator=g),
        attention_mask=torch.ones(n, 8, dtype=torch.int64),
        item_ids=[f"item{i}" for i in range(n)],
    )


def _fresh(content: ItemContent) -> ItemContent:
    return dataclasses.replace(content, image_features=None, text_features=None)


def _count_rows(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Rows each backbone's forward sees, counted by patching the encoders' forward."""
    seen = {"image": 0, "text": 0}
    image_forward, text_forward = ImageEncoder.forward, TextEncoder.forward

    def image(self, pixels):
        seen["image"] += len(pixels)
        return image_forward(self, pixels)

    def text(self, ids, mask):
        seen["text"] += len(ids)
        return text_forward(self, ids, mask)

    monkeypatch.setattr(ImageEncoder, "forward", image)
    monkeypatch.setattr(TextEncoder, "forward", text)
    return seen


def test_second_job_reads_the_cache_without_a_backbone_pass(monkeypatch):
    tower, content = _encoders(), _content()
    seen = _count_rows(monkeypatch)
    cache_frozen_backbones(tower, content, 5, torch.device("cpu"))
    assert seen == {"image": 12, "text": 12}
    with torch.no_grad():
        direct = tower.image(content.pixels[:3]), tower.text(content.input_ids[:3], content.attention_mask[:3])
    assert torch.allclose(content.image_features[:3], direct[0], atol=1e-5)
    assert torch.allclose(content.text_features[:3], direct[1], atol=1e-5)

    again = _fresh(content)
    seen.update(image=0, text=0)
    cache_frozen_backbones(_encoders(), again, 5, torch.device("cpu"))  # another job: same weights, new objects
    assert seen == {"image": 0, "text": 0}
    assert torch.equal(again.image_features, content.image_features)
    assert torch.equal(again.text_features, content.text_features)


def test_other_weights_or_inputs_are_recomputed(monkeypatch):
    content = _content(seed=1)
    cache_frozen_backbones(_encoders(), content, 5, torch.device("cpu"))
    seen = _count_rows(monkeypatch)

    other = _encoders(seed=7)  # other weights: a cache of their own
    changed = _fresh(content)
    cache_frozen_backbones(other, changed, 5, torch.device("cpu"))
    assert seen == {"image": 12, "text": 12}
    assert not torch.allclose(changed.image_features, content.image_features)

    edited = _fresh(content)
    edited.pixels = edited.pixels.clone()
    edited.pixels[4] = 255 - edited.pixels[4]  # one item's image changed: only its row is recomputed
    seen.update(image=0, text=0)
    cache_frozen_backbones(_encoders(), edited, 5, torch.device("cpu"))
    assert seen == {"image": 1, "text": 0}
    rows = np.delete(np.arange(12), 4)
    assert torch.equal(edited.image_features[rows], content.image_features[rows])
    assert not torch.allclose(edited.image_features[4], content.image_features[4])


def test_trainable_backbones_are_not_cached(monkeypatch):
    tower = _encoders()
    for p in tower.text.parameters():
        p.requires_grad_(True)
    content = _content(seed=2)
    cache_frozen_backbones(tower, content, 5, torch.device("cpu"))
    assert content.image_features is not None and content.text_features is None


def test_an_unwritable_cache_computes_without_keeping(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("TANDEMREC_CACHE", str(blocked))
    content = _content(seed=3)
    cache_frozen_backbones(_encoders(), content, 5, torch.device("cpu"))
    assert content.image_features.shape == (12, 16)
    assert blocked.read_text() == "not a folder"


def test_fingerprint_covers_buffers_of_every_shape():
    """BatchNorm keeps a 0-d counter and running statistics: all of them decide the outputs."""
    from tandemrec.training.frozen_features import weights_fingerprint

    norm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    first = weights_fingerprint(norm)
    assert weights_fingerprint(norm) == first
    norm[1].running_mean += 1.0
    assert weights_fingerprint(norm) != first
    assert weights_fingerprint(norm, {"pooling": "cls"}) != weights_fingerprint(norm, {"pooling": "mean"})


def test_a_frozen_encoder_gives_its_cached_outputs_in_training_mode_too():
    tower = _encoders()
    tower.train()
    content = _content(seed=4)
    with torch.no_grad():
        trained_mode = tower.text(content.input_ids, content.attention_mask)
    assert not tower.text.backbone.training and not tower.image.visual.training
    cache_frozen_backbones(tower, content, 5, torch.device("cpu"))
    assert torch.allclose(trained_mode, content.text_features, atol=1e-5)


def test_cached_pixels_carry_digests_that_key_the_outputs_without_reading_the_pixels(tmp_path, monkeypatch):
    """The pixel cache stores each row's digest, equal to the hash of the pixels themselves, so a job whose
    pixels are cached keys the backbone's outputs by it and never reads the pixels back."""
    from PIL import Image

    from tandemrec.data.content import build_item_content
    from tandemrec.training.frozen_features import row_hash

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    items = pl.DataFrame({"item_id": [f"i{k}" for k in range(4)], "image": [f"{k}.png" for k in range(4)]})

    def build() -> ItemContent:
        return build_item_content(items, np.arange(1, 5), np.zeros(4, dtype=np.int64), tmp_path, None, 8, 32,
                                  cache=tmp_path / "cache")

    first = build()
    assert first.pixel_digests == [row_hash([first.pixels], i) for i in range(4)]
    cache_frozen_backbones(_encoders(), first, 2, torch.device("cpu"))

    second = build()  # pixels from the cache, mapped: hashing them would read them all into memory
    assert second.pixel_digests == first.pixel_digests
    second.pixels = Unreadable(second.pixels)
    seen = _count_rows(monkeypatch)
    cache_frozen_backbones(_encoders(), second, 2, torch.device("cpu"))
    assert seen["image"] == 0
    assert torch.equal(second.image_features, first.image_features)


class Unreadable:
    """Pixels that fail the test if any row is read."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.shape = pixels.shape

    def __getitem__(self, rows):
        raise AssertionError("the pixels were read")
