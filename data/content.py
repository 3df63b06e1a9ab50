"""Item content decoded once: token ids and resized pixels for the whole catalogue.

Images are read, resized and stored as one uint8 tensor, so training epochs and exports never decode
an image twice; with a cache folder (a dataset's `cache/`), they are stored on disk, memory-mapped, so
that later runs do not decode them either. A missing or unreadable image is counted, reported once and
masked (has_image=False).
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from tandemrec.data.batch import CATEGORY, ITEM_ID, ItemBatch
from tandemrec.data.content_cache import ArraySpec, cached_rows, file_fingerprint, text_fingerprint
from tandemrec.data.images import DECODE_ERRORS, open_image, problem_of

log = logging.getLogger(__name__)
NO_IMAGE = "no image"
# Bump when decoding changes (crop, resampling), so that cached pixels are made again.
PIXELS_PREPROCESSING = "rgb-centre-crop-bicubic-v1"
DIGEST_BYTES = 20  # SHA-1

# (texts, max_length) -> (input_ids, attention_mask), both int64 (N, max_length)
Tokenize = Callable[[list[str], int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ItemContent:
    """Per-item tensors indexed by item position (row i describes item index item_index[i])."""

    item_index: torch.Tensor  # (N,) int64 vocabulary index of each row
    category: torch.Tensor  # (N,) int64 category vocabulary index
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    has_text: torch.Tensor | None = None
    pixels: torch.Tensor | None = None
    has_image: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    text_hidden: torch.Tensor | None = None
    image_features: torch.Tensor | None = None
    image_problems: dict[str, int] = field(default_factory=dict)
    item_ids: list[str] | None = None  # each row's item id: keys the frozen-backbone output cache
    # Each row's pixels' SHA-1 (hex), kept beside cached pixels, so that the frozen-backbone output cache
    # keys rows without reading the pixels back (a 10K-item catalogue's are gigabytes of resident memory).
    pixel_digests: list[str] | None = None

    def __len__(self) -> int:
        return int(self.item_index.shape[0])

    def batches(self, size: int) -> Iterator[ItemBatch]:
        """All rows in order, `size` at a time."""
        for start in range(0, len(self), size):
            yield self.batch(torch.arange(start, min(start + size, len(self))))

    def batch(self, rows: torch.Tensor, content_only: torch.Tensor | None = None) -> ItemBatch:
        """An ItemBatch of the given row positions (not item indices); rows where `content_only` is True
        get the unknown item id, so the tower embeds them from content alone, as a new item. A backbone's
        inputs are left out where its cached outputs stand in for them (the tower reads those first):
        a training batch's pixels are tens of megabytes to copy, every step."""

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        n = int(rows.shape[0])
        text = self.text_features if self.text_features is not None else self.text_hidden
        item_index = self.item_index[rows]
        if content_only is not None:
            item_index = item_index.masked_fill(content_only, 0)
        ids = KeyedJaggedTensor.from_lengths_sync(
            keys=[ITEM_ID, CATEGORY],
            values=torch.cat([item_index, self.category[rows]]),
            lengths=torch.ones(2 * n, dtype=torch.int32),
        )
        return ItemBatch(
            ids=ids,
            input_ids=take(self.input_ids) if text is None else None,
            attention_mask=take(self.attention_mask) if self.text_features is None else None,
            pixels=take(self.pixels) if self.image_features is None else None,
            has_text=take(self.has_text),
            has_image=take(self.has_image),
            text_features=take(self.text_features),
            text_hidden=take(self.text_hidden),
            image_features=take(self.image_features),
        )


def build_item_content(
    items: pl.DataFrame,
    item_index: np.ndarray,
    category_index: np.ndarray,
    image_root: Path | None,
    tokenize: Tokenize | None,
    max_length: int,
    image_size: int | None,
    progress: bool = False,
    cache: Path | None = None,
    tokenizer_key: str | None = None,
) -> ItemContent:
    """Tokenise `title + text` and load images for every row of `items` (rows align with item_index).

    With a `cache` folder, pixels are decoded once and kept there (see data/content_cache.py), and so
    are token ids when `tokenizer_key` names the tokenizer's behaviour.
    """
    ids = items["item_id"].to_list()
    content = ItemContent(
        item_index=torch.tensor(item_index, dtype=torch.int64),  # copies: the inputs may be read-only views
        category=torch.tensor(category_index, dtype=torch.int64),
        item_ids=ids,
    )
    if tokenize is not None:
        texts = item_texts(items)
        if cache is not None and tokenizer_key is not None:
            content.input_ids, content.attention_mask = _cached_tokens(
                cache, ids, texts, tokenize, max_length, tokenizer_key
            )
        else:
            content.input_ids, content.attention_mask = tokenize(texts, max_length)
        content.has_text = torch.tensor([bool(t.strip()) for t in texts])
    if image_size is not None:
        paths = items["image"].to_list() if "image" in items.columns else [None] * items.height
        if cache is not None:
            content.pixels, content.has_image, content.image_problems, content.pixel_digests = _cached_images(
                cache, ids, paths, image_root, image_size, progress
            )
        else:
            content.pixels, content.has_image, content.image_problems = load_images(
                paths, image_root, image_size, progress
            )
    return content


