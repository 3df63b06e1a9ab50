"""The embedding tables' first rows, made where the rows live: in each process's shards.

Tables are built on the meta device (no memory) and materialised by `DistributedModelParallel` as shards
only, so no process ever holds a whole table. Their rows are then drawn here, block by block, each block
of `ROW_BLOCK` rows from its own generator seeded by (seed, table, block): a row's values depend on the
seed and its table alone, never on which process holds it, so 1 and N processes start from the same model.
The draw is TorchRec's default init, uniform in +-sqrt(1 / rows). Rows carried over from another run
(`--init-from`) replace the drawn ones.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

ROW_BLOCK = 4096


@dataclass
class TableInit:
    """How to fill a table's shard: seeded rows, then the `carried` rows of another run.

    `carried`: state key -> (row numbers, their values), the rows `init_from` maps over from a source run."""

    seed: int
    carried: dict[str, tuple[np.ndarray, torch.Tensor]] = field(default_factory=dict)

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
            at, values = self.carried[key]
            mine = (at >= row_offset) & (at < row_offset + height)
            out[torch.from_numpy(at[mine] - row_offset)] = values[torch.from_numpy(mine)][:, col_offset : col_offset + width].to(out)
