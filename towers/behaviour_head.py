"""The behaviour head: a small MLP over a user vector and an item vector, one logit per output.

It sits on top of the two towers' outputs (u, v, u*v and the retrieval score u.v) and is trained after
them on their frozen outputs, so the retrieval model, its exported embeddings and its index never change
when a head is added or retrained. Saved as `head.safetensors` + `head.json` (config, outputs, and the
hash of the towers it was trained on, so a head never silently serves a model it does not belong to).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tandemrec.config_schema import from_dict, to_dict
from tandemrec.towers import serialization
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.mlp import mlp

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"


@dataclass
class BehaviourHeadConfig:
    dim: int  # the towers' output dimension
    outputs: list[str]  # event types, then "target" when a target domain is configured
    hidden: list[int] = field(default_factory=lambda: [64])
    model_hash: str = ""  # sha256 of the towers' weights the head was trained on
    summary: dict[str, Any] = field(default_factory=dict)  # how it was trained (pairs, epochs, validation)


class BehaviourHead(nn.Module):
    def __init__(self, config: BehaviourHeadConfig) -> None:
        super().__init__()
        if not config.outputs:
            raise ValueError("a behaviour head needs at least one output")
        self.config = config
        self.net = mlp(3 * config.dim + 1, config.hidden, len(config.outputs))

    @property
    def outputs(self) -> list[str]:
        return list(self.config.outputs)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits (n, n_outputs) of user vectors (n, dim) with item vectors (n, dim)."""
        both = users * items
        return self.net(torch.cat([users, items, both, both.sum(-1, keepdim=True)], dim=-1))

    @torch.no_grad()
    def probabilities(self, users: np.ndarray, items: np.ndarray, batch: int = 65536) -> np.ndarray:
        """float32 (n, n_outputs) probabilities; a single user row is paired with every item row."""
        users = np.broadcast_to(np.asarray(users, dtype=np.float32), np.shape(items))
        was_training = self.training
        self.eval()
        out = [  # np.array copies: broadcast views are read-only, which torch.from_numpy warns about
            torch.sigmoid(self(torch.from_numpy(np.array(users[s : s + batch])),
                               torch.from_numpy(np.array(items[s : s + batch], dtype=np.float32))))
            for s in range(0, len(items), batch)
        ]
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.config.outputs)), np.float32)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write head.safetensors and head.json into `folder`, each atomically (weights first)."""
        serialization.write_module(Path(folder), HEAD_WEIGHTS, self.state_dict(), HEAD_CONFIG, to_dict(self.config))

    @classmethod
    def from_pretrained(cls, folder: str | Path, expect_model_hash: str | None = None) -> "BehaviourHead":
        """The head `save_pretrained` wrote, in eval mode; with `expect_model_hash`, refuse one trained on
        other towers (it would score vectors it never saw)."""
        folder = Path(folder)
        serialization.require_files(folder, (HEAD_CONFIG, HEAD_WEIGHTS), "behaviour head")
        raw = serialization.read_config(folder / HEAD_CONFIG, "behaviour head")
        try:
            config = from_dict(BehaviourHeadConfig, raw)
        except (TypeError, ValueError) as err:
            raise EncoderLoadError(f"behaviour head config '{folder / HEAD_CONFIG}' is not valid: {err}") from err
        if expect_model_hash is not None and config.model_hash != expect_model_hash:
            raise EncoderLoadError(
                f"behaviour head '{folder}' was trained on other towers (model hash {config.model_hash[:12]}, the "
                f"run's model is {expect_model_hash[:12]}): retrain it with `tandemrec behaviour RUN`"
            )
        head = cls(config)
        serialization.load_weights(head, folder / HEAD_WEIGHTS, folder / HEAD_CONFIG, "behaviour head")
        return head.eval()


def has_head(folder: str | Path) -> bool:
    return (Path(folder) / HEAD_CONFIG).is_file()
