"""Splits made elsewhere, used as they are: one data path per part, or a column naming each event's part.

A benchmark's published split, or a production team's own, must be reproduced exactly for numbers to be
comparable: no event may move between parts, and no protocol (min_train, shares, cut) may apply. Each
part's files are read with the configured reader (any of data/readers, the generic one with its mapping)
and validated on their own, so a refusal points at that part's file; the parts are then stacked with
their name in GIVEN_COLUMN, the column `SplitConfig.part_of` reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.readers import read
from tandemrec.data.split import PARTS, SplitConfig
from tandemrec.data.validate import validate


def read_given(source: str, split: SplitConfig, mapping: dict[str, Any] | None = None) -> Dataset:
    """One dataset of the parts in `split.files`, each event tagged with its part in `split.column`;
    items and users are the union of the parts' (the first part's row of an item wins)."""
    parts = {part: _read_part(source, Path(path), mapping) for part, path in (split.files or {}).items()}
    first = parts["train"]
    return Dataset(
        interactions=pl.concat(
            [d.interactions.with_columns(pl.lit(part).alias(split.column)) for part, d in parts.items()],
            how="diagonal_relaxed",
        ),
        items=_union([d.items for d in parts.values()], "item_id"),
        users=None if first.users is None else _union([d.users for d in parts.values() if d.users is not None], "user_id"),
        root=first.root,
        name=first.name,
        image_roots=first.image_roots,
    )


def _read_part(source: str, path: Path, mapping: dict[str, Any] | None) -> Dataset:
    if not path.exists():
        raise DataError(f"data.split.files: '{path}' does not exist")
    if source == "dataset":
        dataset = Dataset.load(path)
    else:
        dataset = read(source, path, **({"mapping": mapping} if source == "generic" else {}))
    return validate(dataset)[0].collect()


def _union(tables: list[pl.DataFrame], key: str) -> pl.DataFrame:
    return pl.concat(tables, how="diagonal_relaxed").unique(key, keep="first", maintain_order=True)


def check_given(interactions: pl.DataFrame | pl.LazyFrame, column: str) -> None:
    """A DataError unless every event names its part: the column exists and holds only PARTS."""
    if column not in interactions.collect_schema().names():
        raise DataError(f"data.split.column: the interactions have no column {column!r}")
    values = interactions.lazy().select(pl.col(column).cast(pl.String).unique()).collect().to_series().to_list()
    wrong = sorted(str(v) for v in values if v not in PARTS)
    if wrong:
        raise DataError(f"data.split.column {column!r}: values must be {', '.join(PARTS)}; found {wrong[:5]}")
