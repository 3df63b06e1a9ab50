"""ItemTower: CLIP image features, BERT text features and id/category embeddings, fused to one vector.

A modality that is absent for an item (no image, no text, unknown id) contributes zeros, so a new item
with content only, or a text query with no image, still gets an embedding in the same space.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

from tandemrec.data.batch import CATEGORY, ITEM_ID, ItemBatch
from tandemrec.towers.config import Cardinalities, ItemTowerConfig
from tandemrec.towers.image_encoder import ImageEncoder
from tandemrec.towers.mlp import mlp
from tandemrec.towers.text_encoder import TextEncoder


class ItemTower(nn.Module):
    def __init__(
        self,
        config: ItemTowerConfig,
        sizes: Cardinalities,
        dim: int,
        load_weights: bool = True,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        width = config.embedding_dim
        self.image = ImageEncoder(config.image, load_weights) if config.image else None
        self.text = TextEncoder(config.text, load_weights) if config.text else None
        self.image_proj = nn.Linear(self.image.output_dim, width) if self.image else None
        self.text_proj = nn.Linear(self.text.output_dim, width) if self.text else None
        tables = []
        if config.id_embedding:
            tables.append(EmbeddingBagConfig(name=ITEM_ID, embedding_dim=width, num_embeddings=sizes.items, feature_names=[ITEM_ID]))
        if config.category_embedding:
            tables.append(EmbeddingBagConfig(name=CATEGORY, embedding_dim=width, num_embeddings=sizes.categories, feature_names=[CATEGORY]))
        self.ebc = EmbeddingBagCollection(tables=tables, device=device) if tables else None
        parts = len(tables) + (self.image is not None) + (self.text is not None)
        if parts == 0:
            raise ValueError("the item tower needs at least one of: image, text, id_embedding, category_embedding")
        self.fusion = mlp(width * parts, [config.fusion_hidden], dim)

    def forward(self, batch: ItemBatch) -> torch.Tensor:
        n, width = len(batch), self.config.embedding_dim
        parts = []
        if self.image is not None:
            image = batch.image_features
            if image is None and batch.pixels is not None:
                image = self.image(batch.pixels)
            parts.append(_masked(self.image_proj, image, batch.has_image, n, width))
        if self.text is not None:
            text = batch.text_features
            if text is None and batch.input_ids is not None:
                text = self.text(batch.input_ids, batch.attention_mask)
            parts.append(_masked(self.text_proj, text, batch.has_text, n, width))
        if self.ebc is not None:
            parts.append(self.ebc(batch.ids).values())
        return F.normalize(self.fusion(torch.cat(parts, dim=1)), dim=-1)


def _masked(proj: nn.Linear, features: torch.Tensor | None, present: torch.Tensor | None, n: int, width: int) -> torch.Tensor:
    if features is None:
        return proj.weight.new_zeros((n, width))
    out = proj(features.to(proj.weight.dtype))
    if present is not None:
        out = out * present.to(out.dtype).unsqueeze(1)
    return out
