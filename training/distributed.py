"""Process group set-up and TorchRec DistributedModelParallel wrapping, for 1 or N processes.

A single process still goes through DMP (world size 1), so the fused-optimizer tables and the
state-dict handling are the same code on a laptop and under torchrun.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.optim import _apply_optimizer_in_backward as apply_optimizer_in_backward
from torchrec import EmbeddingBagCollection
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardedTensor, ShardingPlan
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad


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
        raise RuntimeError(f"train.device is '{name}' but CUDA is not available on this machine")
    return torch.device(name)


def init(device_name: str = "auto") -> Env:
    """Join torchrun's group when launched by it, else make a private group of one."""
    device = pick_device(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        return Env(dist.get_rank(), dist.get_world_size(), device, owns_group=False)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return Env(dist.get_rank(), dist.get_world_size(), device, owns_group=True)


def shutdown(env: Env) -> None:
    if env.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(
    model: nn.Module, env: Env, embedding_lr: float, sharding: str = "table_wise"
) -> tuple[DistributedModelParallel, ShardingPlan]:
    """Fuse row-wise Adagrad into the tables' backward, plan the sharding and wrap the model.

    Every table gets the fused fbgemm kernel with the given sharding type; left to itself the planner
    makes small tables data-parallel with a dense kernel, which has no fused optimizer.
    """
    constraints = {}
    for module in model.modules():
        if isinstance(module, EmbeddingBagCollection):
            apply_optimizer_in_backward(RowWiseAdagrad, module.parameters(), {"lr": embedding_lr})
            for table in module.embedding_bag_configs():
                constraints[table.name] = ParameterConstraints(
                    sharding_types=[sharding], compute_kernels=[EmbeddingComputeKernel.FUSED.value]
                )
    topology = Topology(world_size=env.world_size, compute_device=env.device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    plan = planner.collective_plan(model, None, dist.GroupMember.WORLD)
    return DistributedModelParallel(model, device=env.device, plan=plan), plan


def dense_state_dict(dmp: DistributedModelParallel) -> dict[str, torch.Tensor]:
    """The model's state with sharded tables gathered into plain tensors; complete on rank 0."""
    out = {}
    for key, value in dmp.state_dict().items():
        if isinstance(value, ShardedTensor):
            full = torch.empty(value.size(), dtype=value.dtype) if dist.get_rank() == 0 else None
            value.gather(dst=0, out=full)
            value = full
        out[key] = value.detach().cpu() if value is not None else None
    return out
