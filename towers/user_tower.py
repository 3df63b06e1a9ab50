"""UserTower: TorchRec embedding bags over user id, attributes and item history, then an MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

from tandemrec.data.batch import HISTORY, USER_ID, UserBatch
from tandemrec.towers.config import Cardinalities, UserTowerConfig
from tandemrec.towers.mlp import mlp

HISTORY_TABLE = "history_item"


def user_tables(config: UserTowerConfig, sizes: Cardinalities) -> list[EmbeddingBagConfig]:
    """One table per feature; the history bag is mean-pooled over the item-id vocabulary."""
    dim = config.embedding_dim
    tables = [EmbeddingBagConfig(name=USER_ID, embedding_dim=dim, num_embeddings=sizes.users, feature_names=[USER_ID])]
    tables += [
        EmbeddingBagConfig(name=f"user_{name}", embedding_dim=dim, num_embeddings=size, feature_names=[name])
        for name, size in sorted(sizes.user_attributes.items())
    ]
    tables.append(
        EmbeddingBagConfig(
            name=HISTORY_TABLE,
            embedding_dim=dim,
            num_embeddings=sizes.items,
            feature_names=[HISTORY],
            pooling=PoolingType.MEAN,
        )
    )
    return tables


class UserTower(nn.Module):
    def __init__(self, config: UserTowerConfig, sizes: Cardinalities, dim: int, device: torch.device | None = None) -> None:
        super().__init__()
        tables = user_tables(config, sizes)
        self.ebc = EmbeddingBagCollection(tables=tables, device=device)
        self.features = [name for table in tables for name in table.feature_names]
        self.mlp = mlp(config.embedding_dim * len(tables), config.hidden, dim)

    def forward(self, batch: UserBatch) -> torch.Tensor:
        # By key, in table order: a sharded collection returns its keys grouped by shard, in an order that
        # depends on the plan, so the flat `values()` would feed the MLP another layout on N processes.
        pooled = self.ebc(batch.features).to_dict()
        return F.normalize(self.mlp(torch.cat([pooled[name] for name in self.features], dim=1)), dim=-1)
