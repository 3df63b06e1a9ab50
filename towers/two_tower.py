"""TwoTower: the user and item towers and the learnable softmax temperature."""
from __future__ import annotations

import math

import torch
from torch import nn

from tandemrec.data.batch import ItemBatch, UserBatch
from tandemrec.towers.config import TwoTowerConfig
from tandemrec.towers.item_tower import ItemTower
from tandemrec.towers.user_tower import UserTower


class TwoTower(nn.Module):
    """Scores are inner products of L2-normalised vectors, the metric of training, index and API alike."""

    def __init__(self, config: TwoTowerConfig, load_weights: bool = True, device: torch.device | None = None) -> None:
        super().__init__()
        self.config = config
        self.user_tower = UserTower(config.user, config.sizes, config.dim, device=device)
        self.item_tower = ItemTower(config.item, config.sizes, config.dim, load_weights, device=device)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=1e-3, max=1.0)

    def forward(self, users: UserBatch, items: ItemBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_tower(users), self.item_tower(items)
