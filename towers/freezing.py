"""Partial fine-tuning: keep a pretrained backbone frozen except for its last k blocks."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def freeze_all_but_last(backbone: nn.Module, blocks: Sequence[nn.Module], trainable: int) -> None:
    """trainable=-1 leaves everything trainable; 0 freezes all; k unfreezes only the last k blocks."""
    if trainable < 0:
        return
    backbone.requires_grad_(False)
    if trainable > len(blocks):
        raise ValueError(f"asked for {trainable} trainable blocks, the backbone has {len(blocks)}")
    for block in blocks[:trainable]:
        block.requires_grad_(True)
