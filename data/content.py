"""Item content decoded once per run: token ids and resized pixels for the whole catalogue.

Images are read, resized and stored as one uint8 tensor, so training epochs and exports never decode
an image twice. A missing or unreadable image is counted, reported once and masked (has_image=False).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image, UnidentifiedImageError
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from tandemrec.data.batch import CATEGORY, ITEM_ID, ItemBatch

log = logging.getLogger(__name__)

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
    image_features: torch.Tensor | None = None
    image_problems: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.item_index.shape[0])

    def batches(self, size: int) -> Iterator[ItemBatch]:
        """All rows in order, `size` at a time."""
        for start in range(0, len(self), size):
            yield self.batch(torch.arange(start, min(start + size, len(self))))

    def batch(self, rows: torch.Tensor) -> ItemBatch:
        """An ItemBatch of the given row positions (not item indices)."""

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        n = int(rows.shape[0])
        ids = KeyedJaggedTensor.from_lengths_sync(
            keys=[ITEM_ID, CATEGORY],
            values=torch.cat([self.item_index[rows], self.category[rows]]),
            lengths=torch.ones(2 * n, dtype=torch.int32),
        )
        return ItemBatch(
            ids=ids,
            input_ids=take(self.input_ids),
            attention_mask=take(self.attention_mask),
            pixels=take(self.pixels),
            has_text=take(self.has_text),
            has_image=take(self.has_image),
            text_features=take(self.text_features),
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
) -> ItemContent:
    """Tokenise `title + text` and load images for every row of `items` (rows align with item_index)."""
    content = ItemContent(
        item_index=torch.as_tensor(item_index, dtype=torch.int64),
        category=torch.as_tensor(category_index, dtype=torch.int64),
    )
    if tokenize is not None:
        texts = _item_texts(items)
        content.input_ids, content.attention_mask = tokenize(texts, max_length)
        content.has_text = torch.tensor([bool(t.strip()) for t in texts])
    if image_size is not None:
        paths = items["image"].to_list() if "image" in items.columns else [None] * items.height
        content.pixels, content.has_image, content.image_problems = load_images(
            paths, image_root, image_size, progress
        )
    return content


def _item_texts(items: pl.DataFrame) -> list[str]:
    title = items["title"].fill_null("")
    text = items["text"].fill_null("") if "text" in items.columns else pl.Series([""] * items.height)
    return [f"{a}. {b}".strip(". ") if b else a for a, b in zip(title.to_list(), text.to_list())]


def load_images(
    paths: Sequence[str | None], root: Path | None, size: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """Decode, centre-crop and resize to (size, size); returns uint8 pixels, a mask and problem counts."""
    from tqdm import tqdm

    pixels = torch.zeros((len(paths), 3, size, size), dtype=torch.uint8)
    ok = torch.zeros(len(paths), dtype=torch.bool)
    problems: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for row, rel in enumerate(tqdm(paths, desc="images", disable=not progress, unit="img")):
        if rel is None:
            problems["no image"] += 1
            continue
        path = Path(rel) if root is None else root / rel
        try:
            with Image.open(path) as img:
                pixels[row] = torch.from_numpy(_square(img.convert("RGB"), size)).permute(2, 0, 1)
            ok[row] = True
        except FileNotFoundError:
            problems["missing image"] += 1
            examples.setdefault("missing image", str(path))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            problems["unreadable image"] += 1
            examples.setdefault("unreadable image", str(path))
    for reason, count in problems.items():
        if reason != "no image":
            log.warning("%d item(s) with %s (masked), e.g. %s", count, reason, examples[reason])
    return pixels, ok, dict(problems)


def _square(img: Image.Image, size: int) -> np.ndarray:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return np.array(img, dtype=np.uint8)
