"""Progress of a loop over rows in blocks: the bar every block-wise job shows (rate and time left)."""
from __future__ import annotations

from collections.abc import Iterator

from tqdm import tqdm


def blocks(
    total: int, size: int, progress: bool = False, desc: str = "rows", unit: str = "user"
) -> Iterator[tuple[int, int]]:
    """(start, stop) of each block of `size` rows over range(total), in order.

    A block-wise pass over every user can take minutes, so `progress` shows a bar under `desc` (tqdm's
    "desc:  50%|" line, as `towers.inference.embed` shows) counting `unit`s, with their rate and the time left."""
    with tqdm(total=total, desc=desc, unit=unit, disable=not progress) as bar:
        for start in range(0, total, size):
            stop = min(start + size, total)
            yield start, stop
            bar.update(stop - start)
