"""`tandemrec export`: a trained run's item and user vectors as files for downstream systems, with their
manifest entries (formats, shards and manifest: retrieval/embeddings.py).

Under torchrun the job's processes share the work (tandemrec/job_group.py). They load the model with its
tables sharded over them, as training held it (training/sharded_model.py): no process reads or holds a
whole table. With one file per export they embed together and process 0 writes, as one process would.
With shards (`shard_rows`), the users' shards are dealt out instead: process r embeds and writes shards
r, r + N, ..., so no process ever holds every user's vector (a user table of 100M rows would not fit
one), and process 0 records every shard in the manifest. The files are the same for any number of
processes.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch.distributed as dist

from tandemrec.data.features import EventLog
from tandemrec.errors import ArgumentError
from tandemrec.job_group import is_writer, job_group, writer_first
from tandemrec.retrieval.behaviour_eval import top_k_mean, top_k_propensity
from tandemrec.retrieval.embeddings import (
    check_formats,
    export_description,
    export_embeddings,
    is_normalized,
    record_export,
    shard_bounds,
    write_shard,
)
from tandemrec.retrieval.outcome_ranker import OutcomeRanker
from tandemrec.retrieval.profiles import Segments, has_segments
from tandemrec.run import Run
from tandemrec.run_embeddings import embed_items, embed_run, embed_users
from tandemrec.run_lock import writes_run
from tandemrec.towers.behaviour_head import BehaviourHead, has_head

EXPORTS = ("items", "users")
log = logging.getLogger(__name__)


@writes_run
def export_run(
    run_dir: str | Path,
    what: Sequence[str] = EXPORTS,
    formats: Sequence[str] = ("parquet",),
    batch_size: int = 256,
    progress: bool = False,
    shard_rows: int = 0,
) -> list[Path]:
    """Write RUN/embeddings/<what>.<format> (items and/or users) with their manifest entries, in shards of
    at most `shard_rows` rows when not 0; `progress` shows the embedding's bars. Returns the main file of
    each shard of each format (under torchrun on process 0; the others return none)."""
    unknown = sorted(set(what) - set(EXPORTS))
    if unknown or not what:
        raise ArgumentError(f"what must name some of {list(EXPORTS)}, got {list(what)}")
    check_formats(formats, shard_rows)
    run = Run(run_dir, shard_tables=True)
    with job_group():
        if "users" in what and shard_rows and dist.is_initialized() and dist.get_world_size() > 1:
            return _dealt_export(run, what, tuple(formats), batch_size, progress, shard_rows)
        vectors = embed_run(run, batch_size, progress, shared=True)
    if not is_writer():
        return []
    tables = {"items": (vectors.item_ids, vectors.items), "users": (vectors.user_ids, vectors.users)}
    columns = {"items": {}, "users": {}}
    if "users" in what:
        columns["users"] = UserColumns(run, vectors.item_ids, vectors.items)(0, vectors.users)
    return [
        path
        for name in what
        for path in export_embeddings(
            run.folder.embeddings, name, *tables[name], vectors.model_hash, tuple(formats), columns[name], shard_rows
        )
    ]


def _dealt_export(
    run: Run, what: Sequence[str], formats: tuple[str, ...], batch_size: int, progress: bool, shard_rows: int
) -> list[Path]:
    """The users' shards dealt out to the group's processes (see the module's docstring); the items, which
    every process needs for the users' behaviour columns, embedded together and written by process 0."""
    rank, world, folder = dist.get_rank(), dist.get_world_size(), run.folder.embeddings
    model = run.model  # collective: all processes load it before process 0 goes on alone
    content = writer_first(lambda: run.content)  # may fill the run's content cache
    items = embed_items(model, content, batch_size, progress, shared=True)
    item_ids, user_ids = run.vocabs.items.ids[1:], run.vocabs.users.ids[1:]
    written = []
    if "items" in what and rank == 0:
        written = export_embeddings(folder, "items", item_ids, items, run.model_hash, formats, None, shard_rows)
    cuts = shard_bounds(len(user_ids), shard_rows)
    dealt = range(rank, len(cuts), world)
    log.info(
        "users: process %d of %d embeds and writes shards %s of %d (%d of %d rows)",
        rank, world, list(dealt), len(cuts), sum(cuts[i][1] - cuts[i][0] for i in dealt), len(user_ids),
    )
    rows = [np.arange(*cuts[i]) for i in dealt]
    every_row = np.concatenate([np.zeros(0, np.int64), *rows])
    users = embed_users(run, every_row, batch_size, progress and rank == 0, in_step=True)
    mine = dict(zip(dealt, np.split(users, np.cumsum([len(r) for r in rows])[:-1])))
    # Every shard's files carry the whole export's description (safetensors metadata), so the processes
    # agree on it before any writes: whether all rows are unit length, and process 0's time.
    normalized: list = [None] * world
    dist.all_gather_object(normalized, all(is_normalized(v) for v in mine.values()))
    agreed = [export_description("users", len(user_ids), items.shape[1], all(normalized), run.model_hash)]
    dist.broadcast_object_list(agreed, src=0)
    description = agreed[0]
    columns = UserColumns(run, item_ids, items)
    hashes = {}
    for i, vectors in mine.items():
        extra = columns(cuts[i][0], vectors)
        for fmt in formats:
            ids = user_ids[slice(*cuts[i])]
            hashes[fmt, i] = write_shard(folder, fmt, i, len(cuts), ids, vectors, description, extra)
    every: list = [None] * world
    dist.all_gather_object(every, hashes)
    if rank != 0:
        return []
    shards = {key: files for part in every for key, files in part.items()}
    by_format = {fmt: [shards[fmt, i] for i in range(len(cuts))] for fmt in formats}
    return written + record_export(folder, description, columns.meanings, shard_rows, by_format)


class UserColumns:
    """The optional columns of the user export: `segment` when the run has profiles, and `p_<output>` per
    output of the behaviour head when it has one (the mean probability over the user's top-k items), the
    outcome model's for the output it predicts when the run has one. What they need is loaded once; a call
    computes them for a slice of the users."""

    def __init__(self, run: Run, item_ids: list[str], items: np.ndarray, k: int = 10) -> None:
        self._item_ids, self._items, self._k = item_ids, items, k
        folder, model_hash = run.folder, run.model_hash
        self._segments = Segments.load(folder.profiles, model_hash) if has_segments(folder.profiles) else None
        self._head = BehaviourHead.from_pretrained(folder.behaviour, model_hash) if has_head(folder.behaviour) else None
        self._events = self._ranker = None
        self.meanings: dict[str, str] = {}  # column name -> what it means, in the columns' order
        if self._segments is not None:
            self.meanings["segment"] = "nearest segment centroid (RUN/profiles/segments.parquet)"
        if self._head is not None:
            vocabs, dataset = run.vocabs, run.dataset
            self._events = EventLog.from_frame(dataset.interactions, vocabs.users, vocabs.items)
            self._ranker = OutcomeRanker.load(folder.behaviour, model_hash, dataset, vocabs)
            for name in self._head.outputs:
                meaning = f"mean probability of '{name}' over the user's top-{k} items (seen excluded)"
                self.meanings[f"p_{name}"] = meaning
        if self._ranker is not None:  # the chosen, calibrated outcome model replaces the head for its output
            self.meanings[f"p_{self._ranker.outcome}"] = (
                f"mean P({self._ranker.outcome}) of the outcome model (RUN/behaviour/outcome_model.json) over the "
                f"user's top-{k} items"
            )

    def __call__(self, first: int, users: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """The columns of the users at vocabulary rows first + 1, ..., first + len(users), whose vectors
        are `users`: name -> (a value per user, what it means)."""
        values: dict[str, np.ndarray] = {}
        if self._segments is not None:
            values["segment"] = self._segments.assign(users)
        if self._head is not None:
            k, items, item_ids, ranker = self._k, self._items, self._item_ids, self._ranker
            rows = np.arange(first + 1, first + len(users) + 1)
            seen = [np.unique(history) - 1 for history in self._events.items_before(rows, None)]
            p = top_k_propensity(self._head, users, items, item_ids, seen, k)
            values |= {f"p_{name}": p[:, j] for j, name in enumerate(self._head.outputs)}
            if ranker is not None:
                p = top_k_mean(lambda at, u, top: ranker.probabilities(rows[at], u, top, items)[0][:, None],
                               users, items, item_ids, seen, k)
                values[f"p_{ranker.outcome}"] = p[:, 0]
        return {name: (values[name], meaning) for name, meaning in self.meanings.items()}
