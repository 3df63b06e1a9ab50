"""UserTower: TorchRec embedding bags over user id, attributes and item history, then an MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

from tandemrec.data.batch import GAP_BUCKETS, HISTORY, HISTORY_GAP, USER_ID, UserBatch, position_keys
from tandemrec.towers.config import Cardinalities, UserTowerConfig
from tandemrec.towers.history_attention import HistoryAttention
from tandemrec.towers.mlp import mlp

HISTORY_TABLE = "history_item"
HISTORY_GAP_TABLE = "history_gap"


def user_tables(config: UserTowerConfig, sizes: Cardinalities) -> list[EmbeddingBagConfig]:
    """One table per feature; the history bag is mean-pooled over the item-id vocabulary. A history read as
    a sequence has one feature per position in the same item table, and a table of time-gap buckets."""
    dim = config.embedding_dim
    tables = [EmbeddingBagConfig(name=USER_ID, embedding_dim=dim, num_embeddings=sizes.users, feature_names=[USER_ID])]
    tables += [
        EmbeddingBagConfig(name=f"user_{name}", embedding_dim=dim, num_embeddings=size, feature_names=[name])
        for name, size in sorted(sizes.user_attributes.items())
    ]
    if not config.sequence:
        return tables + [
            EmbeddingBagConfig(
                name=HISTORY_TABLE, embedding_dim=dim, num_embeddings=sizes.items, feature_names=[HISTORY],
                pooling=PoolingType.MEAN,
            )
        ]
    return tables + [
        EmbeddingBagConfig(
            name=HISTORY_TABLE, embedding_dim=dim, num_embeddings=sizes.items,
            feature_names=position_keys(HISTORY, config.history_len), pooling=PoolingType.SUM,
        ),
        EmbeddingBagConfig(
            name=HISTORY_GAP_TABLE, embedding_dim=dim, num_embeddings=GAP_BUCKETS,
            feature_names=position_keys(HISTORY_GAP, config.history_len), pooling=PoolingType.SUM,
        ),
    ]


class UserTower(nn.Module):
    def __init__(self, config: UserTowerConfig, sizes: Cardinalities, dim: int, device: torch.device | None = None) -> None:
        super().__init__()
        tables = user_tables(config, sizes)
        self.ebc = EmbeddingBagCollection(tables=tables, device=device)
        if config.sequence:
            self.history = HistoryAttention(
                config.embedding_dim, config.history_len, config.attention_layers, config.attention_heads
            )
            self.positions = position_keys(HISTORY, config.history_len)
            self.gaps = position_keys(HISTORY_GAP, config.history_len)
            sequences = (HISTORY_TABLE, HISTORY_GAP_TABLE)
            self.features = [t.feature_names[0] for t in tables if t.name not in sequences]
        else:
            self.history = None
            self.features = [name for table in tables for name in table.feature_names]
        self.mlp = mlp(config.embedding_dim * (len(self.features) + (self.history is not None)), config.hidden, dim)

    def forward(self, batch: UserBatch) -> torch.Tensor:
        # By key, in table order: a sharded collection returns its keys grouped by shard, in an order that
        # depends on the plan, so the flat `values()` would feed the MLP another layout on N processes.
        pooled = self.ebc(batch.features).to_dict()
        parts = [pooled[name] for name in self.features]
        if self.history is not None:
            parts.append(self._history(batch, pooled))
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=-1)

    def _history(self, batch: UserBatch, pooled: dict[str, torch.Tensor]) -> torch.Tensor:
        """The attention encoder's vector of each user's history (positions read from the batch's lengths:
        a position past the user's history holds no item)."""
        keys = batch.features.keys()
        first = keys.index(self.positions[0])
        lengths = batch.features.lengths().view(len(keys), -1)[first : first + len(self.positions)]
        items = torch.stack([pooled[name] for name in self.positions], dim=1)
        gaps = torch.stack([pooled[name] for name in self.gaps], dim=1)
        return self.history(items, gaps, (lengths > 0).T)
