"""A training step's inputs, built apart from the step that uses them: by DataLoader worker processes
while the model computes the steps before (`train.loader_workers`), or by the training process itself.

A step's inputs depend only on the seed, the epoch, the step and the process's rank, never on the model or
on torch's random state, so they are the same whoever builds them and whenever."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tandemrec.data.batch import ItemBatch, UserBatch
from tandemrec.data.content import ItemContent
from tandemrec.data.features import UserFeatures
from tandemrec.data.examples import Examples
from tandemrec.training.config import TrainConfig
from tandemrec.training.global_batch import rank_slice
from tandemrec.training.loss import domain_weights
from tandemrec.training.negatives import HardNegativeMiner, mixed_negatives


@dataclass
class StepInputs:
    """One process's part of a step: its rows of the global batch and what the loss scores them against."""

    sizes: list[int]  # every process's row count of the global batch, in rank order
    offset: int  # where this process's rows start in the gathered global batch
    users: UserBatch  # this process's rows' users, each as just before its event
    # The rows' items, the extra negatives, then (with the content loss) the rows' items again, ids hidden.
    items: ItemBatch
    ids: torch.Tensor  # the candidates' item indices: the whole global batch's, then the extra negatives
    weights: torch.Tensor  # the rows' loss weights
    content_rows: int  # rows at the end of `items` embedded from content alone

    @property
    def rows(self) -> int:
        return len(self.users)

    def pin_memory(self) -> StepInputs:
        """In page-locked memory, for an asynchronous copy to the GPU (DataLoader's pin_memory calls this)."""
        return dataclasses.replace(
            self, users=self.users.pin_memory(), items=self.items.pin_memory(), ids=self.ids.pin_memory(),
            weights=self.weights.pin_memory(),
        )

    def to(self, device: torch.device) -> StepInputs:
        """On `device`; copied asynchronously to a GPU (from pinned memory, the copy overlaps the host's work)."""
        non_blocking = device.type == "cuda"
        return dataclasses.replace(
            self,
            users=self.users.to(device, non_blocking),
            items=self.items.to(device, non_blocking),
            ids=self.ids.to(device, non_blocking=non_blocking),
            weights=self.weights.to(device, non_blocking=non_blocking),
        )


class StepInputBuilder:
    """Builds a process's StepInputs from the training examples, catalogue content and negatives."""

    def __init__(
        self,
        config: TrainConfig,
        train: Examples,
        source: np.ndarray | None,
        target: np.ndarray | None,
        features: UserFeatures,
        content: ItemContent,
        mixed_pool: np.ndarray,
        miner: HardNegativeMiner | None,
    ) -> None:
        """`source` and `target`: the examples' domain masks in joint training over two domains, else None;
        `mixed_pool`: the item indices mixed negatives are drawn from."""
        self.config, self.train, self.source, self.target = config, train, source, target
        self.features, self.content, self.mixed_pool, self.miner = features, content, mixed_pool, miner

    def build(self, batch: np.ndarray, epoch: int, step: int, rank: int, world_size: int) -> StepInputs:
        """Process `rank`'s inputs for the global batch `batch` (training example indices) of a step."""
        cfg, train = self.config, self.train
        rows, offset, sizes = rank_slice(batch, rank, world_size)
        extra = [mixed_negatives(self.mixed_pool, cfg.mixed_negatives, np.random.default_rng([cfg.seed, epoch, step]))]
        if self.miner is not None:
            rng = np.random.default_rng([cfg.seed, epoch, step, rank, 1])
            extra.append(self.miner.draw(train.users[rows], train.items[rows], cfg.hard_negatives, rng))
        extra_ids = np.concatenate(extra)
        content_rows = train.items[rows] if cfg.content_loss_weight > 0 else train.items[:0]
        item_rows = np.concatenate([train.items[rows], extra_ids, content_rows])
        content_only = torch.arange(len(item_rows)) >= len(item_rows) - len(content_rows)
        if self.target is not None:
            totals = (float(self.source[batch].sum()), float(self.target[batch].sum()))
            source, target = torch.from_numpy(self.source[rows]), torch.from_numpy(self.target[rows])
            weights = domain_weights(source, target, cfg.target_weight, totals)
        else:
            weights = torch.full((len(rows),), 1.0 / len(batch))
        return StepInputs(
            sizes,
            offset,
            self.features.batch(train.users[rows], train.times[rows]),
            self.content.batch(torch.from_numpy(item_rows - 1), content_only),
            torch.from_numpy(np.concatenate([train.items[batch], extra_ids])),
            weights,
            len(content_rows),
        )


class EpochSteps(Dataset):
    """Steps `first`.. of an epoch as a map-style dataset of one process's StepInputs: item i is step
    first + i, whose global batch is that slice of the epoch's `order`, cut to a multiple of the process
    count (row-wise tables need equal slices)."""

    def __init__(
        self, builder: StepInputBuilder, order: np.ndarray, epoch: int, first: int, steps: int, rank: int, world_size: int
    ) -> None:
        self.builder, self.order, self.epoch, self.first, self.steps = builder, order, epoch, first, steps
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.steps - self.first

    def __getitem__(self, i: int) -> StepInputs:
        step, size = self.first + i, self.builder.config.batch_size
        batch = self.order[step * size : (step + 1) * size]
        batch = batch[: len(batch) - len(batch) % self.world_size]
        return self.builder.build(batch, self.epoch, step, self.rank, self.world_size)


def step_loader(steps: EpochSteps, workers: int, device: torch.device) -> DataLoader:
    """The epoch's StepInputs in order, built by `workers` processes ahead of the step that takes them (0:
    by the caller, when it asks), pinned for the copy to a GPU. Workers are forked for the epoch, so they
    see its hard negatives as mined before it.

    Measured on 2 CPU cores (demo model, batch 512): a step's inputs took 5.0 ms to build and 8.4 ms to take
    from a worker that had them ready, each tensor handed over through shared memory
    (benchmarks/step_inputs_handover.py), and one worker made training 0.75x as fast
    (benchmarks/train_throughput.py). Hence no workers by default; whether they pay on a GPU, where a step
    is over sooner, benchmarks/gpu_check.sh measures."""
    return DataLoader(
        steps,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if workers else None,
    )
