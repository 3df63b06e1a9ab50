"""Outputs of frozen backbones, computed once per (weights, content) and kept on disk across jobs and runs.

A frozen image or text backbone gives the same output for the same input forever, and running it is most
of the cost of training, indexing, evaluating or exporting with a pretrained encoder (minutes for a 10K-item
catalogue on CPU). So its outputs are stored in a cache folder named by a hash of the backbone's weights
(and of whatever else shapes its output: normalisation, pooling), one row per item keyed by item id and
by a hash of the row's input (pixels, or token ids and mask). Another job or another run over the same
items maps the rows instead of recomputing them; a changed item recomputes only its row; other weights
(a fine-tuned or random backbone) get a folder of their own.

They live in the tandemrec cache (tandemrec/io/cache.py: `$TANDEMREC_CACHE`, else
`$XDG_CACHE_HOME/tandemrec`, else `~/.cache/tandemrec`); where it cannot be written, outputs are computed
and not kept.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tandemrec.data.content import ItemContent
from tandemrec.data.content_cache import ArraySpec, cached_rows
from tandemrec.io.cache import cache_folder

log = logging.getLogger(__name__)
FEATURES_DIR = "frozen-features"

# Item rows -> the backbone's outputs for them, float32 (len(rows), *row_shape).
Encode = Callable[[torch.Tensor], torch.Tensor]


def weights_fingerprint(module: nn.Module, extra: dict | None = None) -> str:
    """A hash of everything that decides a frozen module's outputs: its class, every parameter and buffer
    (names, dtypes, shapes, values) and `extra` (settings outside the weights, such as pooling)."""
    digest = hashlib.sha256(json.dumps([type(module).__name__, extra or {}], sort_keys=True, default=str).encode())
    for name, tensor in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())  # read in place: no copy of the weights
    return digest.hexdigest()


def frozen_outputs(
    kind: str,
    fingerprint: str,
    item_ids: list[str] | None,
    inputs: list[torch.Tensor],
    encode: Encode,
    row_shape: tuple[int, ...],
    batch_size: int,
    progress: bool = False,
    row_hashes: list[str] | None = None,
) -> torch.Tensor:
    """The outputs of a frozen backbone for every item row: from the cache when it holds them for these
    weights (`fingerprint`) and inputs, else computed (only for the rows it lacks) and stored there.

    `inputs` are the per-row tensors the backbone reads (pixels; or token ids and mask), whose hash keys
    each row (`row_hashes`: those hashes, known already); `encode(rows)` runs the backbone on those rows."""
    n = int(inputs[0].shape[0])
    bar = tqdm(total=n, desc=f"{kind} backbone", unit="item", disable=not progress)

    def compute(rows: np.ndarray) -> tuple[dict[str, np.ndarray], list[str | None]]:
        out = np.empty((len(rows), *row_shape), dtype=np.float32)
        for start in range(0, len(rows), batch_size):
            chunk = torch.from_numpy(rows[start : start + batch_size])
            out[start : start + len(chunk)] = encode(chunk).float().cpu().numpy()
            bar.update(len(chunk))
        return {"features": out}, [None] * len(rows)

    try:
        folder = cache_folder(FEATURES_DIR)
        if folder is None or item_ids is None:
            return torch.from_numpy(compute(np.arange(n))[0]["features"])
        params = {"kind": kind, "weights": fingerprint}
        rows = cached_rows(
            folder / f"{kind}-{fingerprint[:16]}",
            params,
            item_ids,
            row_hashes if row_hashes is not None else [row_hash(inputs, i) for i in range(n)],
            {"features": ArraySpec(row_shape, "float32")},
            compute,
        )
        if not len(rows.computed):
            log.info("%s backbone outputs of %d items read from the cache", kind, n)
        return torch.from_numpy(rows.arrays["features"])
    finally:
        bar.close()


def row_hash(inputs: list[torch.Tensor], row: int) -> str:
    """The key of one row of a backbone's inputs: the SHA-1 of its bytes (of each input in turn)."""
    digest = hashlib.sha1()
    for tensor in inputs:
        digest.update(tensor[row].contiguous().numpy())
    return digest.hexdigest()


def cache_frozen_backbones(
    tower: nn.Module, content: ItemContent, batch_size: int, device: torch.device, progress: bool = False
) -> None:
    """Give `content` the outputs of each frozen backbone of the item tower (image, text), so that the
    tower's forward skips them, and of a text backbone trained in its top layers only, the token states of
    its frozen bottom (`text_hidden`), so that the tower runs the top alone; content that already holds
    them (training's own) is left as it is."""
    if any(x is not None for x in (content.image_features, content.text_features, content.text_hidden)):
        return
    tower.eval()
    image, text = tower.image, tower.text
    with torch.no_grad():
        if image is not None and image.frozen and content.pixels is not None:
            pixels = content.pixels
            content.image_features = frozen_outputs(
                "image",
                weights_fingerprint(image, {"mean": image.mean.tolist(), "std": image.std.tolist()}),
                content.item_ids,
                [pixels],
                lambda rows: image(pixels[rows].to(device)),
                (image.output_dim,),
                batch_size,
                progress,
                content.pixel_digests,
            )
        if text is not None and content.input_ids is not None and (text.frozen or text.prefix_layers):
            ids, mask = content.input_ids, content.attention_mask
            if text.frozen:  # the whole encoder: its pooled outputs
                kind, encode, shape = "text", text, (text.output_dim,)
                weights = weights_fingerprint(text, {"pooling": text.config.pooling})
            else:  # its frozen bottom: the token states its trained top layers start from
                kind, encode, shape = "text-prefix", text.prefix, (ids.shape[1], text.output_dim)
                weights = weights_fingerprint(nn.ModuleList(text.frozen_parts), {"layers": text.prefix_layers})
            outputs = frozen_outputs(
                kind,
                weights,
                content.item_ids,
                [ids, mask],
                lambda rows: encode(ids[rows].to(device), mask[rows].to(device)),
                shape,
                batch_size,
                progress,
            )
            if text.frozen:
                content.text_features = outputs
            else:
                content.text_hidden = outputs
