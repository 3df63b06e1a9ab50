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
import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor

from tandemrec.errors import MissingFileError
from tandemrec.io.atomic import atomic_path, atomic_write_json
from tandemrec.io.safetensors_stream import Layout, Piece
from tandemrec.towers.errors import EncoderLoadError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


def write_module(folder: Path, weights_file: str, state_dict: dict[str, torch.Tensor], config_file: str, config: dict) -> None:
    """Write the weights, then the config (each atomically), so a config never names weights that are not there.

    A state holding sharded tables (a sharded model's `state_dict()`) is written by every process of the
    group together, each its own shards (`write_sharded`); then rank 0 writes the config."""
    if any(isinstance(v, ShardedTensor) for v in state_dict.values()):
        write_sharded(folder / weights_file, state_dict)
        if dist.get_rank() == 0:
            atomic_write_json(folder / config_file, config)
        dist.barrier()
        return
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(folder / weights_file) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_json(folder / config_file, config)


def write_sharded(path: Path, state_dict: dict[str, torch.Tensor | ShardedTensor]) -> None:
    """Collective: one safetensors file of a state whose tables are sharded over the group, streamed by each
    process from its own shards (rank 0 also writes the replicated tensors), then renamed into place by
    rank 0 once every process is done; no process ever holds a whole table."""
    layout = Layout.of({k: (tuple(v.size()), v.dtype) for k, v in state_dict.items()}, {"format": "pt"})
    tmp, rank = path.with_name(f".{path.name}.partial"), dist.get_rank()
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        layout.create(tmp)
    dist.barrier()
    pieces = [
        Piece(key, tuple(s.metadata.shard_offsets), s.tensor)
        for key, value in state_dict.items()
        if isinstance(value, ShardedTensor)
        for s in value.local_shards()
    ]
    if rank == 0:
        pieces += [Piece(k, (0,) * v.dim(), v) for k, v in state_dict.items() if not isinstance(v, ShardedTensor)]
    layout.write(tmp, pieces)
    dist.barrier()
    if rank == 0:
        os.replace(tmp, path)
    dist.barrier()


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
    _check_keys(missing, unexpected, path, config_path, what)


def load_dense_weights(module: nn.Module, path: Path, config_path: Path, what: str, sharded: Collection[str]) -> None:
    """`load_weights` for a module whose tables are sharded: every tensor but those of the keys in
    `sharded` (whose shards were filled from the same file) is read from it and copied in; the sharded
    ones are never read, so no process reads a whole table. Keys are matched both ways."""
    state = module.state_dict()
    try:
        with safe_open(str(path), "pt") as weights:
            saved = set(weights.keys())
            _check_keys(sorted(state.keys() - saved), sorted(saved - state.keys()), path, config_path, what)
            for key in sorted(state.keys() - set(sharded)):
                value = weights.get_tensor(key)
                if value.shape != state[key].shape:
                    raise EncoderLoadError(
                        f"{what} weights '{path}' do not match {config_path}: {key} is {list(value.shape)}, "
                        f"the model's is {list(state[key].shape)}"
                    )
                state[key].copy_(value)
    except (SafetensorError, OSError) as err:
        raise EncoderLoadError(f"{what} weights '{path}' are unreadable: {err}") from err


def _check_keys(missing: list[str], unexpected: list[str], path: Path, config_path: Path, what: str) -> None:
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
