"""Item content: image decoding with bad files masked and counted, centre-crops, tokens, batches."""

import logging

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from tandemrec.data.batch import CATEGORY, ITEM_ID
from tandemrec.data.content import build_item_content, load_images

S = 8
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(path, color, size=(20, 20), mode="RGB", fmt=None):
    Image.new(mode, size, color).save(path, format=fmt)
    return path.name


def three_bands(path, horizontal: bool):
    """30x10 (or 10x30) image: red, green, blue thirds; the centre square is pure green."""
    w, h = (30, 10) if horizontal else (10, 30)
    img = Image.new("RGB", (w, h))
    for i, color in enumerate((RED, GREEN, BLUE)):
        box = (i * 10, 0, i * 10 + 10, 10) if horizontal else (0, i * 10, 10, i * 10 + 10)
        img.paste(color, box)
    img.save(path)
    return path.name


def rgb(pixels: torch.Tensor) -> set[tuple[int, int, int]]:
    """The distinct colours of a (3, S, S) tensor."""
    return {tuple(p) for p in pixels.permute(1, 2, 0).reshape(-1, 3).tolist()}


def test_good_image_is_resized_to_uint8_square(tmp_path):
    name = solid(tmp_path / "red.png", RED, size=(37, 37))
    pixels, ok, problems = load_images([name], tmp_path, S)
    assert pixels.shape == (1, 3, S, S) and pixels.dtype == torch.uint8
    assert ok.tolist() == [True]
    assert problems == {}
    assert rgb(pixels[0]) == {RED}


def test_jpeg_grayscale_and_rgba_are_converted_to_rgb(tmp_path):
    names = [
        solid(tmp_path / "blue.jpg", BLUE, fmt="JPEG"),
        solid(tmp_path / "gray.png", 128, mode="L"),
        solid(tmp_path / "rgba.png", (0, 255, 0, 255), mode="RGBA"),
    ]
    pixels, ok, problems = load_images(names, tmp_path, S)
    assert ok.all() and problems == {}
    blue = pixels[0].float().mean(dim=(1, 2))
    assert blue[2] > 200 and blue[0] < 40 and blue[1] < 40  # JPEG is lossy, the colour is not exact
    assert rgb(pixels[1]) == {(128, 128, 128)}
    assert rgb(pixels[2]) == {GREEN}


@pytest.mark.parametrize("horizontal", [True, False], ids=["wide", "tall"])
def test_non_square_image_is_centre_cropped(tmp_path, horizontal):
    name = three_bands(tmp_path / "bands.png", horizontal)
    pixels, ok, _ = load_images([name], tmp_path, S)
    assert ok.tolist() == [True]
    assert rgb(pixels[0]) == {GREEN}  # a squash instead of a crop would show red and blue too


def test_missing_corrupt_and_null_images_are_masked_and_counted(tmp_path, caplog):
    good = solid(tmp_path / "good.png", RED)
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    paths = [good, "nowhere.png", "garbage.jpg", None, good]
    with caplog.at_level(logging.WARNING, logger="tandemrec.data.content"):
        pixels, ok, problems = load_images(paths, tmp_path, S)
    assert ok.tolist() == [True, False, False, False, True]
    assert problems == {"missing image": 1, "unreadable image": 1, "no image": 1}
    assert pixels[~ok].eq(0).all()  # masked rows hold no stale pixels
    text = caplog.text
    assert "missing image" in text and "nowhere.png" in text
    assert "unreadable image" in text and "garbage.jpg" in text
    assert "no image" not in text.replace("missing image", "").replace("unreadable image", "")


def test_truncated_jpeg_is_unreadable_not_a_crash(tmp_path, caplog):
    full = tmp_path / "full.jpg"
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(full, format="JPEG")
    data = full.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="tandemrec.data.content"):
        _, ok, problems = load_images(["cut.jpg"], tmp_path, S)
    assert ok.tolist() == [False]
    assert problems == {"unreadable image": 1}
    assert "cut.jpg" in caplog.text


