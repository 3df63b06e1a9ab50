"""Resumable training checkpoints with torch.distributed.checkpoint (DCP).

A checkpoint is a folder `RUN/checkpoints/epoch0003-step0000120/` holding DCP's files (each rank writes
its own shards of the tables and optimizer states; DCP reshards on load, so a checkpoint written by N
processes resumes on M) and `meta.json`: the training position, best-so-far, LR schedule, world size,
a fingerprint of the model and training config, and the SHA-256 of every file. It is written under a
temporary name and renamed once complete, so a killed job leaves either a whole checkpoint or none.
The checkpoint made at the end of the best epoch is kept beyond the last `keep`: it is the best model,
sharded, from which training writes the run's model at its end. Tables are written and read in blocks
of rows (`in_blocks`), so no process ever holds a second copy of its shards.

Before DCP reads a single byte every file is checked against the checksums in the JSON `meta.json`: a
truncated, corrupted or swapped file is refused with its name. Only tensors are stored through DCP. DCP
keeps its own index (`.metadata`) as a pickle, and a checksum cannot vouch for it (whoever can write the
run folder can rewrite meta.json too), so the index is never given to `pickle.load`: it is read by a
restricted unpickler (`safe_unpickle`) that refuses, with the file and the name, anything but the classes
a DCP index holds, and runs nothing.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed._shard.metadata import ShardMetadata
from torch.distributed._shard.sharded_tensor import Shard, ShardedTensor
from torch.distributed._shard.sharded_tensor.metadata import ShardedTensorMetadata
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from tandemrec.errors import TandemrecError
from tandemrec.io.atomic import atomic_write_json, replace_folder, sha256_file
from tandemrec.training.safe_unpickle import ForbiddenGlobal, load_dcp_index

META = "meta.json"
INDEX = ".metadata"  # DCP's index of a checkpoint, a pickle
FORMAT = 1
BLOCK_BYTES = 16 << 20  # of a table's rows per DCP item


class CheckpointError(TandemrecError, RuntimeError):
    """A checkpoint that cannot be resumed: missing, corrupted, or made by another configuration."""


@dataclass
class TrainState:
    """Where training stands; `epoch` and `step` name the next step to run (epochs count from 1)."""

    epoch: int = 1
    step: int = 0
    loss_sum: float = 0.0  # of the current epoch's steps so far
    best_epoch: int = -1
    best_recall: float = -1.0
    stale: int = 0  # epochs since the best one
    history: list[dict] = field(default_factory=list)  # one row per finished epoch (train_metrics.jsonl)


def checkpoint_name(state: TrainState) -> str:
    return f"epoch{state.epoch:04d}-step{state.step:07d}"


class Checkpoints:
    """The checkpoints of one run: save, find the latest, load into a sharded model and its optimizers.

    Every rank calls `save` and `load` (they are collective); only rank 0 writes meta.json and renames.
    """

    def __init__(self, folder: Path, fingerprint: dict[str, Any], keep: int = 2) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.keep = keep

    def save(
        self,
        state: TrainState,
        model: torch.nn.Module,
        optimizer,
        schedule: dict[str, Any],
        extra: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """`extra`: further state tensors, the same on every rank (e.g. mined hard negatives)."""
        final = self.folder / checkpoint_name(state)
        tmp = self.folder / f".{final.name}.tmp"
        rank = dist.get_rank()
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        dcp.save(in_blocks(_tensors(model, optimizer, extra)), checkpoint_id=str(tmp))
        dist.barrier()
        if rank == 0:
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            atomic_write_json(
                tmp / META,
                {
                    "format": FORMAT,
                    "state": asdict(state),
                    "schedule": schedule,
                    "world_size": dist.get_world_size(),
                    "fingerprint": self.fingerprint,
                    "files": files,
                },
            )
            replace_folder(tmp, final)
            best = self.best(state.best_epoch)
            for old in self._complete()[: -self.keep]:
                if old != best:
                    shutil.rmtree(old)
        dist.barrier()
        return final

    def best(self, epoch: int) -> Path:
        """The checkpoint made at the end of `epoch` (the best one is kept beyond `keep`: it is the best model,
        sharded)."""
        return self.folder / checkpoint_name(TrainState(epoch=epoch + 1, step=0))

    def latest(self) -> Path | None:
        """The newest complete checkpoint (temporary folders of a killed save are ignored)."""
        done = self._complete()
        return done[-1] if done else None

    def _complete(self) -> list[Path]:
        """The complete checkpoints, oldest first (their names sort by position)."""
        return sorted(p for p in self.folder.glob("epoch*-step*") if (p / META).is_file()) if self.folder.is_dir() else []

    def check(self, path: Path) -> dict[str, Any]:
        """meta.json of a checkpoint, after checking its files, that DCP's index holds nothing but DCP's
        classes, and that it was made by this configuration."""
        meta_path = Path(path) / META
        if not meta_path.is_file():
            raise CheckpointError(f"'{path}' is not a complete checkpoint: it has no {META}")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"checkpoint file '{meta_path}' is corrupted: {err}") from err
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"'{meta_path}': checkpoint format {meta.get('format')}, this version reads {FORMAT}")
        for name, digest in meta["files"].items():
            file = Path(path) / name
            if not file.is_file():
                raise CheckpointError(f"checkpoint file '{file}' is missing")
            if sha256_file(file) != digest:
                raise CheckpointError(f"checkpoint file '{file}' is corrupted (its SHA-256 differs from {META})")
        read_index(Path(path) / INDEX)
        differ = _differences(meta["fingerprint"], self.fingerprint)
        if differ:
            raise CheckpointError(
                f"checkpoint '{path}' was made by another configuration; these settings differ "
                f"(checkpoint -> now): {'; '.join(differ[:8])}"
            )
        return meta

    def load(
        self, path: Path, model: torch.nn.Module, optimizer, extra: dict[str, torch.Tensor] | None = None
    ) -> tuple[TrainState, dict[str, Any]]:
        """Load a checked checkpoint in place (resharded to this world size, `extra` tensors too); returns
        the state and the LR schedule's saved state."""
        meta = self.check(path)
        tensors = _tensors(model, optimizer, extra)
        dcp.load(in_blocks(tensors), storage_reader=IndexCheckedReader(path))  # into `tensors`' memory
        model.load_state_dict(tensors["model"])
        optimizer.load_state_dict({**optimizer.state_dict(), "state": tensors["optimizer"]})
        return TrainState(**meta["state"]), meta["schedule"]

    def restore_model(self, path: Path, model: torch.nn.Module) -> None:
        """Load only the model's state of a checked checkpoint in place, resharded to this world size."""
        self.check(path)
        tensors = {"model": model.state_dict()}
        dcp.load(in_blocks(tensors), storage_reader=IndexCheckedReader(path))
        model.load_state_dict(tensors["model"])


