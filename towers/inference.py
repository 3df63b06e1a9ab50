"""Batched, gradient-free encoding: one loop shared by validation, export and serving."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from tqdm import tqdm

from tandemrec.data.batch import ItemBatch, UserBatch


@torch.no_grad()
def embed(
    encode: Callable[[UserBatch | ItemBatch], torch.Tensor],
    batches: Iterable[UserBatch | ItemBatch],
    device: torch.device,
    progress: bool = False,
    total: int | None = None,
    desc: str = "embedding",
) -> torch.Tensor:
    """Concatenated float32 CPU outputs of encode(batch) for every batch; callers set eval mode.

    Embedding a catalogue or every user can take minutes, so `progress` shows a bar under `desc` with
    rows per second and, given the `total` row count, the time left."""
    outputs = []
    with tqdm(total=total, desc=desc, unit="row", disable=not progress) as bar:
        for batch in batches:
            outputs.append(encode(batch.to(device)).float().cpu())
            bar.update(len(outputs[-1]))
    return torch.cat(outputs) if outputs else torch.zeros(0)
