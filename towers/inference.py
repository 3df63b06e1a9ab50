"""Batched, gradient-free encoding: one loop shared by validation, export and serving."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from tandemrec.data.batch import ItemBatch, UserBatch
from tandemrec.towers.item_tower import ItemTower


@torch.no_grad()
def embed(
    encode: Callable[[UserBatch | ItemBatch], torch.Tensor],
    batches: Iterable[UserBatch | ItemBatch],
    device: torch.device,
) -> torch.Tensor:
    """Concatenated float32 CPU outputs of encode(batch) for every batch; callers set eval mode."""
    outputs = [encode(batch.to(device)).float().cpu() for batch in batches]
    return torch.cat(outputs) if outputs else torch.zeros(0)


@torch.no_grad()
def frozen_backbone_features(
    tower: ItemTower, batches: Iterable[ItemBatch], device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Image and text backbone outputs for every item, computed only for frozen backbones (the cache)."""
    want_image = tower.image is not None and tower.image.frozen
    want_text = tower.text is not None and tower.text.frozen
    if not (want_image or want_text):
        return None, None
    images, texts = [], []
    for batch in batches:
        batch = batch.to(device)
        if want_image and batch.pixels is not None:
            images.append(tower.image(batch.pixels).float().cpu())
        if want_text and batch.input_ids is not None:
            texts.append(tower.text(batch.input_ids, batch.attention_mask).float().cpu())
    return (torch.cat(images) if images else None), (torch.cat(texts) if texts else None)
