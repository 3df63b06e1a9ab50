"""The image side of the item tower: an open_clip visual tower (with its projection) loaded the real way."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub.constants as hub_constants
import open_clip
import torch
from torch import nn

from tandemrec.towers.config import ImageEncoderConfig
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.freezing import freeze_all_but_last


class ImageEncoder(nn.Module):
    """Maps uint8 pixels (B, 3, S, S) to CLIP image features (B, output_dim).

    Normalisation uses the mean/std the visual tower was trained with, so cached pixels stay raw
    uint8 and the same cache serves any CLIP model of that input size.
    """

    def __init__(self, config: ImageEncoderConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.visual = _create_visual(config, load_weights)
        self.image_size = _image_size(self.visual)
        mean = getattr(self.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(self.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.output_dim = int(self.visual.output_dim)
        self.blocks = _blocks(self.visual)  # a plain list: the modules stay registered under visual
        freeze_all_but_last(self.visual, self.blocks, config.trainable_blocks)

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.mean.dtype) / 255.0
        return self.visual((x - self.mean) / self.std)


def _create_visual(config: ImageEncoderConfig, load_weights: bool) -> nn.Module:
    if config.model_config is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{config.model_name}.json"
            path.write_text(json.dumps(config.model_config))
            open_clip.add_model_config(path)
    if config.model_name not in open_clip.list_models():
        raise EncoderLoadError(
            f"open_clip has no model config '{config.model_name}'; known: a registered name such as "
            "'ViT-B-32', or give image.model_config (an open_clip model config dict)"
        )
    pretrained = config.pretrained if load_weights else None
    is_file = pretrained is not None and Path(pretrained).is_file()
    tried = f"local file '{pretrained}'" if is_file else (
        f"pretrained tag '{pretrained}' from the local hub cache only" if config.local_files_only
        else f"pretrained tag '{pretrained}' from the hub"
    )
    try:
        with _hub_offline(config.local_files_only and not is_file):
            model = open_clip.create_model(config.model_name, pretrained=pretrained)
    except Exception as err:  # open_clip raises bare RuntimeError/OSError for every download failure
        raise EncoderLoadError(
            f"could not load open_clip '{config.model_name}' with {tried}: {err}. Set image.pretrained to a "
            "local checkpoint file (a state_dict saved with torch.save), fill the hub cache, or set "
            "image.local_files_only=false where the hub is reachable."
        ) from err
    return model.visual


@contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Make huggingface_hub fail at once instead of retrying a network it cannot reach."""
    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = offline or previous
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def _image_size(visual: nn.Module) -> int:
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _blocks(visual: nn.Module) -> list[nn.Module]:
    transformer = getattr(visual, "transformer", None)
    if transformer is not None and hasattr(transformer, "resblocks"):
        return list(transformer.resblocks)
    trunk = getattr(visual, "trunk", None)  # timm backbones
    if trunk is not None and hasattr(trunk, "blocks"):
        return list(trunk.blocks)
    return [visual]
