"""The content cache: pixels and token ids computed once per dataset, reused by item, masked problems
reported once."""

import logging
import os

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

import tandemrec.data.content as content_module
from tandemrec.data.content import build_item_content
from tandemrec.data.content_cache import tokenizer_fingerprint
from tandemrec.data.prepared import content_cache_dir

S = 8


def _items(names: list[str | None], texts: list[str] | None = None) -> pl.DataFrame:
    n = len(names)
    return pl.DataFrame(
        {"item_id": [f"i{k}" for k in range(n)], "title": texts or [f"item {k}" for k in range(n)], "image": names},
        schema={"item_id": pl.String, "title": pl.String, "image": pl.String},
    )


def _image(path, colour) -> str:
    Image.new("RGB", (12, 12), colour).save(path)
    return path.name


@pytest.fixture
def decoded(monkeypatch):
    """The image paths decode_images is asked for, call by call."""
    calls: list[list[str | None]] = []
    real = content_module.decode_images

    def counting(paths, *args, **kwargs):
        calls.append(list(paths))
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(content_module, "decode_images", counting)
    return calls


def _build(items, root, cache, tokenize=None, key=None, length=4):
    index = np.arange(1, items.height + 1)
    return build_item_content(items, index, np.zeros(items.height), root, tokenize, length, S, cache=cache, tokenizer_key=key)


def test_images_are_decoded_once_and_memory_mapped(tmp_path, decoded):
    names = [_image(tmp_path / "a.png", "red"), _image(tmp_path / "b.png", "blue"), None]
    first = _build(_items(names), tmp_path, tmp_path / "cache")
    second = _build(_items(names), tmp_path, tmp_path / "cache")
    assert decoded == [names]  # the second build decoded nothing
    assert torch.equal(first.pixels, second.pixels) and second.has_image.tolist() == [True, True, False]
    assert second.image_problems == {"no image": 1}
    assert (tmp_path / "cache" / f"pixels_{S}" / "pixels.npy").is_file()
    uncached = build_item_content(_items(names), np.arange(1, 4), np.zeros(3), tmp_path, None, 4, S)
    assert torch.equal(uncached.pixels, second.pixels)


def test_only_new_or_changed_images_are_decoded_again(tmp_path, decoded):
    names = [_image(tmp_path / "a.png", "red"), _image(tmp_path / "b.png", "blue")]
    _build(_items(names), tmp_path, tmp_path / "cache")
    _image(tmp_path / "b.png", "green")
    stat = os.stat(tmp_path / "b.png")
    os.utime(tmp_path / "b.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    names.append(_image(tmp_path / "c.png", "white"))
    again = _build(_items(names), tmp_path, tmp_path / "cache")
    assert decoded[1:] == [["b.png", "c.png"]]
    assert again.pixels[1, 1].float().mean() == 128 and again.pixels[1, 2].float().mean() == 0  # green now
    reordered = _build(_items(names).reverse(), tmp_path, tmp_path / "cache")
    assert len(decoded) == 2  # the same items in another order: rows are reused by key
    assert torch.equal(reordered.pixels[0], again.pixels[2])


def test_a_corrupt_image_is_reported_once_and_masked(tmp_path, decoded, caplog):
    (tmp_path / "bad.jpg").write_bytes(b"not an image" * 20)
    names = [_image(tmp_path / "a.png", "red"), "bad.jpg", "gone.png"]
    with caplog.at_level(logging.INFO, logger="tandemrec.data.content"):
        first = _build(_items(names), tmp_path, tmp_path / "cache")
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        caplog.clear()
        second = _build(_items(names), tmp_path, tmp_path / "cache")
    assert len(warned) == 2 and any("unreadable image" in w and "bad.jpg" in w for w in warned)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # not again
    assert "2 item image(s) masked" in caplog.text
    assert len(decoded) == 1
    assert first.has_image.tolist() == second.has_image.tolist() == [True, False, False]
    assert second.image_problems == {"unreadable image": 1, "missing image": 1}


def test_a_damaged_cache_is_rebuilt(tmp_path, decoded):
    names = [_image(tmp_path / "a.png", "red")]
    _build(_items(names), tmp_path, tmp_path / "cache")
    (tmp_path / "cache" / f"pixels_{S}" / "pixels.npy").write_bytes(b"garbage")
    rebuilt = _build(_items(names), tmp_path, tmp_path / "cache")
    assert len(decoded) == 2 and rebuilt.has_image.tolist() == [True]


def test_token_ids_are_cached_by_tokenizer_and_text(tmp_path):
    seen: list[str] = []

    def tokenize(texts, max_length):
        seen.extend(texts)
        ids = torch.tensor([[len(t)] * max_length for t in texts], dtype=torch.int64)
        return ids, torch.ones_like(ids)

    items = _items([None, None], ["lamp", "mug"])
    first = _build(items, None, tmp_path / "cache", tokenize, "tok-a")
    _build(items, None, tmp_path / "cache", tokenize, "tok-a")
    assert seen == ["lamp", "mug"]
    changed = _build(_items([None, None], ["lamp", "teapot"]), None, tmp_path / "cache", tokenize, "tok-a")
    assert seen[2:] == ["teapot"] and changed.input_ids[1, 0] == 6 and torch.equal(changed.input_ids[0], first.input_ids[0])
    _build(items, None, tmp_path / "cache", tokenize, "tok-b")  # another tokenizer: its own cache
    _build(items, None, tmp_path / "cache", tokenize, "tok-a", length=6)  # another max_length too
    assert len(seen) == 3 + 2 + 2


def test_tokenizer_fingerprint_follows_the_vocabulary():
    class Tokenizer:
        name_or_path = "t"

        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    assert tokenizer_fingerprint(Tokenizer({"a": 1})) == tokenizer_fingerprint(Tokenizer({"a": 1}))
    assert tokenizer_fingerprint(Tokenizer({"a": 1})) != tokenizer_fingerprint(Tokenizer({"a": 2}))


def test_the_cache_lives_only_in_writable_dataset_folders(tmp_path):
    assert content_cache_dir(None) is None
    assert content_cache_dir(tmp_path) is None  # a source folder, not a dataset folder
    (tmp_path / "manifest.json").write_text("{}")
    assert content_cache_dir(tmp_path) == tmp_path / "cache"
