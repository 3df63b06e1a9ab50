"""Results as a person reads them on a terminal: rank, title, category and score (ids on request)."""
from __future__ import annotations

import polars as pl

from tandemrec.retrieval.recommendations import Recommendations

TITLE_WIDTH = 80


def results_table(results: Recommendations, items: pl.DataFrame, ids: bool = False) -> str:
    """The printed table of `results` with their titles and categories from `items` (the run's catalogue);
    `ids` adds the item_id column, for piping into other tools."""
    frame = results.to_frame(items=items)
    if not ids:
        frame = frame.drop("item_id")
    with pl.Config(
        tbl_rows=-1,
        fmt_str_lengths=TITLE_WIDTH,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
    ):
        return str(frame)
