"""The built-in baselines of one run's split: tuned on its validation part, fitted for its test part.

Fitted on the same training events as the model (the cold items left out, the target-sparse training part
as the model sees it), with every event of either domain as the baselines' input, and scored with the
histories the model's users have at the same query times, so that all systems answer the same question.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from tandemrec.data.encoded import PART
from tandemrec.data.prepared import PreparedData, training_parts
from tandemrec.io.atomic import atomic_write_json
from tandemrec.io.cache import cache_folder
from tandemrec.retrieval.baselines import BUILDERS, TUNED_ON, ItemWeights, Tuned, fit, interaction_matrix, tune

log = logging.getLogger(__name__)
TUNING_DIR = "baseline-tuning"

SeenRows = Callable[[np.ndarray, np.ndarray], list[np.ndarray]]  # (users, times) -> rows seen before


def split_baselines(
    data: PreparedData, seen_rows: SeenRows, refit: bool, progress: bool = False
) -> tuple[dict[str, ItemWeights], list[Tuned]]:
    """The baselines tuned on `data.valid` (fitted on the training part), then fitted for the test on
    the parts the model trains on (`refit`: training and validation, as `data.split.refit` does);
    `progress` shows the tuning's bars."""
    valid = data.valid
    seen = seen_rows(valid.users, valid.times)
    targets = [np.setdiff1d(t - 1, s) for t, s in zip(valid.targets, seen)]
    train = _matrix(data, ("train",))
    tuned = cached_tuning(train, seen, targets, progress)
    return fit(_matrix(data, training_parts(refit)) if refit else train, tuned), tuned


def cached_tuning(
    train: sp.csr_matrix, seen: Sequence[np.ndarray], targets: Sequence[np.ndarray], progress: bool = False
) -> list[Tuned]:
    """`tune`'s choice, kept in the tandemrec cache under a hash of everything it depends on (the training
    matrix, each validation query's seen rows and targets, the candidate settings): the seeds of a
    benchmark, and a run's test and validation evaluations, share one split, and tuning EASE on a
    12K-item catalogue takes about 11 CPU minutes. A damaged entry is tuned again."""
    folder = cache_folder(TUNING_DIR)
    path = None if folder is None else folder / f"{_tuning_key(train, seen, targets)}.json"
    if path is not None and path.exists():
        try:
            tuned = [_from_json(entry) for entry in json.loads(path.read_text())]
            log.info("baseline settings read from the cache: %s", {t.name: t.setting for t in tuned})
            return tuned
        except (ValueError, KeyError, TypeError):
            log.warning("baseline tuning cache entry %s is damaged: tuning again", path)
    tuned = tune(train, seen, targets, progress=progress)
    if path is not None:
        entries = [{"name": t.name, "setting": t.setting, "scores": t.report()[f"valid_{TUNED_ON}"]} for t in tuned]
        try:
            atomic_write_json(path, entries)
        except OSError as error:  # a full or read-only disk costs the next evaluation a tuning, not this one
            log.warning("baseline tuning cache entry %s cannot be written (%s): not kept", path, error)
    return tuned


def _from_json(entry: dict) -> Tuned:
    """A `Tuned` as `cached_tuning` wrote it (JSON keys are text: the candidates give them their type)."""
    scores = entry["scores"]
    candidates = BUILDERS[entry["name"]][1]
    return Tuned(entry["name"], entry["setting"], {c: float(scores[str(c)]) for c in candidates if str(c) in scores})


def _tuning_key(train: sp.csr_matrix, seen: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps([TUNED_ON, {n: list(c) for n, (_, c) in BUILDERS.items()}]).encode())
    digest.update(np.asarray(train.shape, np.int64).tobytes())
    for array in (train.indptr, train.indices):
        digest.update(np.asarray(array, np.int64).tobytes())
    for rows in (*seen, *targets):  # each prefixed by its length, so that a boundary cannot move unseen
        rows = np.asarray(rows, np.int64)
        digest.update(np.int64(len(rows)).tobytes() + rows.tobytes())
    return digest.hexdigest()


def _matrix(data: PreparedData, parts: tuple[str, ...]) -> sp.csr_matrix:
    events = data.events.filter(pl.col(PART).is_in(parts) & ~pl.col("item_id").is_in(data.cold_items))
    return interaction_matrix(events["user_id"].to_numpy(), events["item_id"].to_numpy() - 1)
