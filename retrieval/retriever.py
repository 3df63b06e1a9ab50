"""Retriever: everything a service needs from a run folder, behind a small, thread-safe API.

Calls may come from many threads at once: model forwards share one lock (a module's forward is not made
for concurrent calls), index searches run side by side under the item catalogue's read lock, and
`add_items` / `remove_items` take its write lock. Every query form has a batch form; a list of results
becomes one polars table with `results_frame`.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tandemrec.data.content import ItemContent, build_item_content
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.data.split import SplitConfig, cold_item_indices, split_by
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.retrieval import arguments
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.content_search import ContentSearch
from tandemrec.retrieval.described_users import DescribedUsers
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.profiles import Segments, UserProfile, category_shares, has_segments
# RERANK_DEPTH*: imported from here by the behaviour evaluation, the rest of the ranking lives in ranking.py
from tandemrec.retrieval.ranking import RERANK_DEPTH, RERANK_DEPTH_FACTOR, UserRanking  # noqa: F401
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.retrieval.search import SEARCH_DIR, ProductSearch, SearchWeights, load_text_features
from tandemrec.retrieval.outcome_ranker import OutcomeRanker
from tandemrec.run import Run
from tandemrec.towers.behaviour_head import BehaviourHead, has_head
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.inference import embed
from tandemrec.towers.text_encoder import make_tokenize
from tandemrec.towers.two_tower import TwoTower

USER_BATCH = 1024
ITEM_BATCH = 256
PROFILE_ITEMS = 50  # nearest items whose categories summarise a user vector in `profile`


class Retriever(DescribedUsers, UserRanking, ContentSearch):
    """Index row i holds item vocabulary index i + 1, so histories and seen sets map to rows directly;
    items added later (`add_items`) get the rows after those."""

    # The run's outcome model (RUN/behaviour/outcome_model.json), set by `load`: what `recommend(rerank=...)`
    # orders by for the output it predicts.
    outcome: OutcomeRanker | None = None

    def __init__(
        self,
        model: TwoTower,
        vocabs: Vocabularies,
        features: UserFeatures,
        index: ItemIndex,
        catalogue: pl.DataFrame,
        popularity: np.ndarray | None = None,
        tokenizer=None,
        image_root: Path | None = None,
        behaviour: BehaviourHead | None = None,
        segments: Segments | None = None,
        search_features: np.ndarray | None = None,
        search_weights: SearchWeights | None = None,
    ) -> None:
        """`popularity[r]`: the fallback score of index row r (training-event share); `tokenizer`: the text
        encoder's, for `search`; `image_root`: where `catalogue` image paths are relative to; `behaviour`:
        the run's behaviour head (`predict_behaviour`, `recommend(rerank=...)`); `segments`: the run's user
        segments (`profile`); `search_features` / `search_weights`: the run's stored search state
        (RUN/search/, see retrieval/search.py; without features `search` encodes the catalogue's texts)."""
        ids = index.ids
        run_rows = ids[: len(vocabs.items) - 1]
        if len(run_rows) != len(vocabs.items) - 1 or any(
            i is not None and i != v for i, v in zip(run_rows, vocabs.items.ids[1:])
        ):
            raise RetrievalError("the index's item ids do not follow the run's item vocabulary")
        self.model = model.eval()
        self.vocabs = vocabs
        self.features = features
        self.index = index
        self.catalogue = catalogue
        category = catalogue["category"].to_list() if "category" in catalogue.columns else [None] * catalogue.height
        self._category_of = dict(zip(catalogue["item_id"].to_list(), category))
        self.items = ItemCatalogue(index, [self._category_of.get(i) for i in ids])
        self.popularity = np.zeros(len(index)) if popularity is None else np.asarray(popularity, dtype=np.float64)
        self.tokenizer = tokenizer
        self.image_root = image_root
        self.behaviour = behaviour
        self.segments = segments
        self._lock = threading.Lock()
        text = model.item_tower.text
        self.product_search = (
            None
            if text is None or tokenizer is None
            else ProductSearch(
                text,
                make_tokenize(tokenizer),
                model.config.item.text.max_length,
                self._lock,
                search_features,
                search_weights or SearchWeights(),
            )
        )

    @classmethod
    def load(cls, run_dir: str | Path | Run, device: str | torch.device = "cpu") -> "Retriever":
        """The retriever of an indexed run folder; given a job's opened `Run`, its model, vocabularies and
        dataset are shared, not read again."""
        run = run_dir if isinstance(run_dir, Run) else Run(arguments.path(run_dir, "run_dir"))
        device = arguments.device(device)
        paths = run.folder
        if not run.root.is_dir():
            raise RetrievalError(f"run folder '{run.root}' does not exist")
        for needed in (paths.model, paths.vocab, paths.dataset, paths.index):
            if not needed.exists():
                raise RetrievalError(f"run folder '{run.root}' has no {needed.name}/ (train, then index the run)")
        model, vocabs, dataset, towers = run.model.to(device), run.vocabs, run.dataset, run.model_hash
        log = EventLog.from_frame(dataset.interactions, vocabs.users, vocabs.items)
        features = UserFeatures(
            log,
            vocabs.user_attribute_matrix(dataset.users),
            sorted(vocabs.attributes),
            model.config.user.history_len,
            model.config.user.sequence,
        )
        index = ItemIndex.load(paths.index, expect_dim=model.config.dim, expect_model_hash=towers)
        try:
            behaviour = BehaviourHead.from_pretrained(paths.behaviour, towers) if has_head(paths.behaviour) else None
            outcome = OutcomeRanker.load(paths.behaviour, towers, dataset, vocabs)
        except (EncoderLoadError, FileNotFoundError) as err:
            raise RetrievalError(str(err)) from err
        segments = Segments.load(paths.profiles, towers) if has_segments(paths.profiles) else None
        search = run.root / SEARCH_DIR
        retriever = cls(
            model, vocabs, features, index, dataset.items, _training_popularity(run), run.tokenizer, dataset.root,
            behaviour, segments,
            load_text_features(search, index.ids), SearchWeights.load(search),
        )
        retriever.outcome = outcome
        return retriever

    @property
    def device(self) -> torch.device:
        return self.model.log_temperature.device

    def user_vectors(self, user_ids: Sequence[str], times: np.ndarray | None = None) -> np.ndarray:
        """User embeddings from each user's features and history (up to `times`: int64 UTC microseconds or
        datetime64, one per user; None: everything)."""
        user_ids = arguments.id_list(user_ids, "user_ids", "user ids")
        return self.embed_users(self._user_index(user_ids), arguments.times(times, "times", len(user_ids)))

    def embed_users(
        self,
        users: np.ndarray,
        times: np.ndarray | None = None,
        progress: bool = False,
        desc: str = "users",
        shared: bool = False,
    ) -> np.ndarray:
        """User embeddings by user vocabulary index (0: unknown), with their features as of `times`;
        `progress` shows a bar under `desc`. `shared`: the processes of a job's group call this together
        and split the batches (towers/inference.embed)."""
        users, times = arguments.user_times(users, times, len(self.vocabs.users))
        return self._embed_users(users, times, progress, desc, shared)

    def _embed_users(
        self, users: np.ndarray, times: np.ndarray | None, progress: bool = False, desc: str = "users", shared: bool = False
    ) -> np.ndarray:
        """`embed_users` of users and times already checked (a served request's known users)."""
        batches = self.features.batches(users, times, USER_BATCH)
        with self._lock:
            return embed(self.model.user_tower, batches, self.device, progress, len(users), desc, shared).numpy()

    def recommend(
        self,
        user_id: str | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        filter: ItemFilter | None = None,
        *,
        history: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        rerank: str | None = None,
    ) -> Recommendations:
        """Top-k items for a user; the result's `source` says how the user was known.

        A known user is embedded from their stored attributes and history ("model"). Features given at call
        time ("features") replace the stored ones, for known and unknown users alike: `history` (item ids,
        oldest first; None keeps a known user's stored history) and `attributes` (name -> value; names not
        given keep the stored value). A user the run does not know, with nothing usable given, gets the most
        popular items of the training events ("popularity"). `exclude_seen` leaves out the items the user
        had (stored events and the given history); `filter` restricts the candidates.

        `rerank` (an output of the run's behaviour head, e.g. "purchase" or "target") retrieves
        max(RERANK_DEPTH, RERANK_DEPTH_FACTOR * k) candidates by the dot product and returns the k most
        likely to get that event: the scores are then the head's probabilities. A user ranked by
        popularity (unknown, nothing given) is not reranked: there is no user vector to score with.
        """
        user_id, history, attributes = arguments.user_description(user_id, history, attributes)
        if history is None and attributes is None:
            if user_id is None:
                raise RetrievalError("recommend needs a user_id, or history / attributes given at call time")
            return self._recommend_batch([user_id], k, exclude_seen, filter, rerank)[0]
        exclude_seen = self._check_ranking(k, exclude_seen, filter, rerank)
        user, rows, batch = self._given_features(user_id, history, attributes or {})
        seen = None
        if exclude_seen:
            stored = self.seen_rows(np.array([user]))[0] if user else np.zeros(0, dtype=np.int64)
            seen = np.union1d(rows, stored)
        if batch is None:
            return self.items.rank(self.popularity, k, seen, filter)
        vector = self._embed_batch(batch)
        exclude = None if seen is None else [seen]
        return self._search_users(vector, k, exclude, filter, "features", rerank, np.array([user]))[0]

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        filter: ItemFilter | None = None,
        *,
        rerank: str | None = None,
    ) -> list[Recommendations]:
        """`recommend` for many users in one pass: known users through the model, unknown ones popularity."""
        return self._recommend_batch(arguments.id_list(user_ids, "user_ids", "user ids"), k, exclude_seen, filter, rerank)

    def predict_behaviour(
        self,
        user_id: str | None,
        items: Sequence[str],
        *,
        history: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> pl.DataFrame:
        """The probability of each of the head's outputs (event types, and `target` when the run has a target
        domain) for the user with each item: a table with `item_id` and one column per output, in `items` order.

        The user is known to the run, or described at call time by `history` / `attributes` as in
        `recommend`. Items are any live item of the index, added ones included. A probability carries both
        relevance and the event: the head was trained against sampled items the user never touched.
        """
        user_id, history, attributes = arguments.user_description(user_id, history, attributes)
        items = arguments.id_list(items, "items", "item ids")
        head = self.require_behaviour("predict_behaviour")
        try:
            _, item_vectors = self.items.vectors_of(items)
        except RetrievalError as err:
            raise RetrievalError(f"items: {err}") from err
        vector, _, _, _ = self._user_vector(user_id, history, attributes, "predict_behaviour")
        with self._lock:
            p = head.probabilities(vector, item_vectors)
        return pl.DataFrame({"item_id": items, **{name: p[:, j] for j, name in enumerate(head.outputs)}})

    def profile(
        self,
        user_id: str | None = None,
        k: int = 10,
        *,
        history: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> UserProfile:
        """Who the user is in the catalogue's terms (see `UserProfile`): the k items nearest to the user
        vector and the category shares among the PROFILE_ITEMS nearest, the user's last k history items and
        the category shares of their whole history, and their segment when the run has profiles."""
        user_id, history, attributes = arguments.user_description(user_id, history, attributes)
        arguments.check_k(k, len(self.items))
        vector, user, rows, source = self._user_vector(user_id, history, attributes, "profile")
        depth = min(len(self.items), max(k, PROFILE_ITEMS))
        nearest = self.items.search(vector, depth, None, None, source)[0]
        if history is not None:
            past = [i for i in self.index.ids_at(rows).tolist() if i is not None]
        else:
            past = self.vocabs.items.decode(self.features.log.items_before(np.array([user]), None)[0]) if user else []
        segment = int(self.segments.assign(vector)[0]) if self.segments is not None else None
        return UserProfile(
            user_id=user_id,
            source=source,
            nearest_items=Recommendations(nearest.ids[:k], nearest.scores[:k], source),
            nearest_categories=category_shares(nearest.ids, self._category_of),
            history_items=list(reversed(past))[:k],
            history_categories=category_shares(past, self._category_of),
            segment=segment,
            segment_name=None if segment is None else self.segments.names[segment],
        )

    def similar_items(self, item_id: str, k: int = 10, filter: ItemFilter | None = None) -> Recommendations:
        """The k items nearest to `item_id` in the index, the item itself left out."""
        self._check_query("item_id", item_id, k, filter)
        return self.items.similar([item_id], k, filter)[0]

    def similar_items_batch(
        self, item_ids: Sequence[str], k: int = 10, filter: ItemFilter | None = None
    ) -> list[Recommendations]:
        """`similar_items` for many items in one pass."""
        return self.items.similar(self._check_query("item_ids", item_ids, k, filter), k, filter)

    def search_vectors(
        self, vectors: np.ndarray, k: int = 10, filter: ItemFilter | None = None
    ) -> list[Recommendations]:
        """The items nearest to query vectors (m, dim) made elsewhere (L2-normalised, the index's metric)."""
        vectors = self._check_query("vectors", vectors, k, filter)
        found = self.items.search(vectors, k, None, filter, "vector")
        arguments.check_found(vectors, found[0].scores, "vectors")  # a lone vector's values, read from its scores
        return found

    def add_items(self, items: pl.DataFrame, image_root: str | Path | None = None) -> list[str]:
        """Embed new items from their content and add them to the index without rebuilding it.

        `items` follows the items table (item_id, title, and optionally text, category, image: a path
        relative to `image_root`, or as given when None; a missing optional column counts as all null, e.g.
        no category: the unknown category). The ids are new to the model (embedding row 0, masked), so the
        vectors come from content alone, moved as the model places new items (training/new_items.py): the
        cold-start path. The items are searchable at once; they live in
        memory (`retriever.index.save(folder)` keeps them). Returns the ids added.
        """
        items = arguments.item_table(items)
        image_root = arguments.folder(image_root, "image_root")
        ids = items["item_id"].to_list()
        self.items.check_new(ids)
        category = items["category"]
        tower, text = self.model.item_tower, self.model.config.item.text
        content = build_item_content(
            items,
            np.zeros(items.height, dtype=np.int64),
            self.vocabs.categories.encode(category.fill_null(""), unknown="zero"),
            image_root,
            make_tokenize(self.tokenizer) if tower.text is not None and self.tokenizer is not None else None,
            text.max_length if text else 0,
            tower.image.image_size if tower.image is not None else None,
        )
        every = torch.ones(len(ids), dtype=torch.bool)
        vectors = tower.place_new_items(torch.from_numpy(self._embed_items(content)), every).numpy()
        with self._lock:  # one add at a time, so that the index and the items table stay in step
            self.items.add(vectors, ids, category.to_list())
            self._category_of.update(zip(ids, category.to_list()))
            self.catalogue = pl.concat([self.catalogue, items], how="diagonal_relaxed")
        return ids

    def remove_items(self, item_ids: Sequence[str]) -> None:
        """Take items out of every later result (their index rows stay; positions never shift)."""
        self.items.remove(arguments.id_list(item_ids, "item_ids", unique=True))

    def seen_rows(self, users: np.ndarray, times: np.ndarray | None = None) -> list[np.ndarray]:
        """Index rows of the items each user (by vocabulary index) already had an event with (before `times`)."""
        users, times = arguments.user_times(users, times, len(self.vocabs.users))
        return [np.unique(items) - 1 for items in self.features.log.items_before(users, times)]

    def _check_query(self, name: str, value: object, k: object, item_filter: object) -> Any:
        """The arguments every query form shares, checked before any work so that the first wrong one is
        named: the query argument called `name` (ids, texts, images or vectors, see `arguments.query`), k
        and the filter. Returns the query as checked (a list, or a float32 matrix for vectors)."""
        checked = arguments.query(name, value, self.index.dim)
        arguments.check_k(k, self.index.live_count)
        if item_filter is not None:  # None passes: no call on every query's path
            arguments.item_filter(item_filter)
        return checked

    def _embed_items(self, content: ItemContent) -> np.ndarray:
        with self._lock:
            return embed(self.model.item_tower, content.batches(ITEM_BATCH), self.device).numpy()


def _training_popularity(run: Run) -> np.ndarray:
    """Each run item's share of the training events (the split the model was trained on), by index row."""
    vocabs = run.vocabs
    split = run.config.data.split if run.folder.config.is_file() else SplitConfig()
    train = split_by(run.dataset.interactions, split).train
    counts = np.bincount(vocabs.items.encode(train["item_id"], unknown="zero"), minlength=len(vocabs.items))
    counts[cold_item_indices(len(vocabs.items) - 1, split.cold_items, split.seed)] = 0  # kept out of training
    counts = counts[1:]
    return counts / max(1, counts.sum())
