"""The processes of one job after training (index, export, evaluate) launched together under torchrun.

`torchrun --nproc_per_node=N -m tandemrec.cli index RUN` starts N copies of the job. They embed the
catalogue and the users together, each every N-th batch (towers/inference.embed, shared), and gather the
vectors; then process 0 alone writes what the job writes (index, exports, metrics), so the files are
the ones a single process writes. An export in shards deals the users' shards out instead, each process
embedding and writing its own (tandemrec/export_job.py). `index`, `export` and `evaluate` load the model
with its tables sharded over the processes (tandemrec/run.py `shard_tables`), so that none holds a whole
table: every table lookup is then made by all of them together, and process 0 works alone only where no
table is looked up (`writer_alone`). Launched alone, a job makes no group and is that process 0.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch.distributed as dist

from tandemrec.run_lock import launched_first
from tandemrec.training import distributed

T = TypeVar("T")


@contextmanager
def job_group() -> Iterator[None]:
    """For the length of a job: under torchrun (WORLD_SIZE set), its processes join one group (gloo: these
    jobs embed on CPU), each with its share of the cores; alone, or inside a group already made (by the
    caller, or by an outer job), nothing changes."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        yield
        return
    env = distributed.init("cpu")
    try:
        yield
    finally:
        distributed.shutdown(env)


def is_writer() -> bool:
    """Whether this process writes the job's files: process 0 of the group, or the only one. Read from
    torchrun's RANK once the job's group is gone: the other processes still must not write."""
    if dist.is_initialized():
        return dist.get_rank() == 0
    return launched_first()


def writer_first(step: Callable[[], T], together: bool = True) -> T:
    """`step` run by process 0, then by the others once it is done: for work whose result process 0 keeps
    in a shared cache (frozen-backbone outputs), which the others then read instead of computing it too.
    `together=False`: this process calls it alone, though a group may be up (process 0 at the end of
    training), so it just runs `step`."""
    if not together or not dist.is_initialized() or dist.get_world_size() == 1:
        return step()
    first = writer_alone(step)  # failed on process 0, it fails on the others as well, rather than hang
    return first if is_writer() else step()


def writer_alone(step: Callable[[], T]) -> T | None:
    """`step` run by process 0 alone while the others wait for it, for files they read next; None on the
    others. Alone, or without a group, it just runs `step`."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return step()
    try:
        return step() if is_writer() else None
    finally:  # a failed step too: the others then go on and fail on its missing files rather than wait forever
        dist.barrier()
