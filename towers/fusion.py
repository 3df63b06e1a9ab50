"""Fusion of per-modality item vectors (image, text, id, category), with masking and modality dropout.

Each modality arrives as a (B, E) vector and a (B,) presence mask. Absent modalities never leak into
the result: concatenation zeroes them and tells the MLP which ones are there; the gate gives them no
weight. Modality dropout hides present modalities at random in training, so that an item with only
text (a search query), only an image, or no trained id embedding (a new item) still lands well.
"""
from __future__ import annotations

import torch
from torch import nn

from tandemrec.errors import ConfigError
from tandemrec.towers.config import FUSIONS
from tandemrec.towers.mlp import mlp



def modality_dropout(present: torch.Tensor, p: float) -> torch.Tensor:
    """Drop each present modality with probability p, but never all of an item's modalities."""
    if p <= 0:
        return present
    kept = present & (torch.rand(present.shape, device=present.device) >= p)
    emptied = kept.sum(dim=1) == 0
    return torch.where(emptied.unsqueeze(1), present, kept)


def id_dropout(present: torch.Tensor, column: int, p: float) -> torch.Tensor:
    """Hide modality `column` (the item id) with probability p where the item has other modalities, so
    that the item is embedded from its content alone, as a new item is (DropoutNet)."""
    if p <= 0:
        return present
    others = torch.cat([present[:, :column], present[:, column + 1 :]], dim=1).any(dim=1)
    drop = (torch.rand(present.shape[0], device=present.device) < p) & others
    kept = present.clone()
    kept[:, column] &= ~drop
    return kept


class ConcatFusion(nn.Module):
    """MLP over the concatenated masked vectors and the presence flags."""

    def __init__(self, n_modalities: int, width: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.mlp = mlp(n_modalities * (width + 1), [hidden], dim)

    def forward(self, vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        mask = present.to(vectors.dtype)
        masked = vectors * mask.unsqueeze(-1)  # (B, M, E)
        return self.mlp(torch.cat([masked.flatten(1), mask], dim=1))


class GatedFusion(nn.Module):
    """A learned softmax gate over the present modalities, then an MLP on the weighted sum."""

    def __init__(self, n_modalities: int, width: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
        self.modality = nn.Parameter(torch.zeros(n_modalities, width))
        self.mlp = mlp(width, [hidden], dim)

    def forward(self, vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        scores = self.score(vectors + self.modality).squeeze(-1)  # (B, M)
        scores = scores.masked_fill(~present, float("-inf"))
        weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # rows with nothing present: all zero
        return self.mlp((weights.unsqueeze(-1) * vectors).sum(dim=1))


def make_fusion(kind: str, n_modalities: int, width: int, hidden: int, dim: int) -> nn.Module:
    if kind == "concat":
        return ConcatFusion(n_modalities, width, hidden, dim)
    if kind == "gated":
        return GatedFusion(n_modalities, width, hidden, dim)
    raise ConfigError(f"model.item.fusion must be one of {FUSIONS}, got '{kind}'")
