"""Process group set-up and TorchRec DistributedModelParallel wrapping, for 1 or N processes.

A single process still goes through DMP (world size 1), so the fused-optimizer tables and the
state-dict handling are the same code on a laptop and under torchrun.
"""
from __future__ import annotations

import gc
import math
import os
import resource
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.optim import _apply_optimizer_in_backward as apply_optimizer_in_backward
from torchrec import EmbeddingBagCollection
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.planner.types import PlannerError
from torchrec.distributed.types import ShardedTensor, ShardingPlan, ShardingType
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from tandemrec.errors import ConfigError, TandemrecError
from tandemrec.training.table_init import SavedTables, TableInit

# The optimizers TorchRec fuses into the tables' backward on CPU and GPU alike (Adam is GPU-only).
EMBEDDING_OPTIMIZERS = {"rowwise_adagrad": RowWiseAdagrad, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
SHARDING_TYPES = tuple(t.value for t in ShardingType)
# The lines of TorchRec's refusal that say how much memory was needed and how much there was.
PLANNER_FIGURES = ("Per rank reservation for dense storage", "Global storage available", "Global storage requirement")
ROW_SHARDINGS = (ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value, ShardingType.GRID_SHARD.value)


class ShardingError(TandemrecError, RuntimeError):
    """The tables cannot be sharded as configured over this many processes."""


@dataclass
class Env:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this code created the process group and must destroy it


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but CUDA is not available on this machine")
    return torch.device(name)


def cpu_threads(requested: int = 0) -> int:
    """Torch threads for a training process on CPU: `requested` when not 0, else this host's cores divided
    among its processes (torchrun's LOCAL_WORLD_SIZE), and never more than torch would take anyway
    (OMP_NUM_THREADS): N processes that each take every core oversubscribe them (that made one training
    step 4x slower)."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def init(device_name: str = "auto", threads: int = 0) -> Env:
    """Join torchrun's group when launched by it (NCCL on GPUs, gloo on CPU), else make a private group of
    one; on CPU, give this process its share of the cores (`cpu_threads(threads)`)."""
    device = pick_device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(threads))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        return Env(dist.get_rank(), dist.get_world_size(), device, owns_group=False)
    if "WORLD_SIZE" in os.environ:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return Env(dist.get_rank(), dist.get_world_size(), device, owns_group=True)


def shutdown(env: Env) -> None:
    """Free what holds communicators before destroying the group: a group destroyed under live DMP
    modules or fbgemm kernels sometimes aborts the process at exit (see STACK.md).

    Called from a `finally`, on the way out of an error (`sys.exc_info()` then names it) a process does
    not wait for the others: they may be inside another collective, which would never end, and both would
    hang. It leaves, and torchrun stops the others when it sees one process fail."""
    gc.collect()
    if env.owns_group and dist.is_initialized():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def peak_host_memory(device: torch.device) -> int:
    """The largest peak resident set, in bytes, of the group's processes so far: what a host must give each
    training process (tables, model, data and libraries)."""
    peak = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024], dtype=torch.int64, device=device)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    return int(peak.item())


def move_dense(model: nn.Module, device: torch.device) -> None:
    """Move the model to `device`, but for tables still on the meta device: `shard` materialises those, as
    shards, on the device."""
    model._apply(lambda t: t if t.is_meta else t.to(device))


class CpuRowWiseSharder(EmbeddingBagCollectionSharder):
    """TorchRec offers row-wise sharding only for GPU compute; the fused CPU kernel trains it correctly too."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = super().sharding_types(compute_device_type)
        return types + [t for t in ROW_SHARDINGS if t not in types]


def table_shardings(model: nn.Module, default: str, per_table: dict[str, str], device: str = "cpu") -> dict[str, str]:
    """The sharding type of every table of the model: `per_table[name]`, else `default`.

    Data-parallel tables use fbgemm's dense kernel, which has no autograd on CPU (it warns "an autograd
    kernel was not registered" and the tables never train), so they are refused there."""
    names = [t.name for m in model.modules() if isinstance(m, EmbeddingBagCollection) for t in m.embedding_bag_configs()]
    unknown = sorted(set(per_table) - set(names))
    if unknown:
        raise ShardingError(f"train.table_sharding names tables the model does not have: {unknown}; it has {names}")
    chosen = {name: per_table.get(name, default) for name in names}
    for name, kind in chosen.items():
        if kind not in SHARDING_TYPES:
            raise ShardingError(f"table '{name}': sharding '{kind}' is not one of {list(SHARDING_TYPES)}")
        if kind == ShardingType.DATA_PARALLEL.value and device == "cpu":
            raise ShardingError(
                f"table '{name}': data_parallel tables are not trained on CPU (fbgemm's dense CPU kernel has no "
                "autograd); use table_wise, column_wise or row_wise there"
            )
    return chosen


def shard(
    model: nn.Module,
    env: Env,
    embedding_lr: float,
    sharding: str = "table_wise",
    table_sharding: dict[str, str] | None = None,
    embedding_optimizer: str = "rowwise_adagrad",
    init: TableInit | SavedTables | None = None,
    max_memory: int = 0,
) -> tuple[DistributedModelParallel, ShardingPlan]:
    """Fuse the embedding optimizer into the tables' backward, plan the sharding over the real world size and
    wrap the model; the dense rest is data-parallel (DDP). Both average gradients over ranks.

    Every table gets the sharding type asked for and, but for data-parallel tables, the fused fbgemm
    kernel: left to itself the planner makes small tables data-parallel with a dense kernel.

    Tables built on the meta device are materialised as shards only and filled by `init` (seeded rows, the
    same for any process count, or a saved model's rows); a plan that does not fit `max_memory` bytes per
    process (0: the host's share) is refused before any table memory is allocated. Tables built in memory
    keep their rows.
    """
    chosen = table_shardings(model, sharding, table_sharding or {}, env.device.type)
    if embedding_optimizer not in EMBEDDING_OPTIMIZERS:
        raise ConfigError(f"train.embedding_optimizer must be one of {list(EMBEDDING_OPTIMIZERS)}, got '{embedding_optimizer}'")
    tables = {k: v.detach() for k, v in model.state_dict().items() if is_table(k)}
    constraints = {}
    for module in model.modules():
        if isinstance(module, EmbeddingBagCollection):
            apply_optimizer_in_backward(EMBEDDING_OPTIMIZERS[embedding_optimizer], module.parameters(), {"lr": embedding_lr})
            for table in module.embedding_bag_configs():
                kernel = EmbeddingComputeKernel.DENSE if chosen[table.name] == "data_parallel" else EmbeddingComputeKernel.FUSED
                constraints[table.name] = ParameterConstraints(
                    sharding_types=[chosen[table.name]], compute_kernels=[kernel.value]
                )
    topology = Topology(world_size=env.world_size, compute_device=env.device.type, **_memory_per_rank(env, max_memory))
    sharders = [CpuRowWiseSharder()]
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    plan = _collective_plan(planner, model, sharders)
    if isinstance(plan, str):
        gib = topology.devices[0].storage.ddr / 2**30 if env.device.type == "cpu" else topology.devices[0].storage.hbm / 2**30
        largest = sorted(tables.items(), key=lambda kv: -math.prod(kv[1].shape) * kv[1].element_size())[:3]
        sizes = ", ".join(f"{k} {math.prod(v.shape) * v.element_size() / 2**30:.2f} GiB" for k, v in largest)
        raise ShardingError(
            f"cannot shard the embedding tables {chosen} over {env.world_size} process(es) on "
            f"{env.device.type} with {gib:.2f} GiB each (train.max_memory_per_process, else the host's share): "
            f"{plan} The largest tables (without optimizer state): {sizes}. "
            "Use more processes or hosts (torchrun --nproc_per_node / --nnodes), row_wise sharding, or raise "
            "train.max_memory_per_process."
        )
    dmp = DistributedModelParallel(model, device=env.device, plan=plan, sharders=sharders)
    _fill_tables(dmp, tables, init or TableInit(seed=0))
    return dmp, plan


def is_table(key: str) -> bool:
    """Whether a model's state key names an embedding table (the sharded part)."""
    return ".embedding_bags." in key


def table_name(key: str) -> str:
    """The table's name in a table's state key: "user_id" in "user_tower.ebc.embedding_bags.user_id.weight"."""
    return key.split(".embedding_bags.")[1].split(".")[0]


def _collective_plan(planner: EmbeddingShardingPlanner, model: nn.Module, sharders: list) -> ShardingPlan | str:
    """Rank 0's plan, or why it found none, on every rank. TorchRec's `collective_plan` raises the refusal
    on rank 0 alone and leaves the other ranks waiting for a plan forever."""
    outcome: list[ShardingPlan | str | None] = [None]
    if dist.get_rank() == 0:
        try:
            outcome[0] = planner.plan(model, sharders)
        except PlannerError as err:
            lines = [line.strip() for line in str(err).splitlines()]
            figures = [line.rstrip(",").removesuffix("))") + ")." for line in lines if line.startswith(PLANNER_FIGURES)]
            outcome[0] = " ".join([lines[0], *figures])
    dist.broadcast_object_list(outcome, src=0)
    return outcome[0]


@torch.no_grad()
def _fill_tables(
    dmp: DistributedModelParallel, tables: dict[str, torch.Tensor], init: TableInit | SavedTables
) -> None:
    """Put each table's rows into its shards: a table built in memory is copied (on CPU, TorchRec's sharded
    modules start from a fresh random init instead, which would lose the seeded init and any loaded
    weights); one built on the meta device is filled by `init`, shard by shard."""
    state = dmp.state_dict()
    for key, full in tables.items():
        target = state[key]
        pieces = (
            [(s.tensor, *s.metadata.shard_offsets) for s in target.local_shards()]
            if isinstance(target, ShardedTensor)
            else [(target, 0, 0)]
        )
        for tensor, r, c in pieces:
            if full.is_meta:
                init.fill(key, tuple(full.shape), tensor, r, c)
            else:
                tensor.copy_(full[r : r + tensor.shape[0], c : c + tensor.shape[1]])


def _memory_per_rank(env: Env, max_memory: int = 0) -> dict[str, int]:
    """The memory each rank really has, so that the planner refuses tables that cannot fit rather than
    leaving the allocation to fail: the host's RAM shared by its processes (or `max_memory`, when set and
    smaller), and the GPU's own memory."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // local
    caps = {"ddr_cap": min(host, max_memory) if max_memory else host}
    if env.device.type == "cuda":
        hbm = torch.cuda.get_device_properties(env.device).total_memory
        caps["hbm_cap"] = min(hbm, max_memory) if max_memory else hbm
    return caps


def plan_tables(plan: ShardingPlan) -> list[dict]:
    """One row per table: module, sharding type, kernel, and each shard's rank, offsets and sizes."""
    rows = []
    for module, tables in plan.plan.items():
        for table, spec in tables.items():
            shards = spec.sharding_spec.shards if spec.sharding_spec is not None else []
            rows.append(
                {
                    "module": module,
                    "table": table,
                    "sharding_type": spec.sharding_type,
                    "compute_kernel": spec.compute_kernel,
                    "ranks": spec.ranks,
                    "shards": [
                        {"rank": s.placement.rank(), "offsets": list(s.shard_offsets), "sizes": list(s.shard_sizes)}
                        for s in shards
                    ],
                }
            )
    return rows


def held_shards(dmp: DistributedModelParallel) -> dict[str, dict[str, list[dict]]]:
    """Per rank (as a string) and table state key, the offsets and sizes of the shards that rank holds."""
    mine = {
        key: [{"offsets": list(s.metadata.shard_offsets), "sizes": list(s.metadata.shard_sizes)} for s in value.local_shards()]
        for key, value in dmp.state_dict().items()
        if isinstance(value, ShardedTensor)
    }
    every: list[dict] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(every, mine)
    return {str(rank): held for rank, held in enumerate(every)}
