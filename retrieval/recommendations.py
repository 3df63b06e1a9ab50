"""What the retrieval API returns: ranked ids with their scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass
class Recommendations:
    ids: list[str]
    scores: np.ndarray  # float32, best first; inner products of normalised vectors

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"rank": np.arange(1, len(self.ids) + 1), "item_id": self.ids, "score": self.scores},
            schema={"rank": pl.Int64, "item_id": pl.String, "score": pl.Float32},
        )
