"""String ids to contiguous embedding rows, the same on every process and every run.

Index 0 is reserved for ids never seen at build time, so a model can embed a new user or item without
crashing; building sorts the ids, so two processes (or a training run and the service) agree on the rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.io.atomic import atomic_write_json

UNKNOWN_ID = "<unk>"
_FORMAT_VERSION = 1


class Vocabulary:
    """An immutable mapping id <-> index with index 0 for unknown ids."""

    UNKNOWN = 0

    def __init__(self, ids: Sequence[str], name: str) -> None:
        """`ids` are the known ids in index order 1..n; `build` gives them sorted, the way to make one."""
        distinct = set(ids)
        if len(distinct) != len(ids):
            raise DataError(f"vocabulary {name!r}: duplicate ids, expected each id once")
        if UNKNOWN_ID in distinct:
            raise DataError(f"vocabulary {name!r}: the id {UNKNOWN_ID!r} is reserved for unknown ids")
        self._name = name
        self._ids = [UNKNOWN_ID, *ids]
        self._keys = pl.Series(list(ids), dtype=pl.String)
        self._indices = pl.Series(np.arange(1, len(self._ids), dtype=np.int64))
        self._positions = {id_: index for index, id_ in enumerate(self._ids) if index}

    @classmethod
    def build(cls, ids: Iterable[str], name: str) -> Vocabulary:
        """Sorted unique ids get 1..n. Nulls and the literal "<unk>" are refused: they would be ambiguous."""
        series = pl.Series(ids if isinstance(ids, (pl.Series, np.ndarray)) else list(ids), dtype=pl.String)
        if series.null_count():
            raise DataError(f"vocabulary {name!r}: {series.null_count()} null ids, expected strings")
        return cls(series.unique().sort().to_list(), name)

    @property
    def name(self) -> str:
        return self._name

    @property
    def ids(self) -> list[str]:
        """Index i -> id; ids[0] is "<unk>"."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._positions

    def __repr__(self) -> str:
        return f"Vocabulary({self._name!r}, {len(self._ids) - 1} ids)"

    def encode(self, ids: Sequence[str] | pl.Series | np.ndarray, unknown: str = "error") -> np.ndarray:
        """Indices (int64) of `ids`. An unknown id (or a null) raises DataError with unknown="error" and
        maps to 0 with unknown="zero"."""
        if unknown not in ("error", "zero"):
            raise ValueError(f'unknown must be "error" or "zero", got {unknown!r}')
        series = (ids if isinstance(ids, pl.Series) else pl.Series(ids)).cast(pl.String)
        indices = series.replace_strict(self._keys, self._indices, default=0, return_dtype=pl.Int64)
        if unknown == "error":
            missing = series.filter(indices == self.UNKNOWN)
            if len(missing):
                examples = missing.unique(maintain_order=True).head(5).to_list()
                raise DataError(
                    f"vocabulary {self._name!r}: {len(missing)} of {len(series)} ids are unknown, "
                    f"e.g. {', '.join(map(repr, examples))}"
                )
        return indices.to_numpy().astype(np.int64, copy=False)

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """Indices (int64) of `ids` by dictionary lookup, unknown ids 0: `encode(ids, unknown="zero")` for the
        few ids of a served request, where building a polars series costs a millisecond."""
        return np.fromiter((self._positions.get(i, self.UNKNOWN) for i in ids), dtype=np.int64, count=len(ids))

    def expr(self, column: str) -> pl.Expr:
        """The indices of a column of ids as a polars expression (unknown ids and nulls: 0), for plans
        over tables too large to encode in memory."""
        return pl.col(column).replace_strict(self._keys, self._indices, default=0, return_dtype=pl.Int64)

    def decode(self, indices: np.ndarray | Sequence[int]) -> list[str]:
        """Ids of `indices`; 0 decodes to "<unk>", an index out of range raises DataError."""
        array = np.asarray(indices, dtype=np.int64).ravel()
        bad = array[(array < 0) | (array >= len(self._ids))]
        if bad.size:
            raise DataError(
                f"vocabulary {self._name!r}: indices {bad[:5].tolist()} out of range 0..{len(self._ids) - 1}"
            )
        return [self._ids[i] for i in array.tolist()]

    def save(self, path: str | Path) -> None:
        """Write JSON atomically (temporary file, then rename)."""
        atomic_write_json(path, {"format_version": _FORMAT_VERSION, "name": self._name, "ids": self._ids[1:]})

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: unreadable vocabulary ({error})") from error
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("name"), str)
            or not isinstance(payload.get("ids"), list)
            or not all(isinstance(id_, str) for id_ in payload["ids"])
        ):
            raise DataError(f"{path}: expected a JSON object with 'name' (a string) and 'ids' (strings)")
        version = payload.get("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise DataError(f"{path}: format_version {version!r}, expected {_FORMAT_VERSION}")
        try:
            return cls(payload["ids"], payload["name"])
        except DataError as error:
            raise DataError(f"{path}: {error}") from error
