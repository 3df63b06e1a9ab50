"""Self-attention over a user's last items: the sequence alternative to the mean-pooled history bag.

A bag's mean weighs a user's first and last purchase alike and forgets when they happened; recent events
predict the next one best on per-user temporal splits. Each history position (newest first) enters as its
item embedding plus a learned position embedding and the embedding of its time-gap bucket (how long before
the user's newest event, on a log scale); a learned summary token attends to them, and its output is the
history's vector. The item and gap embeddings come from the user tower's TorchRec tables (one feature per
position, sharing one table), so that the history table stays sharded like any other.
"""
from __future__ import annotations

import torch
from torch import nn


class HistoryAttention(nn.Module):
    def __init__(self, dim: int, length: int, layers: int, heads: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.summary = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        # No dropout: the same batch gives the same output on every rank and world size.
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, items: torch.Tensor, gaps: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) item and gap embeddings and a (B, N) bool mask of the positions a user's history
        reaches -> (B, dim); a user without history gets the summary token's own output."""
        x = torch.cat([self.summary.expand(len(items), -1, -1), items + gaps + self.position], dim=1)
        ignored = torch.cat([present.new_zeros((len(items), 1)), ~present], dim=1)
        return self.encoder(x, src_key_padding_mask=ignored)[:, 0]
