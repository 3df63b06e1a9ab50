"""The batch types that cross from data/ into the towers: the only thing towers/ knows of data/."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

USER_ID = "user_id"
HISTORY = "history"
# A history read as a sequence (model.user.history_encoder = "attention"): one feature per position,
# newest first, each holding one item (or none past the user's history), and the time-gap bucket of each.
HISTORY_GAP = "history_gap"
GAP_BUCKETS = 24  # floor(log2(1 + minutes before the newest history event)), 0..22; 23: unknown
UNKNOWN_GAP = GAP_BUCKETS - 1


def position_keys(name: str, length: int) -> list[str]:
    """The features of a sequence's positions: name_0 (newest) .. name_{length-1}."""
    return [f"{name}_{j}" for j in range(length)]
ITEM_ID = "item_id"
CATEGORY = "category"


@dataclass
class UserBatch:
    """User features as one KeyedJaggedTensor: `user_id`, one key per attribute, and the `history` bag."""

    features: KeyedJaggedTensor

    def to(self, device: torch.device, non_blocking: bool = False) -> "UserBatch":
        return UserBatch(self.features.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "UserBatch":
        """In page-locked memory, for an asynchronous copy to a GPU."""
        return UserBatch(self.features.pin_memory())

    def __len__(self) -> int:
        return self.features.stride()


@dataclass
class ItemBatch:
    """Item content for B items. Any modality may be absent (None) or masked per item (has_*)."""

    ids: KeyedJaggedTensor  # `item_id` and `category`, one value per item (0 = unknown)
    input_ids: torch.Tensor | None = None  # (B, L) token ids
    attention_mask: torch.Tensor | None = None  # (B, L)
    pixels: torch.Tensor | None = None  # (B, 3, S, S) uint8
    has_text: torch.Tensor | None = None  # (B,) bool
    has_image: torch.Tensor | None = None  # (B,) bool
    text_features: torch.Tensor | None = None  # (B, D) cached outputs of a frozen text backbone
    text_hidden: torch.Tensor | None = None  # (B, L, H) cached token states of a text backbone's frozen bottom
    image_features: torch.Tensor | None = None  # (B, D) cached outputs of a frozen image backbone

    def to(self, device: torch.device, non_blocking: bool = False) -> "ItemBatch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "ItemBatch":
        """In page-locked memory, for an asynchronous copy to a GPU."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, move: Callable) -> "ItemBatch":
        """`move` applied to every part present."""
        present = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{name: move(t) for name, t in present.items() if t is not None})

    def __len__(self) -> int:
        return self.ids.stride()
