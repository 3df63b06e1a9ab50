"""Batched, gradient-free encoding: one loop shared by validation, export and serving, alone or by the
processes of a training job together."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from tqdm import tqdm

from tandemrec.data.batch import ItemBatch, UserBatch


@torch.no_grad()
def embed(
    encode: Callable[[UserBatch | ItemBatch], torch.Tensor],
    batches: Iterable[UserBatch | ItemBatch],
    device: torch.device,
    progress: bool = False,
    total: int | None = None,
    desc: str = "embedding",
    shared: bool = False,
) -> torch.Tensor:
    """Concatenated float32 CPU outputs of encode(batch) for every batch; callers set eval mode.

    Embedding a catalogue or every user can take minutes, so `progress` shows a bar under `desc` with
    rows per second and, given the `total` row count, the time left.

    `shared`: the processes of a training job's group embed together, each every W-th batch (W processes),
    then gather: the same vectors on every process for 1/W of the work each. Collective: every process
    must call it with the same batches. A sharded table answers a lookup only with all processes, so each
    runs as many forwards as the busiest, an idle one on a batch whose output it drops."""
    world = dist.get_world_size() if shared and dist.is_initialized() else 1
    rank, sizes, mine, last = dist.get_rank() if world > 1 else 0, [], [], None
    with tqdm(total=None if total is None else -(-total // world), desc=desc, unit="row", disable=not progress) as bar:
        for i, batch in enumerate(batches):
            sizes.append(len(batch))
            last = batch
            if i % world == rank:
                mine.append(encode(batch.to(device)).float().cpu())
                bar.update(len(mine[-1]))
    if world == 1 or not sizes:
        return torch.cat(mine) if mine else torch.zeros(0)
    if len(mine) < -(-len(sizes) // world):
        encode(last.to(device))
    return _interleave(mine, sizes, world, device)


@torch.no_grad()
def embed_in_step(
    encode: Callable[[UserBatch | ItemBatch], torch.Tensor],
    batches: Iterable[UserBatch | ItemBatch],
    filler: UserBatch | ItemBatch,
    device: torch.device,
    progress: bool = False,
    total: int | None = None,
    desc: str = "embedding",
) -> torch.Tensor:
    """`embed` for the processes of a group whose tables are sharded, each encoding its own `batches`
    (they may differ in number): a sharded table answers a lookup only with all processes, so they step
    together, and one whose batches are done encodes `filler` and drops the output until the busiest is
    done. Collective; each process gets its own batches' vectors, nothing is gathered."""
    mine, pending = [], iter(batches)
    with tqdm(total=total, desc=desc, unit="row", disable=not progress) as bar:
        while True:
            batch = next(pending, None)
            busy = torch.tensor([batch is not None], dtype=torch.int32)
            dist.all_reduce(busy, op=dist.ReduceOp.MAX)
            if not busy.item():
                return torch.cat(mine) if mine else torch.zeros(0)
            if batch is None:
                encode(filler.to(device))
                continue
            mine.append(encode(batch.to(device)).float().cpu())
            bar.update(len(mine[-1]))


def _interleave(mine: list[torch.Tensor], sizes: list[int], world: int, device: torch.device) -> torch.Tensor:
    """Every process's outputs gathered (through `device`, which the group's backend takes) and put back in
    batch order: batch i was encoded by rank i % W."""
    width = torch.tensor([mine[0].shape[1] if mine else 0], device=device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)  # a process that encoded nothing knows no width
    padded = torch.zeros(max(sum(sizes[r::world]) for r in range(world)), int(width), device=device)
    if mine:
        local = torch.cat(mine)
        padded[: len(local)] = local.to(device)
    every = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(every, padded)
    parts, offsets = [], [0] * world
    for i, size in enumerate(sizes):
        r = i % world
        parts.append(every[r][offsets[r] : offsets[r] + size].cpu())
        offsets[r] += size
    return torch.cat(parts)
