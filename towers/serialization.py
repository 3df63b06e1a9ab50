"""Save and load a TwoTower as a folder: config.json + model.safetensors + tokenizer/.

Loading needs neither the training code nor a model hub: the encoders' architectures are stored in
the config and their weights in the safetensors file. Nothing is unpickled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tandemrec.data.atomic import atomic_path, atomic_write_json
from tandemrec.errors import MissingFileError
from tandemrec.towers.config import TwoTowerConfig, from_dict, to_dict
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.two_tower import TwoTower

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


def portable_config(model: TwoTower) -> TwoTowerConfig:
    """The model's config with the text encoder's architecture inlined, so loading needs no source."""
    config = model.config
    text = model.item_tower.text
    if text is None:
        return config
    text_config = dataclasses.replace(config.item.text, model_config=text.backbone.config.to_dict())
    return dataclasses.replace(config, item=dataclasses.replace(config.item, text=text_config))


def save_model(
    model: TwoTower,
    folder: str | Path,
    state_dict: dict[str, torch.Tensor] | None = None,
    tokenizer=None,
) -> str:
    """Write the model folder; returns the sha256 of the weights file (the model hash)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state_dict or model.state_dict()).items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_json(folder / CONFIG_FILE, to_dict(portable_config(model)))
    if tokenizer is not None:
        _save_tokenizer(tokenizer, folder / TOKENIZER_DIR)
    return model_hash(folder)


def model_hash(folder: str | Path) -> str:
    digest = hashlib.sha256()
    with open(Path(folder) / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(folder: str | Path) -> TwoTower:
    """Rebuild the architecture from config.json and load the safetensors weights (strict)."""
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise MissingFileError(f"model folder '{folder}' has no {name}")
    try:
        raw_config = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EncoderLoadError(f"model config '{folder / CONFIG_FILE}' is not valid JSON: {err}") from err
    config = from_dict(TwoTowerConfig, raw_config)
    model = TwoTower(config, load_weights=False)
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise EncoderLoadError(f"model weights '{folder / WEIGHTS_FILE}' are unreadable: {err}") from err
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatches raise even with strict=False
        raise EncoderLoadError(
            f"model weights '{folder / WEIGHTS_FILE}' do not match {folder / CONFIG_FILE}: {err}"
        ) from err
    if missing or unexpected:
        raise EncoderLoadError(
            f"model weights '{folder / WEIGHTS_FILE}' do not match {folder / CONFIG_FILE}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval()


def _save_tokenizer(tokenizer, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tokenizer.save_pretrained(str(tmp))
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
