"""The folder format shared by the saved modules (`TwoTower`, `BehaviourHead`): a JSON config next to a
safetensors weights file, each written atomically, read back with errors that name the file.

The modules' own `save_pretrained` / `from_pretrained` (the Hugging Face names) say which files and which
config class; this module knows only files, tensors and messages. Loading unpickles nothing: JSON and
safetensors only. huggingface_hub's `PyTorchModelHubMixin` is not used: it rebuilds a model from its
constructor arguments, which would fetch the pretrained encoders before overwriting them, and writes
neither the inlined text architecture nor the tokenizer folder.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tandemrec.errors import MissingFileError
from tandemrec.io.atomic import atomic_path, atomic_write_json
from tandemrec.towers.errors import EncoderLoadError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


def write_module(folder: Path, weights_file: str, state_dict: dict[str, torch.Tensor], config_file: str, config: dict) -> None:
    """Write the weights, then the config (each atomically), so a config never names weights that are not there."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(folder / weights_file) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_json(folder / config_file, config)


def require_files(folder: Path, names: tuple[str, ...], what: str) -> None:
    for name in names:
        if not (folder / name).is_file():
            raise MissingFileError(f"{what} folder '{folder}' has no {name}")


def read_config(path: Path, what: str) -> Any:
    """The parsed JSON of a saved module's config file."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EncoderLoadError(f"{what} config '{path}' is not valid JSON: {err}") from err


def load_weights(module: nn.Module, path: Path, config_path: Path, what: str) -> None:
    """Load the safetensors file into `module`, every tensor matched both ways (strict), or name the mismatch."""
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise EncoderLoadError(f"{what} weights '{path}' are unreadable: {err}") from err
    try:
        missing, unexpected = module.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatches raise even with strict=False
        raise EncoderLoadError(f"{what} weights '{path}' do not match {config_path}: {err}") from err
    if missing or unexpected:
        raise EncoderLoadError(
            f"{what} weights '{path}' do not match {config_path}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def model_hash(folder: str | Path) -> str:
    """sha256 of a model folder's weights file: what indexes, heads and exports name the towers by."""
    digest = hashlib.sha256()
    with open(Path(folder) / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_tokenizer(tokenizer, dest: Path) -> None:
    """Replace the folder `dest` with the tokenizer's files as a whole (written beside it, then renamed)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tokenizer.save_pretrained(str(tmp))
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
