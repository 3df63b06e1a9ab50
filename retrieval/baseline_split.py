"""The built-in baselines of one run's split: tuned on its validation part, fitted for its test part.

Fitted on the same training events as the model (the cold items left out, the target-sparse training part
as the model sees it), with every event of either domain as the baselines' input, and scored with the
histories the model's users have at the same query times, so that all systems answer the same question.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from tandemrec.data.encoded import PART
from tandemrec.data.prepared import PreparedData, training_parts
from tandemrec.retrieval.baselines import ItemWeights, Tuned, fit, interaction_matrix, tune

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
    tuned = tune(_matrix(data, ("train",)), seen, targets, progress=progress)
    return fit(_matrix(data, training_parts(refit)), tuned), tuned


def _matrix(data: PreparedData, parts: tuple[str, ...]) -> sp.csr_matrix:
    events = data.events.filter(pl.col(PART).is_in(parts) & ~pl.col("item_id").is_in(data.cold_items))
    return interaction_matrix(events["user_id"].to_numpy(), events["item_id"].to_numpy() - 1)
