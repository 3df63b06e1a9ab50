"""One global batch spread over the ranks: each rank's slice, and its item vectors gathered from all.

With the items of every rank as candidates, each rank's rows see the whole global batch as negatives,
so N processes on a global batch of size G compute the loss one process computes on those G examples.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def rank_slice(indices: np.ndarray, rank: int, world_size: int) -> tuple[np.ndarray, int, list[int]]:
    """This rank's contiguous part of a global batch, where it starts in the gathered order, and every
    rank's part size: known to every rank, so gathering the parts needs no exchange of counts."""
    parts = np.array_split(indices, world_size)
    sizes = [len(p) for p in parts]
    return parts[rank], sum(sizes[:rank]), sizes


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 (ranks may hold different row counts); the backward sums every rank's
    gradient for this rank's rows, since every rank's loss used them."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.rank_range = (sum(sizes[: dist.get_rank()]), sum(sizes[: dist.get_rank() + 1]))
        return _gather(tensor.contiguous(), sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start, end = ctx.rank_range
        return grad[start:end], None


def gather_with_grad(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows in rank order, differentiable, given every rank's row count (`rank_slice`'s
    sizes: a step's collectives each cost a round trip, so the counts are not asked for); the tensor
    itself when alone."""
    if dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor, sizes)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows in rank order (no gradient)."""
    if dist.get_world_size() == 1:
        return tensor
    return _gather(tensor.contiguous(), _sizes(tensor.shape[0], tensor.device))


def total(value: float, device: torch.device) -> float:
    """The sum of a number over all ranks."""
    if dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def _sizes(n: int, device: torch.device) -> list[int]:
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([n], dtype=torch.int64, device=device))
    return [int(c.item()) for c in counts]


def _gather(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """all_gather wants equal shapes: pad every rank's rows to the largest count, then cut."""
    longest = max(sizes)
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])