def _cached_images(
    cache: Path, ids: list[str], paths: list[str | None], root: Path | None, size: int, progress: bool
) -> tuple[torch.Tensor, torch.Tensor, dict[str, int], list[str]]:
    """Pixels from the cache, decoding only the images not in it (or changed since), and each row's
    pixel digest; problems are logged by the run that first meets them."""
    fingerprints = [file_fingerprint(None if p is None else _path(p, root)) for p in paths]
    specs = {
        "pixels": ArraySpec((3, size, size), "uint8"),
        "has_image": ArraySpec((), "bool"),
        "digest": ArraySpec((DIGEST_BYTES,), "uint8"),
    }

    def decode(rows: np.ndarray) -> tuple[dict[str, np.ndarray], list[str | None]]:
        pixels, ok, reasons = decode_images([paths[r] for r in rows.tolist()], root, size, progress)
        digests = b"".join(hashlib.sha1(row).digest() for row in pixels.numpy())
        digest = np.frombuffer(digests, dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        return {"pixels": pixels.numpy(), "has_image": ok.numpy(), "digest": digest}, reasons

    params = {"kind": "pixels", "size": size, "preprocessing": PIXELS_PREPROCESSING}
    cached = cached_rows(cache / f"pixels_{size}", params, ids, fingerprints, specs, decode)
    fresh = set(cached.computed.tolist())
    report_image_problems(
        [p for row, p in enumerate(paths) if row in fresh],
        root,
        [r for row, r in enumerate(cached.problems) if row in fresh],
    )
    masked = sum(1 for row, r in enumerate(cached.problems) if r and r != NO_IMAGE and row not in fresh)
    if masked:
        log.info("%d item image(s) masked as missing or unreadable, as found when first decoded", masked)
    problems = dict(Counter(r for r in cached.problems if r))
    digests = [row.tobytes().hex() for row in cached.arrays["digest"]]
    return torch.from_numpy(cached.arrays["pixels"]), torch.from_numpy(cached.arrays["has_image"]), problems, digests


def _cached_tokens(
    cache: Path, ids: list[str], texts: list[str], tokenize: Tokenize, max_length: int, tokenizer_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    specs = {"input_ids": ArraySpec((max_length,), "int64"), "attention_mask": ArraySpec((max_length,), "int64")}

    def encode(rows: np.ndarray) -> tuple[dict[str, np.ndarray], list[str | None]]:
        input_ids, mask = tokenize([texts[r] for r in rows.tolist()], max_length)
        return {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()}, [None] * len(rows)

    params = {"kind": "tokens", "tokenizer": tokenizer_key, "max_length": max_length}
    folder = cache / f"tokens_{tokenizer_key}_{max_length}"
    cached = cached_rows(folder, params, ids, [text_fingerprint(t) for t in texts], specs, encode)
    return torch.from_numpy(cached.arrays["input_ids"]), torch.from_numpy(cached.arrays["attention_mask"])


def item_texts(items: pl.DataFrame) -> list[str]:
    """Each item's "title. text": what the text encoder reads and what product search matches words in."""
    title = items["title"].fill_null("")
    text = items["text"].fill_null("") if "text" in items.columns else pl.Series([""] * items.height)
    return [f"{a}. {b}".strip(". ") if b else a for a, b in zip(title.to_list(), text.to_list())]


def load_images(
    paths: Sequence[str | None], root: Path | None, size: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """Decode, centre-crop and resize to (size, size); returns uint8 pixels, a mask and problem counts.
    Each problem is logged once, with its count and an example."""
    pixels, ok, reasons = decode_images(paths, root, size, progress)
    report_image_problems(paths, root, reasons)
    return pixels, ok, dict(Counter(reason for reason in reasons if reason))


def decode_images(
    paths: Sequence[str | None], root: Path | None, size: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """Pixels, the mask of decoded rows, and each row's problem (None, "no image", or a reason of
    data/images.py: missing, unreadable, outside `root`, not a regular file)."""
    from tqdm import tqdm

    pixels = torch.zeros((len(paths), 3, size, size), dtype=torch.uint8)
    ok = torch.zeros(len(paths), dtype=torch.bool)
    reasons: list[str | None] = [None] * len(paths)
    for row, rel in enumerate(tqdm(paths, desc="images", disable=not progress, unit="img")):
        if rel is None:
            reasons[row] = NO_IMAGE
            continue
        try:
            with open_image(_path(rel, root), None if root is None else [root]) as img:
                pixels[row] = square_pixels(img, size)
            ok[row] = True
        except DECODE_ERRORS as error:
            reasons[row] = problem_of(error)
    return pixels, ok, reasons


def report_image_problems(paths: Sequence[str | None], root: Path | None, reasons: Sequence[str | None]) -> None:
    """One warning per problem (not for items that have no image at all), with a count and an example."""
    counts = Counter(reason for reason in reasons if reason and reason != NO_IMAGE)
    for reason, count in counts.items():
        example = next(_path(p, root) for p, r in zip(paths, reasons) if r == reason)
        log.warning("%d item(s) with %s (masked), e.g. %s", count, reason, example)


def _path(rel: str, root: Path | None) -> Path:
    return Path(rel) if root is None else root / rel


def square_pixels(img: Image.Image, size: int) -> torch.Tensor:
    """One image as the towers take it: RGB, centre-cropped, resized, uint8 (3, size, size)."""
    return torch.from_numpy(_square(img.convert("RGB"), size)).permute(2, 0, 1)


def _square(img: Image.Image, size: int) -> np.ndarray:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return np.array(img, dtype=np.uint8)
