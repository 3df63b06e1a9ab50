"""The embedding tables' first rows, made where the rows live: in each process's shards.

Tables are built on the meta device (no memory) and materialised by `DistributedModelParallel` as shards
only, so no process ever holds a whole table. Their rows are then drawn here, block by block, each block
of `ROW_BLOCK` rows from its own generator seeded by (seed, table, block): a row's values depend on the
seed and its table alone, never on which process holds it, so 1 and N processes start from the same model.
The draw is TorchRec's default init, uniform in +-sqrt(1 / rows). Rows carried over from another run
(`--init-from`) replace the drawn ones. The jobs after training fill their shards from the saved model
instead (`SavedTables`), again a block of rows at a time.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from tandemrec.towers.errors import EncoderLoadError

ROW_BLOCK = 4096


@dataclass(frozen=True)
class CarriedRows:
    """Rows of another run's table to copy into this one's (`init_from`): `rows[i]` here takes row
    `source_rows[i]` of tensor `key` in the safetensors file `source`, read a block of rows at a time, so
    that filling a shard never loads the source table whole."""

    rows: np.ndarray
    source_rows: np.ndarray
    source: Path
    key: str

    def copy_into(self, out: torch.Tensor, row_offset: int, col_offset: int) -> None:
        """Write the carried rows that fall in `out` (rows `row_offset..`, columns `col_offset..`)."""
        mine = np.flatnonzero((self.rows >= row_offset) & (self.rows < row_offset + len(out)))
        if not len(mine):
            return
        order = mine[np.argsort(self.source_rows[mine], kind="stable")]
        wanted = self.source_rows[order]
        for start in range(wanted[0] - wanted[0] % ROW_BLOCK, wanted[-1] + 1, ROW_BLOCK):
            lo, hi = np.searchsorted(wanted, [start, start + ROW_BLOCK])
            if lo < hi:
                block = read_rows(self.source, self.key, start, start + ROW_BLOCK)
                picked = block[torch.from_numpy(wanted[lo:hi] - start)][:, col_offset : col_offset + out.shape[1]]
                out[torch.from_numpy(self.rows[order[lo:hi]] - row_offset)] = picked.to(out)


def read_rows(path: Path, key: str, start: int, stop: int, columns: slice = slice(None)) -> torch.Tensor:
    """Rows `start..stop` (and `columns`) of tensor `key` in a safetensors file, the file mapped for this
    read only: pages read through a mapping stay in the process's resident memory until it is closed, so a
    mapping kept open over a shard's blocks would hold the shard twice."""
    with safe_open(str(path), "pt") as weights:
        return weights.get_slice(key)[start:stop, columns]


@dataclass
class TableInit:
    """How to fill a table's shard: seeded rows, then the `carried` rows of another run."""

    seed: int
    carried: dict[str, CarriedRows] = field(default_factory=dict)  # by state key

    @torch.no_grad()
    def fill(self, key: str, shape: tuple[int, int], out: torch.Tensor, row_offset: int = 0, col_offset: int = 0) -> None:
        """Write into `out` its part of table `key` (whole `shape`): rows `row_offset..`, columns `col_offset..`."""
        rows, dim = shape
        height, width = out.shape
        bound = math.sqrt(1.0 / rows)
        name = zlib.crc32(key.encode())
        for block in range(row_offset // ROW_BLOCK, -(-(row_offset + height) // ROW_BLOCK)):
            start = block * ROW_BLOCK
            seed = int(np.random.SeedSequence([self.seed, name, block]).generate_state(1)[0])
            drawn = torch.empty(min(ROW_BLOCK, rows - start), dim).uniform_(-bound, bound, generator=torch.Generator().manual_seed(seed))
            lo, hi = max(start, row_offset), min(start + len(drawn), row_offset + height)
            out[lo - row_offset : hi - row_offset] = drawn[lo - start : hi - start, col_offset : col_offset + width]
        if key in self.carried:
            self.carried[key].copy_into(out, row_offset, col_offset)


@dataclass(frozen=True)
class SavedTables:
    """How the jobs after training fill a table's shard: its rows and columns read from the saved model's
    safetensors file `path`, `ROW_BLOCK` rows at a time, so that no process ever reads a whole table."""

    path: Path

    @torch.no_grad()
    def fill(self, key: str, shape: tuple[int, int], out: torch.Tensor, row_offset: int = 0, col_offset: int = 0) -> None:
        """Write into `out` its part of table `key` (whole `shape`): rows `row_offset..`, columns `col_offset..`."""
        with safe_open(str(self.path), "pt") as weights:
            if key not in weights.keys():
                raise EncoderLoadError(f"model weights '{self.path}' have no table {key}")
            saved = weights.get_slice(key).get_shape()
        if tuple(saved) != tuple(shape):
            raise EncoderLoadError(f"table {key} in '{self.path}' is {saved}, the model's config says {list(shape)}")
        stop, columns = row_offset + out.shape[0], slice(col_offset, col_offset + out.shape[1])
        for start in range(row_offset, stop, ROW_BLOCK):
            end = min(start + ROW_BLOCK, stop)
            out[start - row_offset : end - row_offset] = read_rows(self.path, key, start, end, columns).to(out)
