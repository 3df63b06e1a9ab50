"""Batched, gradient-free encoding: one loop shared by validation, export and serving."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from tandemrec.data.batch import ItemBatch, UserBatch


@torch.no_grad()
def embed(
    encode: Callable[[UserBatch | ItemBatch], torch.Tensor],
    batches: Iterable[UserBatch | ItemBatch],
    device: torch.device,
) -> torch.Tensor:
    """Concatenated float32 CPU outputs of encode(batch) for every batch; callers set eval mode."""
    outputs = [encode(batch.to(device)).float().cpu() for batch in batches]
    return torch.cat(outputs) if outputs else torch.zeros(0)

