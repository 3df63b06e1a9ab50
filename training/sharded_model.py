"""A saved model loaded by the processes of a job after training with its tables sharded over them, the
way training holds them: each process reads only its shards' rows from model.safetensors, so none holds
(or reads) a whole table, and a plan that does not fit is refused as training's is.

The tables' lookups then answer only with every process of the group, in step (towers/inference.py);
the dense rest (encoders, projections) is whole on each process and works alone.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.types import ShardedTensor

from tandemrec.towers import serialization
from tandemrec.towers.two_tower import TwoTower, saved_config
from tandemrec.training import distributed
from tandemrec.training.config import TrainConfig
from tandemrec.training.table_init import SavedTables

log = logging.getLogger(__name__)


def load_sharded(folder: str | Path, train: TrainConfig) -> tuple[TwoTower, DistributedModelParallel]:
    """Collective over the group: the model `TwoTower.save_pretrained` wrote to `folder`, in eval mode, its
    tables sharded as `train` says (`train.sharding`, `train.table_sharding`, `train.max_memory_per_process`),
    and the wrapper that holds the shards (keep it while the model is used)."""
    folder = Path(folder)
    config_path, weights = folder / serialization.CONFIG_FILE, folder / serialization.WEIGHTS_FILE
    model = TwoTower(saved_config(folder), load_weights=False, device=torch.device("meta"))
    env = distributed.Env(dist.get_rank(), dist.get_world_size(), torch.device("cpu"), owns_group=False)
    dmp, _ = distributed.shard(
        model, env, train.embedding_lr, train.sharding, train.table_sharding, train.embedding_optimizer,
        SavedTables(weights), train.max_memory_bytes(),
    )
    tables = [key for key in model.state_dict() if distributed.is_table(key)]
    serialization.load_dense_weights(model, weights, config_path, "model", tables)
    log.info("process %d of %d holds %s", env.rank, env.world_size, held_rows(model))
    return model.eval(), dmp


def held_rows(model: torch.nn.Module) -> str:
    """What this process holds of each sharded table, e.g. "user_id rows 0-150 of 301": one entry per
    shard (with its columns when it has only some), "none" for a table held elsewhere."""
    entries = []
    for key, value in model.state_dict().items():
        if not isinstance(value, ShardedTensor):
            continue
        rows, dim = value.size()
        name = distributed.table_name(key)
        shards = [
            f"rows {r}-{r + h} of {rows}" + (f" columns {c}-{c + w} of {dim}" if w < dim else "")
            for s in value.local_shards()
            for (r, c), (h, w) in [(s.metadata.shard_offsets, s.metadata.shard_sizes)]
        ]
        entries.append(f"{name} {', '.join(shards) or 'none'}")
    return "; ".join(entries)
