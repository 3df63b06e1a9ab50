"""What the retrieval API returns: ranked ids with their scores, and where the query came from."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

# Where the ranking came from: the user tower on the user's stored features ("model") or on features given
# at call time ("features"), training-event counts for a user the run cannot embed ("popularity"), an
# item's stored vector ("item"), a text or image query through the item tower ("text", "image"), or query
# vectors given by the caller ("vector").
SOURCES = ("model", "features", "popularity", "item", "text", "image", "vector")


@dataclass
class Recommendations:
    ids: list[str]
    scores: np.ndarray  # float32, best first; inner products of normalised vectors (popularity: event share)
    source: str = "model"

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"rank": np.arange(1, len(self.ids) + 1), "item_id": self.ids, "score": self.scores},
            schema={"rank": pl.Int64, "item_id": pl.String, "score": pl.Float32},
        )


def results_frame(queries: Sequence[str], results: Sequence[Recommendations]) -> pl.DataFrame:
    """A batch as one long table: query, rank, item_id, score, source (a row per returned item)."""
    if len(queries) != len(results):
        raise ValueError(f"{len(queries)} queries but {len(results)} results")
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
