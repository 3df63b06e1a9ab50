"""Product search that keeps the meaning of the query: a validated mix of three scores per item.

The item tower's text path maps a query into the collaborative space, where items sit by who bought them,
not by what they are: on MovieLens a "Western movies" query found westerns in 3 of its top 10, the frozen
text encoder's nearest item texts in 9. So search scores every item with
  - `semantic`: cosine of the text encoder's pooled output for the query and for the item's own text
    ("title. text"). The run's encoder is used as it is: pretrained and frozen in the shipped configs (the
    item features then come from the frozen-backbone cache); fine-tuned, its tuned outputs on both sides;
  - `lexical`: BM25 of the query words in the item text (exact terms: titles, brands, rare words);
  - `collaborative`: the item tower's vector of the query against the indexed item vectors,
and ranks by `semantic_z + lexical * bm25 / max(bm25) + collaborative * collaborative_z` (z: standardised
over the items for each query, so weights mean the same on every catalogue). The weights are chosen on
validation queries made from item metadata when the run is indexed (tandemrec/search_job.py) and stored in
RUN/search/weights.json with the measurement that chose them.

On MovieLens the metadata queries name words of the item text ("Western" is in every western's "Genres:
Western."), so BM25 is close to an oracle there and validation picks a large lexical weight: BM25 order,
ties and near-ties by meaning; on the synthetic shop ("lamps" vs the items' "lamp") it picks meaning alone.
See benchmarks/results/search.md.

Personalised search re-ranks the best `depth_for(k)` candidates of a query by
`query_z + personal * user_z`, both standardised over the candidates: the query decides what is shown,
the user's vector the order among what matches.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from tandemrec.data.content import item_texts
from tandemrec.io.atomic import atomic_path, atomic_write_json
from tandemrec.retrieval.catalogue import ItemCatalogue
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.lexical import LexicalIndex
from tandemrec.retrieval.recommendations import Recommendations

log = logging.getLogger(__name__)

SEARCH_DIR = "search"
FEATURES_FILE = "text_features.npy"
IDS_FILE = "text_feature_ids.json"
WEIGHTS_FILE = "weights.json"
DEPTH = 100  # personalised search re-orders max(DEPTH, DEPTH_FACTOR * k) candidates of the query
DEPTH_FACTOR = 5
ENCODE_BATCH = 256


@dataclasses.dataclass(frozen=True)
class SearchWeights:
    """Weights of the score mix (semantic fixed at 1); the defaults are used until a run is indexed."""

    lexical: float = 1.0
    collaborative: float = 0.0
    personal: float = 1.0

    def save(self, folder: Path, measured: dict | None = None) -> None:
        atomic_write_json(folder / WEIGHTS_FILE, {"weights": dataclasses.asdict(self), "validation": measured or {}})

    @classmethod
    def load(cls, folder: Path) -> "SearchWeights":
        path = folder / WEIGHTS_FILE
        return cls(**json.loads(path.read_text())["weights"]) if path.is_file() else cls()


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean over its std (a constant row: zeros), so scores of different kinds mix."""
    centred = scores - scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Unit rows (zero rows stay zero: an item without text matches nothing), for cosine by inner product."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0).astype(np.float32)


@dataclasses.dataclass
class QueryScores:
    """The three standardised score matrices (queries, items) of a batch; `collaborative` None when unused."""

    semantic: np.ndarray
    lexical: np.ndarray
    collaborative: np.ndarray | None

    def mix(self, weights: SearchWeights) -> np.ndarray:
        """The ranking score (queries, items) under `weights`."""
        total = self.semantic + weights.lexical * self.lexical
        if weights.collaborative and self.collaborative is not None:
            total = total + weights.collaborative * self.collaborative
        return total.astype(np.float32)


class TextSearch:
    """The catalogue's text side for search, row-aligned with the item index: each row's text-encoder
    features (unit length; zeros for an item without text) and its BM25 document."""

    def __init__(self, features: np.ndarray, texts: Sequence[str]) -> None:
        if len(features) != len(texts):
            raise RetrievalError(f"{len(features)} text feature rows but {len(texts)} item texts")
        self.features = normalise_rows(np.asarray(features, dtype=np.float32))
        self.texts = list(texts)
        self.lexical = LexicalIndex(self.texts)

    def __len__(self) -> int:
        return len(self.texts)

    def extended(self, features: np.ndarray, texts: Sequence[str]) -> "TextSearch":
        """A copy that also covers items added after indexing (rebuilding BM25: its statistics change)."""
        return TextSearch(np.concatenate([self.features, features]), [*self.texts, *texts])

    def scores(
        self, query_features: np.ndarray, queries: Sequence[str], collaborative: np.ndarray | None
    ) -> QueryScores:
        """Per-query standardised scores over all rows; `collaborative` (queries, rows) as raw inner products."""
        semantic = normalise_rows(query_features) @ self.features.T
        bm25 = self.lexical.scores(queries)
        top = bm25.max(axis=1, keepdims=True)
        lexical = np.divide(bm25, top, out=np.zeros_like(bm25), where=top > 0)
        return QueryScores(
            standardise(semantic), lexical, None if collaborative is None else standardise(collaborative)
        )


