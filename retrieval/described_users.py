"""Who a Retriever query is about: a user the run knows, or one described by features given at call time.

`recommend`, `profile` and `predict_behaviour` take a user id, a history (item ids) and attributes; this
turns them into the user tower's input (the stored features with the given ones replacing them) and
refuses what the model cannot embed. `Retriever` takes it in as the `DescribedUsers` mixin.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tandemrec.data.batch import UserBatch
from tandemrec.data.features import UserFeatures
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.towers.inference import embed
from tandemrec.towers.two_tower import TwoTower


class DescribedUsers:
    """User lookup and call-time features for a class that provides the attributes below (the `Retriever`)
    and `embed_users` / `device`."""

    model: TwoTower
    vocabs: Vocabularies
    features: UserFeatures
    items: ItemCatalogue
    device: torch.device
    _lock: threading.Lock

    def _user_index(self, user_ids: Sequence[str]) -> np.ndarray:
        unknown = [u for u in user_ids if u not in self.vocabs.users]
        if unknown:
            raise RetrievalError(f"unknown user id(s) {unknown[:5]} ({len(unknown)} in all): not in this run's data")
        return self.vocabs.users.lookup(user_ids)

    def _given_features(
        self, user_id: str | None, history: Sequence[str] | None, attributes: Mapping[str, str]
    ) -> tuple[int, np.ndarray, UserBatch | None]:
        """(user index, 0 when unknown; index rows of the given history; the user batch, or None when
        nothing usable is known: an unknown user with no history and no known attribute value)."""
        user = int(self.vocabs.users.lookup([user_id])[0])
        try:
            rows = self.items.positions(list(history)) if history else np.zeros(0, dtype=np.int64)
        except RetrievalError as err:
            raise RetrievalError(f"history: {err}") from err
        if history is None and user:
            lo, hi = self.features.log.before(np.array([user]), None, self.features.history_len)
            bag = self.features.log.item[lo[0] : hi[0]]
        else:  # items added after training have no row in the user tower's history table
            bag = rows[rows < len(self.vocabs.items) - 1] + 1
        attrs = self._attribute_row(user, attributes)
        if user == 0 and bag.size == 0 and not attrs.any():
            return user, rows, None
        return user, rows, self.features.batch_from(np.array([user]), [bag], attrs[None, :])

    def _user_vector(
        self, user_id: str | None, history: Sequence[str] | None, attributes: Mapping[str, str] | None, verb: str
    ) -> tuple[np.ndarray, int, np.ndarray, str]:
        """(vector (1, dim), user index, given history rows, source) of a user known to the run or described
        by features given at call time; RetrievalError for a user the model cannot embed."""
        if history is None and attributes is None:
            if user_id is None:
                raise RetrievalError(f"{verb} needs a user_id, or history / attributes given at call time")
            users = self._user_index([user_id])
            return self.embed_users(users), int(users[0]), np.zeros(0, dtype=np.int64), "model"
        user, rows, batch = self._given_features(user_id, history, attributes or {})
        if batch is None:
            raise RetrievalError(
                f"{verb}: user {user_id!r} is not in this run's data and neither a history nor a known attribute "
                "value was given: nothing to embed the user from"
            )
        return self._embed_batch(batch), user, rows, "features"

    def _embed_batch(self, batch: UserBatch) -> np.ndarray:
        with self._lock:
            return embed(self.model.user_tower, [batch], self.device).numpy()

    def _attribute_row(self, user: int, attributes: Mapping[str, str]) -> np.ndarray:
        """The user's stored attribute indices with the given ones replaced (unknown values: index 0)."""
        names = self.features.attribute_names
        unknown = sorted(set(attributes) - set(names))
        if unknown:
            raise RetrievalError(f"attributes: unknown names {unknown}; this run's user attributes are {names}")
        row = self.features.attributes[user].copy()
        for col, name in enumerate(names):
            if name in attributes:
                row[col] = self.vocabs.attributes[name].encode([str(attributes[name])], unknown="zero")[0]
        return row
