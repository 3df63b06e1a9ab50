"""Partial fine-tuning: keep a pretrained backbone frozen except for its last k blocks."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tandemrec.errors import ConfigError


def freeze_all_but_last(backbone: nn.Module, blocks: Sequence[nn.Module], trainable: int) -> None:
    """trainable=-1 leaves everything trainable; 0 freezes all; k unfreezes only the last k blocks."""
    if trainable < 0:
        return
    backbone.requires_grad_(False)
    if trainable > len(blocks):
        raise ConfigError(
            f"asked for {trainable} trainable blocks (model.item.image.trainable_blocks or "
            f"model.item.text.trainable_layers), the backbone has {len(blocks)}"
        )
    for block in blocks[len(blocks) - trainable:]:
        block.requires_grad_(True)


def layerwise_learning_rates(
    backbone: nn.Module, blocks: Sequence[nn.Module], base_lr: float, decay: float
) -> dict[int, float]:
    """Learning rate per parameter (by id): base_lr for the top block and what follows it, times
    `decay` for each block further down; parameters before the first block get the lowest rate."""
    in_block = {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}
    rates, level = {}, -1  # parameters are visited in registration order, bottom to top
    for param in backbone.parameters():
        level = in_block.get(id(param), level)
        rates[id(param)] = base_lr * decay ** (len(blocks) - 1 - level)
    return rates


class FreezableEncoder(nn.Module):
    """An encoder that may be frozen (every parameter without a gradient), or partly (`frozen_parts`: the
    modules below its trainable blocks whose outputs are cached). What is frozen stays in evaluation mode
    even while the model trains: no dropout and no batch-norm statistics drifting, so it gives the outputs
    that the frozen-feature cache holds (and that its weights hash names)."""

    frozen_parts: tuple[nn.Module, ...] = ()

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> "FreezableEncoder":
        super().train(mode and not self.frozen)
        for part in self.frozen_parts:
            part.eval()
        return self
