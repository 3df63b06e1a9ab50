"""Retriever: everything a service needs from a run folder, behind a small, thread-safe API.

Calls may come from many threads at once: model forwards share one lock (a module's forward is not made
for concurrent calls), index searches run side by side under the item catalogue's read lock, and
`add_items` / `remove_items` take its write lock. Every query form has a batch form; a list of results
becomes one polars table with `results_frame`.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image, UnidentifiedImageError

from tandemrec.data.batch import UserBatch
from tandemrec.data.content import ItemContent, build_item_content, square_pixels
from tandemrec.data.dataset import Dataset
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.data.run_folder import RunFolder
from tandemrec.data.split import SplitConfig, cold_item_indices, split_by
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex, check_k
from tandemrec.retrieval.profiles import Segments, UserProfile, category_shares, has_segments
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.towers.behaviour_head import BehaviourHead, has_head, load_head
from tandemrec.towers.config import from_dict
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.inference import embed
from tandemrec.towers.serialization import TOKENIZER_DIR, load_model, model_hash
from tandemrec.towers.text_encoder import load_tokenizer, make_tokenize
from tandemrec.towers.two_tower import TwoTower

USER_BATCH = 1024
ITEM_BATCH = 256
# `recommend(..., rerank=...)` re-orders this many candidates (at least), or RERANK_DEPTH_FACTOR * k.
RERANK_DEPTH = 50
RERANK_DEPTH_FACTOR = 5
PROFILE_ITEMS = 50  # nearest items whose categories summarise a user vector in `profile`
ImageQuery = Image.Image | str | Path


class Retriever:
    """Index row i holds item vocabulary index i + 1, so histories and seen sets map to rows directly;
    items added later (`add_items`) get the rows after those."""

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
    ) -> None:
        """`popularity[r]`: the fallback score of index row r (training-event share); `tokenizer`: the text
        encoder's, for `search`; `image_root`: where `catalogue` image paths are relative to; `behaviour`:
        the run's behaviour head (`predict_behaviour`, `recommend(rerank=...)`); `segments`: the run's user
        segments (`profile`)."""
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
        tokenizer_dir = run.model / TOKENIZER_DIR
        tokenizer = load_tokenizer(str(tokenizer_dir)) if tokenizer_dir.is_dir() else None
        popularity = _training_popularity(run, dataset, vocabs)
        towers = model_hash(run.model)
        try:
            behaviour = load_head(run.behaviour, towers) if has_head(run.behaviour) else None
        except (EncoderLoadError, FileNotFoundError) as err:
            raise RetrievalError(str(err)) from err
        segments = Segments.load(run.profiles, towers) if has_segments(run.profiles) else None
        return cls(
            model, vocabs, features, index, dataset.items, popularity, tokenizer, dataset.root, behaviour, segments
        )

    @property
    def device(self) -> torch.device:
        return self.model.log_temperature.device

    def user_vectors(self, user_ids: Sequence[str], times: np.ndarray | None = None) -> np.ndarray:
        """User embeddings from each user's features and history (up to `times`, else everything)."""
        return self.embed_users(self._user_index(user_ids), times)

    def embed_users(self, users: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        batches = self.features.batches(users, times, USER_BATCH)
        with self._lock:
            return embed(self.model.user_tower, batches, self.device).numpy()

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
        if history is None and attributes is None:
            if user_id is None:
                raise RetrievalError("recommend needs a user_id, or history / attributes given at call time")
            return self.recommend_batch([user_id], k, exclude_seen, filter, rerank=rerank)[0]
        self._rerank_output(rerank)
        check_k(k, len(self.items))
        user, rows, batch = self._given_features(user_id, history, attributes or {})
        seen = None
        if exclude_seen:
            stored = self.seen_rows(np.array([user]))[0] if user else np.zeros(0, dtype=np.int64)
            seen = np.union1d(rows, stored)
        if batch is None:
            return self.items.rank(self.popularity, k, seen, filter)
        vector = self._embed_batch(batch)
        return self._search_users(vector, k, None if seen is None else [seen], filter, "features", rerank)[0]

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
        self._rerank_output(rerank)
        if isinstance(user_ids, str):
            raise RetrievalError("recommend_batch takes a list of user ids; use recommend() for one user")
        if len(user_ids) == 0:
            raise RetrievalError("no user ids given")
        check_k(k, len(self.items))
        known = np.array([u in self.vocabs.users for u in user_ids], dtype=bool)
        results: list[Recommendations] = [None] * len(user_ids)  # type: ignore[list-item]
        if known.any():
            users = self.vocabs.users.encode([u for u, ok in zip(user_ids, known) if ok])
            exclude = self.seen_rows(users) if exclude_seen else None
            found = self._search_users(self.embed_users(users), k, exclude, filter, "model", rerank)
            for i, rec in zip(np.flatnonzero(known), found):
                results[i] = rec
        if not known.all():
            popular = self.items.rank(self.popularity, k, None, filter)
            for i in np.flatnonzero(~known):
                results[i] = dataclasses.replace(popular, ids=list(popular.ids), scores=popular.scores.copy())
        return results

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
        head = self.require_behaviour("predict_behaviour")
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise RetrievalError(f"items must be a list of item ids, got {type(items).__name__}")
        if len(items) == 0:
            raise RetrievalError("items: no item ids given")
        try:
            _, item_vectors = self.items.vectors_of(list(items))
        except RetrievalError as err:
            raise RetrievalError(f"items: {err}") from err
        vector, _, _, _ = self._user_vector(user_id, history, attributes, "predict_behaviour")
        with self._lock:
            p = head.probabilities(vector, item_vectors)
        return pl.DataFrame({"item_id": list(items), **{name: p[:, j] for j, name in enumerate(head.outputs)}})

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
        check_k(k, len(self.items))
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
        return self.similar_items_batch([item_id], k, filter)[0]

    def similar_items_batch(
        self, item_ids: Sequence[str], k: int = 10, filter: ItemFilter | None = None
    ) -> list[Recommendations]:
        if isinstance(item_ids, str):
            raise RetrievalError("similar_items_batch takes a list of item ids; use similar_items() for one item")
        if len(item_ids) == 0:
            raise RetrievalError("no item ids given")
        check_k(k, len(self.items))
        rows, vectors = self.items.vectors_of(item_ids)
        return self.items.search(vectors, k, [row[None] for row in rows], filter, "item")

    def search(self, text: str, k: int = 10, filter: ItemFilter | None = None) -> Recommendations:
        """Product search: the items nearest to `text` embedded by the item tower from text alone."""
        return self.search_batch([text], k, filter)[0]

    def search_batch(
        self, texts: Sequence[str], k: int = 10, filter: ItemFilter | None = None
    ) -> list[Recommendations]:
        if isinstance(texts, str):
            raise RetrievalError("search_batch takes a list of texts; use search() for one text")
        if len(texts) == 0:
            raise RetrievalError("no text queries given")
        blank = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if blank:
            raise RetrievalError(f"text queries must be non-empty strings; query {blank[0]} is {texts[blank[0]]!r}")
        check_k(k, len(self.items))
        if self.model.item_tower.text is None or self.tokenizer is None:
            raise RetrievalError("this run's model has no text encoder (or no model/tokenizer/): no text search")
        input_ids, attention_mask = make_tokenize(self.tokenizer)(list(texts), self.model.config.item.text.max_length)
        present = torch.ones(len(texts), dtype=torch.bool)
        content = _query_content(len(texts), input_ids=input_ids, attention_mask=attention_mask, has_text=present)
        return self.items.search(self._embed_items(content), k, None, filter, "text")

    def search_image(self, image: ImageQuery, k: int = 10, filter: ItemFilter | None = None) -> Recommendations:
        """The items nearest to a picture (a PIL image or a file path) embedded from the image alone."""
        return self.search_image_batch([image], k, filter)[0]

    def search_image_batch(
        self, images: Sequence[ImageQuery], k: int = 10, filter: ItemFilter | None = None
    ) -> list[Recommendations]:
        if isinstance(images, (str, Path, Image.Image)):
            raise RetrievalError("search_image_batch takes a list of images; use search_image() for one image")
        if len(images) == 0:
            raise RetrievalError("no image queries given")
        check_k(k, len(self.items))
        encoder = self.model.item_tower.image
        if encoder is None:
            raise RetrievalError("this run's model has no image encoder: no image search")
        pixels = torch.stack([square_pixels(_open_image(image), encoder.image_size) for image in images])
        content = _query_content(len(images), pixels=pixels, has_image=torch.ones(len(images), dtype=torch.bool))
        return self.items.search(self._embed_items(content), k, None, filter, "image")

    def search_vectors(
        self, vectors: np.ndarray, k: int = 10, filter: ItemFilter | None = None
    ) -> list[Recommendations]:
        """The items nearest to query vectors (m, dim) made elsewhere (L2-normalised, the index's metric)."""
        return self.items.search(vectors, k, None, filter, "vector")

    def add_items(self, items: pl.DataFrame, image_root: str | Path | None = None) -> list[str]:
        """Embed new items from their content and add them to the index without rebuilding it.

        `items` follows the items table (item_id, title, and optionally text, category, image: a path
        relative to `image_root`, or as given when None). The ids are new to the model (embedding row 0,
        masked), so the vectors come from content alone: the cold-start path. The items are searchable at
        once; they live in memory (`retriever.index.save(folder)` keeps them). Returns the ids added.
        """
        if not isinstance(items, pl.DataFrame) or items.is_empty():
            raise RetrievalError(f"items must be a non-empty polars DataFrame, got {type(items).__name__}")
        missing = [c for c in ("item_id", "title") if c not in items.columns]
        if missing:
            raise RetrievalError(
                f"items: missing column(s) {missing}; expected item_id, title and optionally text, category, image"
            )
        item_id = items["item_id"]
        if item_id.dtype != pl.String or item_id.null_count() or not item_id.is_unique().all():
            raise RetrievalError("items: item_id must hold unique, non-null strings")
        ids = item_id.to_list()
        self.items.check_new(ids)
        category = items["category"] if "category" in items.columns else pl.Series([None] * items.height, pl.String)
        tower, text = self.model.item_tower, self.model.config.item.text
        content = build_item_content(
            items,
            np.zeros(items.height, dtype=np.int64),
            self.vocabs.categories.encode(category.fill_null(""), unknown="zero"),
            None if image_root is None else Path(image_root),
            make_tokenize(self.tokenizer) if tower.text is not None and self.tokenizer is not None else None,
            text.max_length if text else 0,
            tower.image.image_size if tower.image is not None else None,
        )
        vectors = self._embed_items(content)
        with self._lock:  # one add at a time, so that the index and the items table stay in step
            self.items.add(vectors, ids, category.to_list())
            self._category_of.update(zip(ids, category.to_list()))
            self.catalogue = pl.concat([self.catalogue, items], how="diagonal_relaxed")
        return ids

    def remove_items(self, item_ids: Sequence[str]) -> None:
        """Take items out of every later result (their index rows stay; positions never shift)."""
        if isinstance(item_ids, str):
            raise RetrievalError("remove_items takes a list of item ids")
        self.items.remove(list(item_ids))

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

    def _given_features(
        self, user_id: str | None, history: Sequence[str] | None, attributes: Mapping[str, str]
    ) -> tuple[int, np.ndarray, UserBatch | None]:
        """(user index, 0 when unknown; index rows of the given history; the user batch, or None when
        nothing usable is known: an unknown user with no history and no known attribute value)."""
        if isinstance(history, str):
            raise RetrievalError("history must be a list of item ids (oldest first), got a single string")
        user = int(self.vocabs.users.encode([user_id])[0]) if user_id in self.vocabs.users else 0
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

    def _search_users(
        self,
        vectors: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None,
        item_filter: ItemFilter | None,
        source: str,
        rerank: str | None,
    ) -> list[Recommendations]:
        """Top-k per user vector; with `rerank`, the k most likely to get that event among deeper candidates."""
        if rerank is None:
            return self.items.search(vectors, k, exclude, item_filter, source)
        depth = min(len(self.items), max(RERANK_DEPTH, RERANK_DEPTH_FACTOR * k))
        column = self.behaviour.outputs.index(rerank)
        found = self.items.search(vectors, depth, exclude, item_filter, source)
        results = []
        for vector, candidates in zip(vectors, found):
            if not candidates.ids:
                results.append(candidates)
                continue
            _, item_vectors = self.items.vectors_of(candidates.ids)
            with self._lock:
                p = self.behaviour.probabilities(vector[None, :], item_vectors)[:, column]
            order = np.argsort(-p, kind="stable")[:k]
            results.append(Recommendations([candidates.ids[i] for i in order], p[order].astype(np.float32), source))
        return results

    def require_behaviour(self, argument: str) -> BehaviourHead:
        """The run's behaviour head; RetrievalError naming `argument` when the run has none."""
        if self.behaviour is None:
            raise RetrievalError(
                f"{argument}: this run has no behaviour head (RUN/behaviour/); train one with `tandemrec behaviour RUN`"
            )
        return self.behaviour

    def _rerank_output(self, rerank: str | None) -> None:
        if rerank is not None and rerank not in self.require_behaviour("rerank").outputs:
            raise RetrievalError(
                f"rerank: unknown event type {rerank!r}; this run's head predicts {self.behaviour.outputs}"
            )

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

    def _embed_items(self, content: ItemContent) -> np.ndarray:
        with self._lock:
            return embed(self.model.item_tower, content.batches(ITEM_BATCH), self.device).numpy()


def _query_content(n: int, **modalities: torch.Tensor) -> ItemContent:
    """Content of n queries that are not catalogue items: unknown id and category, only the given modality."""
    zeros = torch.zeros(n, dtype=torch.int64)
    return ItemContent(item_index=zeros, category=zeros, **modalities)


def _open_image(image: ImageQuery) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if not isinstance(image, (str, Path)):
        raise RetrievalError(f"an image query must be a PIL image or a file path, got {type(image).__name__}")
    try:
        with Image.open(image) as img:
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise RetrievalError(f"image file '{image}' does not exist") from err
    except (UnidentifiedImageError, OSError) as err:
        raise RetrievalError(f"image file '{image}' is not a readable image: {err}") from err


def _training_popularity(run: RunFolder, dataset: Dataset, vocabs: Vocabularies) -> np.ndarray:
    """Each run item's share of the training events (the split the model was trained on), by index row."""
    raw = json.loads(run.config.read_text()) if run.config.is_file() else {}
    split = from_dict(SplitConfig, raw.get("data", {}).get("split", {}))
    train = split_by(dataset.interactions, split).train
    counts = np.bincount(vocabs.items.encode(train["item_id"], unknown="zero"), minlength=len(vocabs.items))
    counts[cold_item_indices(len(vocabs.items) - 1, split.cold_items, split.seed)] = 0  # kept out of training
    counts = counts[1:]
    return counts / max(1, counts.sum())
