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
from tandemrec.errors import ConfigError
from tandemrec.towers.config import Cardinalities, ItemTowerConfig
from tandemrec.towers.image_encoder import ImageEncoder
from tandemrec.towers.fusion import id_dropout, make_fusion, modality_dropout
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
        self.modalities = [name for name, on in (("image", self.image), ("text", self.text)) if on is not None]
        self.modalities += [t.name for t in tables]
        if not self.modalities:
            raise ConfigError("model.item: the item tower needs at least one of: image, text, id_embedding, category_embedding")
        self.fusion = make_fusion(config.fusion, len(self.modalities), width, config.fusion_hidden, dim)
        # Where new items land (training/new_items.py): fitted after training, saved with the weights.
        self.register_buffer("new_item_offset", torch.zeros(dim, device=device))

    def forward(self, batch: ItemBatch) -> torch.Tensor:
        """L2-normalised item vectors; modality dropout applies in training mode only."""
        n = len(batch)
        vectors, present = [], []
        if self.image is not None:
            image = batch.image_features
            if image is None and batch.pixels is not None:
                image = self.image(batch.pixels)
            vectors.append(self._project(self.image_proj, image, n))
            present.append(_flag(batch.has_image, image is not None, n, vectors[-1].device))
        if self.text is not None:
            text = self.text_output(batch)
            vectors.append(self._project(self.text_proj, text, n))
            present.append(_flag(batch.has_text, text is not None, n, vectors[-1].device))
        if self.ebc is not None:
            pooled = self.ebc(batch.ids)
            for key in self.modalities[len(vectors):]:
                vectors.append(pooled[key])
                present.append(batch.ids[key].values() != 0)  # index 0: unknown id or category
        stacked = torch.stack(vectors, dim=1)
        mask = torch.stack(present, dim=1)
        if self.training:
            mask = modality_dropout(mask, self.config.modality_dropout)
            if ITEM_ID in self.modalities:
                mask = id_dropout(mask, self.modalities.index(ITEM_ID), self.config.id_dropout)
        return F.normalize(self.fusion(stacked, mask), dim=-1)

    def text_output(self, batch: ItemBatch) -> torch.Tensor | None:
        """The text encoder's pooled output for the batch, from whatever the batch carries: the cached
        output of a frozen encoder, the cached states of a partly trained one's frozen bottom, or tokens;
        None without text."""
        if batch.text_features is not None:
            return batch.text_features
        if batch.text_hidden is not None:
            return self.text.top(batch.text_hidden, batch.attention_mask)
        if batch.input_ids is not None:
            return self.text(batch.input_ids, batch.attention_mask)
        return None

    def place_new_items(self, vectors: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """`vectors` (forward's output) with the rows of new items (`new`: no trained id, embedded from
        content alone) moved by the fitted offset, so that they compete with trained items; still unit
        length, so that near-duplicates stay near and inner products stay cosines."""
        moved = F.normalize(vectors + self.new_item_offset.to(vectors), dim=-1)
        return torch.where(new.unsqueeze(1).to(vectors.device), moved, vectors)

    def _project(self, proj: nn.Linear, features: torch.Tensor | None, n: int) -> torch.Tensor:
        if features is None:
            return proj.weight.new_zeros((n, self.config.embedding_dim))
        return proj(features.to(proj.weight.dtype))


def _flag(given: torch.Tensor | None, available: bool, n: int, device: torch.device) -> torch.Tensor:
    if not available:
        return torch.zeros(n, dtype=torch.bool, device=device)
    return torch.ones(n, dtype=torch.bool, device=device) if given is None else given.to(device).bool()
