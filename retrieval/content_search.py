"""The Retriever's content queries: product search by text and search by picture.

Both go through the item tower's encoders rather than the index's stored vectors, and both can be
personalised by a user's vector, so they share the query-content helpers and the personalisation step;
`Retriever` takes them in as the `ContentSearch` mixin.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image, UnidentifiedImageError

from tandemrec.data.content import ItemContent, square_pixels
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.filters import ItemFilter
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.retrieval.search import ProductSearch, QueryScores, SearchWeights, depth_for, personalise, query_users
from tandemrec.towers.two_tower import TwoTower

ImageQuery = Image.Image | str | Path


class ContentSearch:
    """`search` / `search_image` and their batch forms, for a class that provides the attributes below
    (the `Retriever`): its item catalogue, model, text search state, and its checks and item embedding."""

    model: TwoTower
    index: ItemIndex
    items: ItemCatalogue
    catalogue: pl.DataFrame
    product_search: ProductSearch | None

    def search(
        self, text: str, k: int = 10, filter: ItemFilter | None = None, user: str | None = None
    ) -> Recommendations:
        """Product search: the k items that best match `text` by meaning (the run's text encoder on the query
        and on each item's text), by its words (BM25) and, as weighted in RUN/search/weights.json, by the
        item tower's view of the query (see retrieval/search.py). With `user` (a user id the run knows) the
        query's best candidates are re-ordered by the user's vector; `filter` applies either way."""
        self._check_query("text", text, k, filter)
        return self.search_batch([text], k, filter, None if user is None else [user])[0]

    def search_batch(
        self,
        texts: Sequence[str],
        k: int = 10,
        filter: ItemFilter | None = None,
        users: Sequence[str] | None = None,
    ) -> list[Recommendations]:
        """`search` for many texts; `users` (one user id per text) personalises each."""
        self._check_query("texts", texts, k, filter)
        search = self._product_search()
        user_vectors = None if users is None else self.user_vectors(query_users(users, len(texts)))
        mixed = self.text_scores(texts, bool(search.weights.collaborative)).mix(search.weights)
        depth = k if user_vectors is None else depth_for(k, len(self.items))
        found = [self.items.rank(row, depth, None, filter, "text") for row in mixed]
        if user_vectors is None:
            return found
        return [personalise(self.items, f, v, search.weights.personal, k) for f, v in zip(found, user_vectors)]

    def text_scores(self, texts: Sequence[str], collaborative: bool = True) -> QueryScores:
        """The parts of the search score of each text over every index row (meaning, BM25 and, when asked,
        the item tower's text path), before they are mixed: for choosing the weights without re-encoding.
        Each distinct text is encoded and scored once (every score is per text): a batch of queries often
        repeats a few texts, as choosing the search weights does (one query per category, many events)."""
        search = self._product_search()
        distinct, inverse = np.unique(np.array(list(texts), dtype=object), return_inverse=True)
        texts = [str(t) for t in distinct]
        encoded = search.encode(texts)
        vectors = None
        if collaborative:  # the item tower's text path starts from the same encoder's output
            present = torch.ones(len(texts), dtype=torch.bool)
            content = _query_content(len(texts), text_features=torch.from_numpy(encoded), has_text=present)
            vectors = self._embed_items(content) @ self.index.vectors(np.arange(len(self.index))).T
        scores = search.covering(self.index.ids, self.catalogue).scores(encoded, texts, vectors)
        return QueryScores(
            scores.semantic[inverse], scores.lexical[inverse],
            None if scores.collaborative is None else scores.collaborative[inverse],
        )

    def _product_search(self) -> ProductSearch:
        if self.product_search is None:
            raise RetrievalError("this run's model has no text encoder (or no model/tokenizer/): no text search")
        return self.product_search

    def search_image(
        self, image: ImageQuery, k: int = 10, filter: ItemFilter | None = None, user: str | None = None
    ) -> Recommendations:
        """The items nearest to a picture (a PIL image or a file path) embedded from the image alone; with
        `user`, the picture's best candidates re-ordered by the user's vector (as in `search`)."""
        self._check_query("image", image, k, filter)
        return self.search_image_batch([image], k, filter, None if user is None else [user])[0]

    def search_image_batch(
        self,
        images: Sequence[ImageQuery],
        k: int = 10,
        filter: ItemFilter | None = None,
        users: Sequence[str] | None = None,
    ) -> list[Recommendations]:
        """`search_image` for many images; `users` (one user id per image) personalises each."""
        self._check_query("images", images, k, filter)
        encoder = self.model.item_tower.image
        if encoder is None:
            raise RetrievalError("this run's model has no image encoder: no image search")
        pixels = torch.stack([square_pixels(_open_image(image), encoder.image_size) for image in images])
        content = _query_content(len(images), pixels=pixels, has_image=torch.ones(len(images), dtype=torch.bool))
        user_vectors = None if users is None else self.user_vectors(query_users(users, len(images)))
        if user_vectors is None:
            return self.items.search(self._embed_items(content), k, None, filter, "image")
        personal = self.product_search.weights.personal if self.product_search else SearchWeights().personal
        found = self.items.search(self._embed_items(content), depth_for(k, len(self.items)), None, filter, "image")
        return [personalise(self.items, f, v, personal, k) for f, v in zip(found, user_vectors)]


def _query_content(n: int, **modalities: torch.Tensor) -> ItemContent:
    """Content of n queries that are not catalogue items: unknown id and category, only the given modality."""
    zeros = torch.zeros(n, dtype=torch.int64)
    return ItemContent(item_index=zeros, category=zeros, **modalities)


def _open_image(image: ImageQuery) -> Image.Image:
    """An image query (checked by `arguments.image`) as a PIL image; a file may still vanish or be junk."""
    if isinstance(image, Image.Image):
        return image
    try:
        with Image.open(image) as img:
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise RetrievalError(f"image file '{image}' does not exist") from err
    except (UnidentifiedImageError, OSError) as err:
        raise RetrievalError(f"image file '{image}' is not a readable image: {err}") from err
