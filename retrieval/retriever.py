"""Retriever: everything a service needs from a run folder, behind a small, thread-safe API."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from tandemrec.data.dataset import Dataset
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.data.run_folder import RunFolder
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.towers.inference import embed
from tandemrec.towers.serialization import load_model, model_hash
from tandemrec.towers.two_tower import TwoTower

USER_BATCH = 1024


class Retriever:
    """Index row i holds item vocabulary index i + 1, so histories and seen sets map to rows directly."""

    def __init__(
        self,
        model: TwoTower,
        vocabs: Vocabularies,
        features: UserFeatures,
        index: ItemIndex,
        catalogue: pl.DataFrame,
    ) -> None:
        self._item_ids = index.ids
        if self._item_ids[: len(vocabs.items) - 1] != vocabs.items.ids[1:]:
            raise RetrievalError("the index's item ids do not follow the run's item vocabulary")
        self.model = model.eval()
        self.vocabs = vocabs
        self.features = features
        self.index = index
        self.catalogue = catalogue
        self._lock = threading.Lock()

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> "Retriever":
        run = RunFolder(Path(run_dir))
        if not run.root.is_dir():
            raise RetrievalError(f"run folder '{run.root}' does not exist")
        for needed in (run.model, run.vocab, run.dataset, run.index):
            if not needed.exists():
                raise RetrievalError(f"run folder '{run.root}' has no {needed.name}/ (train, then index the run)")
        model = load_model(run.model).to(device)
        vocabs = Vocabularies.load(run.vocab)
        dataset = Dataset.load(run.dataset)
        log = EventLog.from_frame(dataset.interactions, vocabs.users, vocabs.items)
        features = UserFeatures(
            log,
            vocabs.user_attribute_matrix(dataset.users),
            sorted(vocabs.attributes),
            model.config.user.history_len,
        )
        index = ItemIndex.load(run.index, expect_dim=model.config.dim, expect_model_hash=model_hash(run.model))
        return cls(model, vocabs, features, index, dataset.items)

    @property
    def device(self) -> torch.device:
        return self.model.log_temperature.device

    def user_vectors(self, user_ids: Sequence[str], times: np.ndarray | None = None) -> np.ndarray:
        """User embeddings from each user's features and history (up to `times`, else everything)."""
        return self.embed_users(self._user_index(user_ids), times)

    def embed_users(self, users: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        batches = (
            self.features.batch(users[i : i + USER_BATCH], None if times is None else times[i : i + USER_BATCH])
            for i in range(0, len(users), USER_BATCH)
        )
        with self._lock:
            return embed(self.model.user_tower, batches, self.device).numpy()

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        return self.recommend_batch([user_id], k, exclude_seen)[0]

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10, exclude_seen: bool = True) -> list[Recommendations]:
        if isinstance(user_ids, str):
            raise RetrievalError("recommend_batch takes a list of user ids; use recommend() for one user")
        _check_k(k)
        users = self._user_index(user_ids)
        exclude = self.seen_rows(users) if exclude_seen else None
        positions, scores = self.index.search(self.embed_users(users), k, exclude=exclude)
        return [self._results(p, s) for p, s in zip(positions, scores)]

    def similar_items(self, item_id: str, k: int = 10) -> Recommendations:
        """The k items nearest to `item_id` in the index, the item itself left out."""
        _check_k(k)
        row = self.index.position([item_id])
        query = self.index.vectors(row)
        positions, scores = self.index.search(query, k, exclude=[row])
        return self._results(positions[0], scores[0])

    def seen_rows(self, users: np.ndarray, times: np.ndarray | None = None) -> list[np.ndarray]:
        """Index rows of the items each user already had an event with."""
        return [np.unique(items) - 1 for items in self.features.log.items_before(users, times)]

    def _user_index(self, user_ids: Sequence[str]) -> np.ndarray:
        if len(user_ids) == 0:
            raise RetrievalError("no user ids given")
        unknown = [u for u in user_ids if u not in self.vocabs.users]
        if unknown:
            raise RetrievalError(f"unknown user id(s) {unknown[:5]} ({len(unknown)} in all): not in this run's data")
        return self.vocabs.users.encode(list(user_ids))

    def _results(self, positions: np.ndarray, scores: np.ndarray) -> Recommendations:
        keep = positions >= 0
        return Recommendations([self._item_ids[p] for p in positions[keep]], scores[keep])


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise RetrievalError(f"k must be a positive integer, got {k!r}")