def test_many_bad_images_are_reported_once_per_reason(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tandemrec.data.content"):
        _, ok, problems = load_images([f"gone{i}.png" for i in range(5)], tmp_path, S)
    assert not ok.any()
    assert problems == {"missing image": 5}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "5 item(s) with missing image" in warnings[0].getMessage()


def items_frame(images):
    n = len(images)
    return pl.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "title": ["Lamp", None, "", "Mug"][:n],
            "text": ["brass lamp", None, "ceramic mug", None][:n],
            "image": images,
        },
        schema={"item_id": pl.String, "title": pl.String, "text": pl.String, "image": pl.String},
    )


def fake_tokenize(seen: list):
    def tokenize(texts, max_length):
        seen.extend(texts)
        ids = torch.tensor([[len(t)] + [0] * (max_length - 1) for t in texts], dtype=torch.int64)
        return ids, (ids > 0).long()

    return tokenize


def test_build_item_content_tokens_images_and_masks(tmp_path):
    good = solid(tmp_path / "good.png", BLUE)
    items = items_frame([good, None, "missing.png", good])
    texts: list[str] = []
    content = build_item_content(
        items, np.array([1, 2, 3, 4]), np.array([0, 1, 1, 2]), tmp_path, fake_tokenize(texts), 6, S
    )
    assert len(content) == 4
    assert texts[0].startswith("Lamp") and "brass lamp" in texts[0]
    assert "ceramic mug" in texts[2]
    assert content.input_ids.shape == (4, 6) and content.attention_mask.shape == (4, 6)
    assert content.has_text.tolist() == [True, False, True, True]  # item 1 has neither title nor text
    assert content.pixels.shape == (4, 3, S, S)
    assert content.has_image.tolist() == [True, False, False, True]
    assert content.image_problems == {"no image": 1, "missing image": 1}


def test_build_item_content_without_tokenizer_or_images():
    items = items_frame([None, None])
    content = build_item_content(items, np.array([1, 2]), np.array([0, 0]), None, None, 8, None)
    assert content.input_ids is None and content.has_text is None
    assert content.pixels is None and content.has_image is None


def test_items_without_image_column_have_no_image(tmp_path):
    items = items_frame([None, None]).drop("image")
    content = build_item_content(items, np.array([1, 2]), np.array([0, 0]), tmp_path, None, 8, S)
    assert content.has_image.tolist() == [False, False]
    assert content.image_problems == {"no image": 2}


@pytest.fixture
def content(tmp_path):
    good = solid(tmp_path / "good.png", RED)
    items = pl.concat([items_frame([good, None, good, None])] * 2).with_columns(
        pl.Series("item_id", [f"i{k}" for k in range(8)])
    )
    return build_item_content(
        items, np.arange(1, 9), np.array([1, 2, 3, 1, 2, 3, 1, 2]), tmp_path, fake_tokenize([]), 5, S
    )


def test_item_content_batch_shapes_and_ids(content):
    batch = content.batch(torch.tensor([6, 0, 3]))
    assert len(batch) == 3
    assert batch.ids.keys() == [ITEM_ID, CATEGORY]
    assert batch.ids[ITEM_ID].values().tolist() == [7, 1, 4]
    assert batch.ids[CATEGORY].values().tolist() == [1, 1, 1]
    assert batch.ids[ITEM_ID].lengths().tolist() == [1, 1, 1]
    assert batch.input_ids.shape == (3, 5) and batch.attention_mask.shape == (3, 5)
    assert batch.pixels.shape == (3, 3, S, S) and batch.pixels.dtype == torch.uint8
    assert batch.has_image.tolist() == [True, True, False]
    assert batch.has_text.shape == (3,)
    assert batch.text_features is None and batch.image_features is None


def test_item_content_batches_cover_all_rows_in_order(content):
    batches = list(content.batches(3))
    assert [len(b) for b in batches] == [3, 3, 2]
    ids = [i for b in batches for i in b.ids[ITEM_ID].values().tolist()]
    assert ids == list(range(1, 9))
    assert torch.equal(torch.cat([b.pixels for b in batches]), content.pixels)


def test_item_content_batch_carries_cached_features(content):
    content.text_features = torch.arange(8.0).unsqueeze(1)
    batch = content.batch(torch.tensor([5, 2]))
    assert batch.text_features.squeeze(1).tolist() == [5.0, 2.0]
