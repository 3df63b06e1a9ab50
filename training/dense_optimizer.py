"""The optimizer of the dense parameters (towers, projections, fine-tuned backbone layers) and its schedule.

Embedding tables are updated by TorchRec's fused optimizers inside the backward pass; everything else goes
through one AdamW here, a parameter group per learning rate (backbone layers get layer-wise decayed rates).
"""
from __future__ import annotations

import math

import torch
from torchrec.distributed import DistributedModelParallel
from torchrec.optim.keyed import KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from tandemrec.towers.freezing import layerwise_learning_rates
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training.config import TrainConfig


def dense_adamw(dmp: DistributedModelParallel, model: TwoTower, cfg: TrainConfig) -> tuple[KeyedOptimizerWrapper, list[float]]:
    """AdamW over the trainable dense parameters of `dmp` (one group per learning rate), and the groups'
    base rates, which `schedule` scales."""
    dense = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    rates: dict[int, float] = {}
    for encoder in (model.item_tower.image, model.item_tower.text):
        if encoder is not None:
            rates.update(layerwise_learning_rates(encoder, encoder.blocks, cfg.backbone_lr, cfg.backbone_lr_decay))
    trainable = {name: p for name, p in dense.items() if p.requires_grad}
    groups: dict[float, list[torch.Tensor]] = {}
    for p in trainable.values():
        groups.setdefault(rates.get(id(p), cfg.lr), []).append(p)
    # fused: one kernel for every parameter (the per-tensor loop was about 5% of a CPU training step)
    adamw = torch.optim.AdamW(
        [{"params": ps, "lr": lr} for lr, ps in groups.items()], weight_decay=cfg.weight_decay, fused=True
    )
    return KeyedOptimizerWrapper(trainable, lambda _: adamw), list(groups)


def schedule(adamw: KeyedOptimizerWrapper, rates: list[float], step: int, steps: int, cfg: TrainConfig) -> None:
    """Set each group's rate for global `step` of `steps`: linear warm-up, then constant or cosine decay. A
    function of the global step alone, so a resumed run continues it exactly."""
    factor = 1.0
    if step < cfg.warmup_steps:
        factor = (step + 1) / cfg.warmup_steps
    elif cfg.lr_schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    for group, rate in zip(adamw.param_groups, rates):
        group["lr"] = rate * factor
