"""Measuring product search with queries made from item metadata, next to its two references.

A shop has no labelled search log, but its metadata says what a query should find: every category (and
every genre a MovieLens text lists) becomes a query such as "Western movies" whose relevant items carry
that label, and title words become keyword queries whose relevant items have the word in their title.
The queries split into a validation half (to choose the score weights) and a test half (to report), by a
hash of the query text, so the split never changes with the order of the catalogue.

Personalised search is measured on held-out events: the target item's category is the query, the target
item the one relevant item, and the user's vector is taken just before the event.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence

import numpy as np
import polars as pl
from bm25s.stopwords import STOPWORDS_EN

from tandemrec.data.examples import EvalQueries
from tandemrec.retrieval.metrics import ranking_metrics
from tandemrec.retrieval.retriever import Retriever
from tandemrec.retrieval.search import SearchWeights, depth_for, personalise_each

K = 10
GENRES = re.compile(r"Genres: ([^.]*)\.")  # how the MovieLens reader lists genres in the item text
MIN_LABEL_ITEMS = 5  # a category with fewer items makes no query (precision@10 could not reach 1)
TITLE_QUERIES = 100
PAIR_QUERIES = 100
TITLE_WORD_MAX_ITEMS = 20  # a title word in more titles than this is too common to be a keyword query
LEXICAL_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0)  # the large ones: BM25 order, ties by meaning
COLLABORATIVE_GRID = (0.0, 0.25, 0.5, 1.0)
PERSONAL_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PERSONAL_USERS = 1000  # held-out events measured for personalised search (the first users, in query order)
KEEP_PRECISION = 0.95  # personalising may cost at most 5% of the query's precision@10 (chosen on validation)
METRICS = ("precision@10", "ndcg@10", "recall@10")


@dataclasses.dataclass(frozen=True)
class MetadataQuery:
    text: str
    kind: str  # "category" or "title"
    relevant: np.ndarray  # index rows


def item_labels(catalogue: pl.DataFrame) -> dict[str, set[str]]:
    """item id -> its category and the genres its text lists."""
    text = catalogue["text"].fill_null("").to_list() if "text" in catalogue.columns else [""] * catalogue.height
    category = catalogue["category"].to_list() if "category" in catalogue.columns else [None] * catalogue.height
    labels = {}
    for item, cat, txt in zip(catalogue["item_id"].to_list(), category, text):
        found = {g.strip() for m in GENRES.findall(txt) for g in m.split(",") if g.strip()}
        labels[item] = found | ({cat} if cat else set())
    return labels


def category_query(label: str, noun: str) -> str:
    return f"{label} {noun}".strip()


def metadata_queries(catalogue: pl.DataFrame, row_ids: Sequence[str | None], noun: str) -> list[MetadataQuery]:
    """Category/genre queries ("<label> <noun>"), queries for two labels at once ("<a> <b> <noun>": items
    with both; where items have several, as MovieLens genres) and title-keyword queries over the index rows
    `row_ids`."""
    labels = item_labels(catalogue)
    rows_of: dict[str, set[int]] = {}
    for row, item in enumerate(row_ids):
        for label in labels.get(item, ()):
            rows_of.setdefault(label, set()).add(row)
    common = sorted(label for label, rows in rows_of.items() if len(rows) >= MIN_LABEL_ITEMS)
    queries = [MetadataQuery(category_query(label, noun), "category", np.array(sorted(rows_of[label]))) for label in common]
    pairs = [(a, b) for i, a in enumerate(common) for b in common[i + 1 :]]
    both = {pair: sorted(rows_of[pair[0]] & rows_of[pair[1]]) for pair in pairs}
    usable = sorted((p for p in pairs if len(both[p]) >= MIN_LABEL_ITEMS), key=lambda p: _hash(" ".join(p)))
    queries += [
        MetadataQuery(category_query(f"{a} {b}", noun), "category pair", np.array(both[(a, b)]))
        for a, b in usable[:PAIR_QUERIES]
    ]
    return queries + title_queries(catalogue, row_ids)


def title_queries(catalogue: pl.DataFrame, row_ids: Sequence[str | None]) -> list[MetadataQuery]:
    """Keyword queries: title words (4+ letters, no stopword) found in 1..TITLE_WORD_MAX_ITEMS titles, a
    hash-ordered sample of TITLE_QUERIES of them."""
    titles = dict(zip(catalogue["item_id"].to_list(), catalogue["title"].fill_null("").to_list()))
    rows_of: dict[str, list[int]] = {}
    for row, item in enumerate(row_ids):
        for word in set(re.findall(r"[a-z]{4,}", titles.get(item, "").lower())) - set(STOPWORDS_EN):
            rows_of.setdefault(word, []).append(row)
    words = sorted((w for w, rows in rows_of.items() if len(rows) <= TITLE_WORD_MAX_ITEMS), key=_hash)
    return [MetadataQuery(w, "title", np.array(rows_of[w])) for w in words[:TITLE_QUERIES]]


def split_queries(queries: Sequence[MetadataQuery]) -> tuple[list[MetadataQuery], list[MetadataQuery]]:
    """(validation, test) halves, by the parity of a hash of each query's text."""
    valid = [q for q in queries if _hash(q.text) % 2 == 0]
    return valid, [q for q in queries if _hash(q.text) % 2 == 1]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big")


