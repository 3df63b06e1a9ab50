"""A trained run's item and user vectors, computed by its saved model: what `index`, `export`, `profile`
and the behaviour head start from.

Under torchrun (tandemrec/job_group.py) the job's processes embed together, each every N-th batch, and
every process ends with all the vectors, the same ones a single process computes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from tandemrec.data.content import ItemContent
from tandemrec.job_group import is_writer, writer_first
from tandemrec.run import Run
from tandemrec.towers.inference import embed, embed_in_step
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training.frozen_features import cache_frozen_backbones

CPU = torch.device("cpu")


@dataclasses.dataclass
class RunEmbeddings:
    """Item and user vectors computed by a run's saved model, in vocabulary order (index 0 left out)."""

    item_ids: list[str]
    items: np.ndarray
    user_ids: list[str]
    users: np.ndarray
    model_hash: str


def embed_run(run: Run, batch_size: int = 256, progress: bool = False, shared: bool = False) -> RunEmbeddings:
    """Embed the catalogue (from its content) and every user (all their events) with the run's model;
    `progress` shows a bar for each. `shared`: every process of the job's group calls this together, and
    they split the work (see `embed_items`)."""
    model, data = run.model, run.data
    content = writer_first(lambda: run.content, shared)  # may fill the run's content cache
    items = embed_items(model, content, batch_size, progress, shared)
    users = embed_users(run, np.arange(len(data.vocabs.users) - 1), batch_size, progress and is_writer(), shared)
    return RunEmbeddings(data.vocabs.items.ids[1:], items, data.vocabs.users.ids[1:], users, run.model_hash)


def embed_users(
    run: Run,
    rows: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    shared: bool = False,
    in_step: bool = False,
) -> np.ndarray:
    """The user tower's vectors of the users at `rows` of `RunEmbeddings.user_ids` (vocabulary rows + 1),
    each from all their events; `progress` shows a bar. `shared`: as in `embed_items`. `in_step`: every
    process of the group calls this together, each for its own `rows`, over a model with sharded tables
    (towers/inference.embed_in_step)."""
    users = np.asarray(rows) + 1
    features, tower = run.data.features, run.model.user_tower
    batches = features.batches(users, None, batch_size)
    if in_step:
        filler = features.batch(np.ones(1, dtype=np.int64))  # the first user
        return embed_in_step(tower, batches, filler, CPU, progress, len(users), "users").numpy()
    return embed(tower, batches, CPU, progress, len(users), "users", shared=shared).numpy()


def embed_items(
    model: TwoTower, content: ItemContent, batch_size: int = 256, progress: bool = False, shared: bool = False
) -> np.ndarray:
    """The item tower's vectors of `content`, items without a trained id (index 0) placed as new items
    are; frozen backbones run once first, unless `content` already holds their outputs (training's does).
    `shared`: every process of the job's group calls this together; process 0 runs the frozen backbones
    first (the others then read its cache), and each process embeds every N-th batch."""
    tower = model.item_tower
    shown = progress and is_writer()
    writer_first(lambda: cache_frozen_backbones(tower, content, batch_size, CPU, shown), shared)
    vectors = embed(tower, content.batches(batch_size), CPU, shown, len(content), "items", shared=shared)
    return tower.place_new_items(vectors, content.item_index == 0).numpy()
