"""TwoTower: the user and item towers and the learnable softmax temperature."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from tandemrec.config_schema import from_dict, to_dict
from tandemrec.data.batch import ItemBatch, UserBatch
from tandemrec.towers import serialization
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

    def portable_config(self) -> TwoTowerConfig:
        """The config with the text encoder's architecture inlined, so loading needs no source or hub."""
        text = self.item_tower.text
        if text is None:
            return self.config
        text_config = dataclasses.replace(self.config.item.text, model_config=text.backbone.config.to_dict())
        return dataclasses.replace(self.config, item=dataclasses.replace(self.config.item, text=text_config))

    def save_pretrained(
        self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None, tokenizer=None
    ) -> str:
        """Write `folder`: config.json, model.safetensors (`state_dict`, default this model's: training passes
        its sharded model's, and then every process of the group calls this together) and, with `tokenizer`,
        tokenizer/. Returns the model hash (sha256 of the weights)."""
        folder = Path(folder)
        serialization.write_module(
            folder, serialization.WEIGHTS_FILE, state_dict or self.state_dict(),
            serialization.CONFIG_FILE, to_dict(self.portable_config()),
        )
        if tokenizer is not None and not (dist.is_initialized() and dist.get_rank() != 0):
            serialization.save_tokenizer(tokenizer, folder / serialization.TOKENIZER_DIR)
        return serialization.model_hash(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "TwoTower":
        """The model `save_pretrained` wrote, in eval mode: the architecture from config.json (no encoder
        weights fetched), then every tensor from model.safetensors (strict)."""
        folder = Path(folder)
        model = cls(saved_config(folder), load_weights=False)
        serialization.load_weights(model, folder / serialization.WEIGHTS_FILE, folder / serialization.CONFIG_FILE, "model")
        return model.eval()


def saved_config(folder: Path) -> TwoTowerConfig:
    """The architecture a model folder's config.json describes, once both its files are known to be there."""
    serialization.require_files(folder, (serialization.CONFIG_FILE, serialization.WEIGHTS_FILE), "model")
    return from_dict(TwoTowerConfig, serialization.read_config(folder / serialization.CONFIG_FILE, "model"))
