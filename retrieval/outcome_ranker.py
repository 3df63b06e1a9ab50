"""Serving the outcome model (towers/outcome_model.py): its features for (user, candidate) pairs at "now".

"Now" is just after the last event of the run's log, so the features a served pair gets are those an
offline pair gets at its time: every event strictly before it, and nothing else.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.data.behaviour_features import (
    FEATURES, TIME, FeatureSettings, OutcomeLabel, feature_matrix, history_tables, outcome_history, pair_features,
)
from tandemrec.data.dataset import Dataset
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.towers.outcome_model import OutcomeModel, has_outcome_model


class OutcomeRanker:
    """P(outcome) and P(outcome | interaction) of users with catalogue rows, from the run's event log."""

    def __init__(self, model: OutcomeModel, history: pl.DataFrame) -> None:
        self.model = model
        self.history = history
        self.settings = FeatureSettings(**model.settings)
        self.now = int(history[TIME].max()) + 1 if history.height else 0
        self.tables = history_tables(history, self.settings)  # once: every call only joins its pairs to them

    @property
    def outcome(self) -> str:
        return self.model.outcome

    @classmethod
    def load(cls, folder: str | Path, model_hash: str, dataset: Dataset, vocabs: Vocabularies) -> "OutcomeRanker | None":
        """The run's ranker, or None when RUN/behaviour/ has no outcome model; refuses one fitted on other
        towers or other features (EncoderLoadError)."""
        if not has_outcome_model(folder):
            return None
        model = OutcomeModel.load(folder, model_hash, FEATURES)
        return cls(model, outcome_history(dataset, vocabs, OutcomeLabel(**model.label)))

    def probabilities(
        self, users: np.ndarray, vectors: np.ndarray, rows: np.ndarray, catalogue: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P(outcome), P(outcome | interaction)) per pair: user index `users[i]` (0: unknown, no history)
        with vector `vectors[i]` and catalogue row `rows[i]` (item index rows[i] + 1)."""
        pairs = pl.DataFrame({"user_id": users.astype(np.int64), "item_id": rows.astype(np.int64) + 1,
                              TIME: np.full(len(rows), self.now, dtype=np.int64)})
        features = pair_features(self.tables, pairs, self.settings, vectors, catalogue)
        return self.model.probabilities(feature_matrix(features, self.model.features))