def read_index(file: Path) -> Metadata:
    """DCP's index of a checkpoint, unpickled by the restricted unpickler: a name outside DCP's classes is
    refused before it is imported, so nothing in the file runs."""
    if not file.is_file():
        raise CheckpointError(f"checkpoint file '{file}' is missing")
    try:
        with open(file, "rb") as stream:
            index = load_dcp_index(stream)
    except ForbiddenGlobal as err:
        raise CheckpointError(
            f"checkpoint file '{file}' tries to load '{err.module}.{err.name}', which is not a class of a DCP "
            "checkpoint index; refused, nothing in it was run"
        ) from err
    except Exception as err:  # a malformed pickle raises any of UnpicklingError, EOFError, ValueError, ...
        raise CheckpointError(f"checkpoint file '{file}' is not a readable DCP checkpoint index: {err}") from err
    if not isinstance(index, Metadata):
        raise CheckpointError(f"checkpoint file '{file}' holds a {type(index).__name__}, not a DCP checkpoint index")
    return index


class IndexCheckedReader(dcp.FileSystemReader):
    """DCP's file reader, but reading the index through `read_index` instead of `pickle.load` (the
    rest mirrors torch's FileSystemReader.read_metadata)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        index = read_index(Path(self._get_metadata_path(kwargs.get("rank"))))
        if getattr(index, "storage_meta", None) is None:
            index.storage_meta = StorageMeta()
        index.storage_meta.load_id = self.load_id
        return index


def _tensors(model: torch.nn.Module, optimizer, extra: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    """What DCP saves and loads: the model's state (sharded tables as ShardedTensors) and the optimizer
    states (fused ones sharded like their tables); the optimizers' param groups are rebuilt by the
    trainer, their learning rates restored from the schedule."""
    tensors = {"model": model.state_dict(), "optimizer": optimizer.state_dict()["state"]}
    return {**tensors, "extra": extra} if extra else tensors


def in_blocks(state: Any) -> Any:
    """`state` with every ShardedTensor re-cut into blocks of rows (views of the same memory).

    A table shard of TorchRec's fused kernel is a view into one buffer of all its tables, and DCP copies
    such a view whole before writing it: the copy of a large shard would double the process's memory. A
    block is copied, written and let go one at a time instead; loading reads a block at a time too."""
    if isinstance(state, dict):
        return {key: in_blocks(value) for key, value in state.items()}
    if not isinstance(state, ShardedTensor):
        return state
    meta = state.metadata()
    local = {tuple(s.metadata.shard_offsets): s.tensor for s in state.local_shards()}
    blocks, pieces = [], []
    for shard in meta.shards_metadata:
        (row, *rest), (height, *sizes) = shard.shard_offsets, shard.shard_sizes
        step = max(1, BLOCK_BYTES // max(1, math.prod(sizes) * meta.tensor_properties.dtype.itemsize))
        mine = local.get(tuple(shard.shard_offsets))
        for start in range(0, height, step):
            block = ShardMetadata([row + start, *rest], [min(step, height - start), *sizes], shard.placement)
            blocks.append(block)
            if mine is not None:
                pieces.append(Shard(mine[start : start + step], block))
    global_meta = ShardedTensorMetadata(blocks, meta.size, meta.tensor_properties)
    return ShardedTensor._init_from_local_shards_and_global_metadata(pieces, global_meta)


def _differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