def save_text_features(folder: Path, item_ids: Sequence[str], features: np.ndarray) -> None:
    """RUN/search/: the text features of the indexed items (row r: index row r), written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / FEATURES_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(features, dtype=np.float32))
    atomic_write_json(folder / IDS_FILE, list(item_ids))


def load_text_features(folder: Path, item_ids: Sequence[str | None]) -> np.ndarray | None:
    """The stored features when they belong to these index rows (same ids, in order), else None."""
    if not (folder / FEATURES_FILE).is_file() or not (folder / IDS_FILE).is_file():
        return None
    stored = json.loads((folder / IDS_FILE).read_text())
    if list(item_ids[: len(stored)]) != stored:
        return None
    return np.load(folder / FEATURES_FILE)


class ProductSearch:
    """The search state a retriever holds: the run's text encoder for queries and the catalogue's
    `TextSearch`, kept row-aligned with the index as items are added (their rows are encoded on the
    first search after the add)."""

    def __init__(
        self,
        encoder: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        tokenize: Callable[[list[str], int], tuple[torch.Tensor, torch.Tensor]],
        max_length: int,
        lock: threading.Lock,
        features: np.ndarray | None,
        weights: SearchWeights,
    ) -> None:
        """`encoder(input_ids, attention_mask)`: the text backbone's pooled output; `lock`: the one that
        serialises model forwards; `features`: stored item text features (None: encode the catalogue)."""
        self.encoder = encoder
        self.tokenize = tokenize
        self.max_length = max_length
        self.lock = lock
        self.weights = weights
        self._stored = features
        self._text: TextSearch | None = None
        self._build_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), width) pooled text-encoder outputs."""
        out = []
        for start in range(0, len(texts), ENCODE_BATCH):
            ids, mask = self.tokenize(list(texts[start : start + ENCODE_BATCH]), self.max_length, longest=True)
            with self.lock, torch.no_grad():
                out.append(self.encoder(ids, mask).float().cpu().numpy())
        return np.concatenate(out)

    def covering(self, row_ids: Sequence[str | None], catalogue: pl.DataFrame) -> TextSearch:
        """The `TextSearch` of every index row (`row_ids`; None: removed), extended for new rows."""
        with self._build_lock:
            have = 0 if self._text is None else len(self._text)
            if have == len(row_ids):
                return self._text
            texts = dict(zip(catalogue["item_id"].to_list(), item_texts(catalogue)))
            new = [texts.get(i, "") if i is not None else "" for i in row_ids[have:]]
            if self._text is None and self._stored is not None:
                stored = self._stored[: len(row_ids)]
                rest = self._encode_items(new[len(stored) :])
                self._text = TextSearch(np.concatenate([stored, rest]), new)
            elif self._text is None:
                log.warning("no stored search features (RUN/search/): encoding %d item texts; `tandemrec index RUN` "
                            "stores them", len(new))
                self._text = TextSearch(self._encode_items(new), new)
            else:
                self._text = self._text.extended(self._encode_items(new), new)
            return self._text

    def _encode_items(self, texts: list[str]) -> np.ndarray:
        """Item text features; an item without text gets zeros (as the item tower masks it)."""
        features = np.zeros((len(texts), self._width()), dtype=np.float32)
        present = [i for i, t in enumerate(texts) if t.strip()]
        if present:
            features[present] = self.encode([texts[i] for i in present])
        return features

    def _width(self) -> int:
        return self._stored.shape[1] if self._stored is not None else self.encode(["x"]).shape[1]


def personalise(
    items: ItemCatalogue, candidates: Recommendations, user_vector: np.ndarray, personal: float, k: int
) -> Recommendations:
    """The k best of a query's candidates by `query_z + personal * user_z` over the candidates."""
    return personalise_each(items, candidates, user_vector, (personal,), k)[0]


def personalise_each(
    items: ItemCatalogue, candidates: Recommendations, user_vector: np.ndarray, weights: Sequence[float], k: int
) -> list[Recommendations]:
    """`personalise` for each personal weight, the candidates' vectors and z-scores computed once."""
    if not candidates.ids:
        return [candidates for _ in weights]
    _, vectors = items.vectors_of(candidates.ids)
    user_scores = vectors @ np.asarray(user_vector, dtype=np.float32)
    query = standardise(candidates.scores[None, :].astype(np.float64))[0]
    user = standardise(user_scores[None, :].astype(np.float64))[0]
    found = []
    for personal in weights:
        mixed = (query + personal * user).astype(np.float32)
        order = np.argsort(-mixed, kind="stable")[:k]
        found.append(Recommendations([candidates.ids[i] for i in order], mixed[order], candidates.source))
    return found


def depth_for(k: int, n_items: int) -> int:
    """How many query candidates personalised search re-orders."""
    return min(n_items, max(DEPTH, DEPTH_FACTOR * k))


def query_users(users: Sequence[str], n_queries: int) -> list[str]:
    """The user ids that personalise a batch of queries: one per query."""
    if isinstance(users, str) or len(users) != n_queries:
        raise RetrievalError(f"users must be a list of {n_queries} user ids, one per query")
    return list(users)
