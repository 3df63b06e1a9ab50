"""How the Retriever ranks users: known ones by their vectors (top-k by the dot product, or re-ordered by a
predicted event), unknown ones by popularity.

`recommend(rerank=...)` retrieves a deeper candidate list and orders it by P(event): the outcome model's
when it predicts that event (chosen on validation, calibrated), else the behaviour head's. The checks of
the ranking options live here too, next to what they guard; `Retriever` takes this in as `UserRanking`.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

import numpy as np

from tandemrec.data.features import UserFeatures
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.retrieval import arguments
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.outcome_ranker import OutcomeRanker
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.towers.behaviour_head import BehaviourHead

# `recommend(..., rerank=...)` re-orders this many candidates (at least), or RERANK_DEPTH_FACTOR * k.
RERANK_DEPTH = 50
RERANK_DEPTH_FACTOR = 5


class UserRanking:
    """Ranking of user vectors for a class that provides the attributes below (the `Retriever`)."""

    index: ItemIndex
    items: ItemCatalogue
    vocabs: Vocabularies
    features: UserFeatures
    popularity: np.ndarray
    behaviour: BehaviourHead | None
    outcome: OutcomeRanker | None
    _lock: threading.Lock
    _embed_users: Callable[[np.ndarray, np.ndarray | None], np.ndarray]

    def _recommend_batch(
        self, user_ids: list[str], k: int, exclude_seen: bool, item_filter: ItemFilter | None, rerank: str | None
    ) -> list[Recommendations]:
        """`recommend_batch` of checked ids (the one-user `recommend` checked its own)."""
        exclude_seen = self._check_ranking(k, exclude_seen, item_filter, rerank)
        every = self.vocabs.users.lookup(user_ids)
        known = every > 0
        if known.all():  # the common case, one user included, in fewest steps
            return self._recommend_known(every, k, exclude_seen, item_filter, rerank)
        results: list[Recommendations] = [None] * len(user_ids)  # type: ignore[list-item]
        if known.any():
            found = self._recommend_known(every[known], k, exclude_seen, item_filter, rerank)
            for i, rec in zip(np.flatnonzero(known), found):
                results[i] = rec
        popular = self.items.rank(self.popularity, k, None, item_filter)
        for i in np.flatnonzero(~known):
            results[i] = dataclasses.replace(popular, ids=list(popular.ids), scores=popular.scores.copy())
        return results

    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool, item_filter: ItemFilter | None, rerank: str | None
    ) -> list[Recommendations]:
        """`recommend_batch` for users the run knows (vocabulary indices > 0), arguments checked. Their seen
        rows come straight from the log: valid rows, and repeats do no harm to an exclusion."""
        exclude = [items - 1 for items in self.features.log.items_before(users, None)] if exclude_seen else None
        return self._search_users(self._embed_users(users, None), k, exclude, item_filter, "model", rerank, users)

    def _search_users(
        self,
        vectors: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None,
        item_filter: ItemFilter | None,
        source: str,
        rerank: str | None,
        users: np.ndarray | None = None,
    ) -> list[Recommendations]:
        """Top-k per user vector; with `rerank`, the k most likely to get that event among deeper candidates:
        by the outcome model when it predicts `rerank` (its features need `users`, vocabulary indices, 0 for
        a user described at call time), else by the head."""
        if rerank is None:
            return self.items.search(vectors, k, exclude, item_filter, source)
        depth = min(len(self.items), max(RERANK_DEPTH, RERANK_DEPTH_FACTOR * k))
        found = self.items.search(vectors, depth, exclude, item_filter, source)
        users = np.zeros(len(vectors), dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
        filled = [i for i, candidates in enumerate(found) if candidates.ids]
        p = self._rerank_probabilities(rerank, vectors[filled], users[filled], [found[i].ids for i in filled])
        results = list(found)
        for i, scores in zip(filled, p):
            order = np.argsort(-scores, kind="stable")[:k]
            ids = found[i].ids
            results[i] = Recommendations([ids[j] for j in order], scores[order].astype(np.float32), source)
        return results

    def _rerank_probabilities(
        self, rerank: str, vectors: np.ndarray, users: np.ndarray, ids: list[list[str]]
    ) -> list[np.ndarray]:
        """P(`rerank`) of each user (index `users[i]`, 0: described at call time; vector `vectors[i]`) with
        each of their items `ids[i]`, in one pass: the outcome model's when it predicts `rerank` (chosen on
        validation, calibrated; its history features cost one scan of the log per call), else the head's."""
        found = [self.items.vectors_of(row_ids) for row_ids in ids]
        sizes = [len(rows) for rows, _ in found]
        if not sizes:
            return []
        rows = np.concatenate([r for r, _ in found])
        user_vectors = np.repeat(vectors, sizes, axis=0)
        with self._lock:
            if self.outcome is not None and rerank == self.outcome.outcome:
                catalogue = self.index.vectors(np.arange(len(self.index)))
                p = self.outcome.probabilities(np.repeat(users, sizes), user_vectors, rows, catalogue)[0]
            else:
                item_vectors = np.concatenate([v for _, v in found])
                p = self.behaviour.probabilities(user_vectors, item_vectors)[:, self.behaviour.outputs.index(rerank)]
        return np.split(p, np.cumsum(sizes)[:-1])

    def require_behaviour(self, argument: str) -> BehaviourHead:
        """The run's behaviour head; RetrievalError naming `argument` when the run has none."""
        if self.behaviour is None:
            raise RetrievalError(
                f"{argument}: this run has no behaviour head (RUN/behaviour/); train one with `tandemrec behaviour RUN`"
            )
        return self.behaviour

    def _check_ranking(self, k: object, exclude_seen: object, item_filter: object, rerank: object) -> bool:
        """The ranking options of `recommend` and `recommend_batch`; returns `exclude_seen` as a bool."""
        arguments.check_k(k, self.index.live_count)
        exclude_seen = arguments.flag(exclude_seen, "exclude_seen")
        arguments.item_filter(item_filter)
        rerank = arguments.optional_name(rerank, "rerank")
        outcome = [] if self.outcome is None else [self.outcome.outcome]
        if rerank is not None and rerank not in self.require_behaviour("rerank").outputs + outcome:
            raise RetrievalError(
                f"rerank: unknown event type {rerank!r}; this run's head predicts {self.behaviour.outputs}"
            )
        return exclude_seen
