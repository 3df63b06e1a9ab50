"""What the retrieval API returns: ranked ids with their scores, and where the query came from."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tandemrec.retrieval.errors import RetrievalError

# Where the ranking came from: the user tower on the user's stored features ("model") or on features given
# at call time ("features"), training-event counts for a user the run cannot embed ("popularity"), an
# item's stored vector ("item"), a text or image query through the item tower ("text", "image"), or query
# vectors given by the caller ("vector").
SOURCES = ("model", "features", "popularity", "item", "text", "image", "vector")


@dataclass(slots=True)  # slots: a one-query search makes one per call, and a slotted one is cheaper to make
class Recommendations:
    ids: list[str]
    scores: np.ndarray  # float32, best first; inner products of normalised vectors (popularity: event share)
    source: str = "model"

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self, items: pl.DataFrame | None = None, columns: Sequence[str] = ("title", "category")) -> pl.DataFrame:
        """rank, item_id, score; with `items` (a table with item_id, e.g. `retriever.catalogue`) also its
        `columns` that it has, joined in rank order, so that a person can read the result."""
        frame = pl.DataFrame(
            {"rank": np.arange(1, len(self.ids) + 1), "item_id": self.ids, "score": self.scores},
            schema={"rank": pl.Int64, "item_id": pl.String, "score": pl.Float32},
        )
        if items is None:
            return frame
        wanted = [c for c in columns if c in items.columns and c not in frame.columns]
        joined = frame.join(items.select("item_id", *wanted).unique("item_id"), on="item_id", how="left")
        return joined.sort("rank").select("rank", "item_id", *wanted, "score")


def results_frame(queries: Sequence[str], results: Sequence[Recommendations]) -> pl.DataFrame:
    """A batch as one long table: query, rank, item_id, score, source (a row per returned item)."""
    if len(queries) != len(results):
        raise RetrievalError(f"queries has {len(queries)} entries but results {len(results)}: one query per result")
    lengths = [len(r) for r in results]
    return pl.DataFrame(
        {
            "query": np.repeat(np.asarray(queries, dtype=object), lengths).tolist(),
            "rank": np.concatenate([np.arange(1, n + 1) for n in lengths]) if results else [],
            "item_id": [i for r in results for i in r.ids],
            "score": np.concatenate([r.scores for r in results]) if results else [],
            "source": np.repeat(np.asarray([r.source for r in results], dtype=object), lengths).tolist(),
        },
        schema={"query": pl.String, "rank": pl.Int64, "item_id": pl.String, "score": pl.Float32, "source": pl.String},
    )