def metrics_by_kind(queries: Sequence[MetadataQuery], top: np.ndarray) -> dict[str, dict[str, float]]:
    """precision/NDCG/recall@10 per query kind and their mean over kinds ("all"), from top rows (m, K)."""
    result = {}
    for kind in sorted({q.kind for q in queries}):
        picked = [i for i, q in enumerate(queries) if q.kind == kind]
        measured = ranking_metrics(top[picked], [queries[i].relevant for i in picked], (K,))
        result[kind] = {m: measured[m] for m in METRICS} | {"queries": len(picked)}
    result["all"] = {m: float(np.mean([result[kind][m] for kind in result])) for m in METRICS}
    return result


def search_top(retriever: Retriever, texts: Sequence[str]) -> np.ndarray:
    """Top-K index rows of each text query through `Retriever.search_batch` (its current weights)."""
    found = retriever.search_batch(list(texts), K)
    return np.stack([_rows(retriever, r.ids) for r in found])


def _rows(retriever: Retriever, ids: Sequence[str]) -> np.ndarray:
    rows = np.full(K, -1, dtype=np.int64)
    rows[: len(ids)] = retriever.items.positions(list(ids))
    return rows


def reference_tops(retriever: Retriever, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Top-K rows of the two references: the text encoder's nearest item texts alone ("text_encoder_knn")
    and BM25 over item text alone ("bm25"), removed items left out."""
    search = retriever.product_search
    scores = search.covering(retriever.index.ids, retriever.catalogue).scores(search.encode(texts), texts, None)
    dead = ~retriever.index.live_mask()
    tops = {}
    for name, matrix in (("text_encoder_knn", scores.semantic), ("bm25", scores.lexical)):
        matrix = matrix.copy()
        matrix[:, dead] = -np.inf
        tops[name] = np.argsort(-matrix, axis=1, kind="stable")[:, :K]
    return tops


def measure(retriever: Retriever, queries: Sequence[MetadataQuery]) -> dict[str, dict]:
    """Metrics of search (current weights) and of both references on `queries`."""
    texts = [q.text for q in queries]
    tops = {"search": search_top(retriever, texts), **reference_tops(retriever, texts)}
    return {name: metrics_by_kind(queries, top) for name, top in tops.items()}


def choose_weights(retriever: Retriever, queries: Sequence[MetadataQuery]) -> tuple[SearchWeights, dict]:
    """The (lexical, collaborative) weights with the best mean NDCG@10 over query kinds on `queries`
    (validation ones), first in grid order on ties; also each grid point's score."""
    start = retriever.product_search.weights
    scores = retriever.text_scores([q.text for q in queries])  # encoded once, mixed per grid point
    grid = {}
    for lexical in LEXICAL_GRID:
        for collaborative in COLLABORATIVE_GRID:
            weights = dataclasses.replace(start, lexical=lexical, collaborative=collaborative)
            ranked = [retriever.items.rank(row, K, source="text").ids for row in scores.mix(weights)]
            top = np.stack([_rows(retriever, ids) for ids in ranked])
            ndcg = metrics_by_kind(queries, top)["all"]["ndcg@10"]
            grid[f"lexical={lexical},collaborative={collaborative}"] = (weights, ndcg)
    best = max(grid.values(), key=lambda pair: pair[1])[0]
    return best, {name: score for name, (_, score) in grid.items()}


@dataclasses.dataclass
class PersonalEvents:
    """Held-out events as personalised queries: the target item's category as the query text, the user's
    vector just before the event, the target row, and the rows of the query's category (its relevance)."""

    texts: list[str]
    vectors: np.ndarray
    targets: np.ndarray
    relevant: list[np.ndarray]


def personal_events(retriever: Retriever, events: EvalQueries, noun: str, shared: bool = False) -> PersonalEvents | None:
    """The first target of each of the first PERSONAL_USERS users whose target item has a category; None
    when none has. `shared`: the processes of a job's group call this together and embed the users
    together (`Retriever.embed_users`)."""
    catalogue = retriever.catalogue
    if "category" not in catalogue.columns:
        return None
    category_of = dict(zip(catalogue["item_id"].to_list(), catalogue["category"].to_list()))
    labels = item_labels(catalogue)
    rows_of: dict[str, list[int]] = {}
    for row, item in enumerate(retriever.index.ids):
        for label in labels.get(item, ()):
            rows_of.setdefault(label, []).append(row)
    picked, categories = [], []
    for i in range(min(len(events), PERSONAL_USERS)):
        category = category_of.get(retriever.vocabs.items.ids[int(events.targets[i][0])])
        if category:
            picked.append(i)
            categories.append(category)
    if not picked:
        return None
    picked = np.array(picked)
    return PersonalEvents(
        [category_query(c, noun) for c in categories],
        retriever.embed_users(events.users[picked], events.times[picked], shared=shared),
        np.array([int(events.targets[i][0]) - 1 for i in picked]),
        [np.array(rows_of[c]) for c in categories],
    )


def personal_metrics(
    retriever: Retriever, events: PersonalEvents, weights: Sequence[float]
) -> dict[float, dict[str, float]]:
    """Per personal weight (0: the query's own ranking), from one candidate list per query: NDCG@10 of the
    held-out item, and precision@10 of the query's category (does the page still show what was asked?),
    averaged per distinct query first, so that a rare category counts as much as a common one."""
    candidates = retriever.search_batch(events.texts, depth_for(K, len(retriever.items)))
    found = [personalise_each(retriever.items, c, v, weights, K) for c, v in zip(candidates, events.vectors)]
    relevant = [set(rows.tolist()) for rows in events.relevant]
    targets = [np.array([t]) for t in events.targets]
    result = {}
    for i, w in enumerate(weights):
        top = np.stack([_rows(retriever, each[i].ids) for each in found])
        result[w] = {
            "ndcg@10": ranking_metrics(top, targets, (K,))["ndcg@10"],
            "precision@10": _mean_per_text(
                events.texts, np.array([sum(r in rel for r in row.tolist()) / K for row, rel in zip(top, relevant)])
            ),
        }
    return result


def _mean_per_text(texts: Sequence[str], values: np.ndarray) -> float:
    """The mean over distinct texts of the mean value of each text's rows."""
    _, inverse = np.unique(np.asarray(texts), return_inverse=True)
    return float((np.bincount(inverse, values) / np.bincount(inverse)).mean())


def choose_personal(retriever: Retriever, events: PersonalEvents) -> tuple[float, dict]:
    """The personal weight with the best NDCG@10 of the held-out item on (validation) events among those
    that keep the query's precision@10 within KEEP_PRECISION of the unpersonalised ranking's."""
    measured = personal_metrics(retriever, events, PERSONAL_GRID)
    floor = KEEP_PRECISION * measured[0.0]["precision@10"]
    allowed = [w for w in PERSONAL_GRID if measured[w]["precision@10"] >= floor]
    best = max(allowed, key=lambda w: measured[w]["ndcg@10"])
    return best, {str(w): m for w, m in measured.items()}


def measure_personal(retriever: Retriever, events: PersonalEvents, weight: float) -> dict[str, float]:
    """The held-out item's NDCG@10 and the query's precision@10: the query alone vs re-ordered by the
    user's vector."""
    measured = personal_metrics(retriever, events, (0.0, weight))
    plain, personal = measured[0.0], measured[weight]
    return {
        "ndcg@10_query_only": plain["ndcg@10"],
        "ndcg@10_personalised": personal["ndcg@10"],
        "ndcg_ratio": personal["ndcg@10"] / plain["ndcg@10"] if plain["ndcg@10"] > 0 else None,
        "precision@10_query_only": plain["precision@10"],
        "precision@10_personalised": personal["precision@10"],
        "personal_weight": weight,
        "events": len(events.targets),
    }
