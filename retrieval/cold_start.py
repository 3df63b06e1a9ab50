"""Cold-start evaluation: exact rankings over part of the catalogue, a content-kNN and a random reference,
and how often cold items are shown compared with how often they are wanted.

An item is cold when it has no training events: held out on purpose (`data.split.cold_items`) or a new
arrival that only appears in the evaluated period. Its id embedding was never trained, so the model can
only reach it through its content; these numbers say whether it does. Everything here is plain numpy
over index rows (row r is item vocabulary index r + 1).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tandemrec.progress import blocks

# Score-matrix cells computed at once (16 MiB of float32): bounds memory whatever the catalogue size.
_CHUNK_CELLS = 1 << 22


def cold_rows(train_counts: np.ndarray) -> np.ndarray:
    """Index rows with no training events, sorted: the held-out items and the new arrivals alike."""
    return np.flatnonzero(np.asarray(train_counts) == 0)


def exact_topk(
    queries: np.ndarray,
    vectors: np.ndarray,
    rows: np.ndarray,
    exclude: Sequence[np.ndarray],
    k: int,
    progress: bool = False,
    desc: str = "ranking",
) -> np.ndarray:
    """Top-k index rows among `rows` per query by inner product, exactly, best first.

    `vectors[j]` is the vector of row `rows[j]` (`rows` sorted ascending), so the ranking can be limited
    to a shelf such as the cold items. `exclude[i]` holds rows never returned for query i (rows outside
    `rows` are ignored). Equal scores are ordered by row, except at the k-th place where the tie is broken
    arbitrarily. Padded with -1 when fewer than k rows are eligible. `progress` shows a bar under `desc`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    top = np.full((len(queries), k), -1, dtype=np.int64)
    if rows.size == 0:
        return top
    step = max(1, _CHUNK_CELLS // rows.size)
    for start, stop in blocks(len(queries), step, progress, desc):
        scores = queries[start:stop] @ vectors.T
        _exclude(scores, rows, exclude[start:stop])
        top[start:stop, : min(k, rows.size)] = _best(scores, rows, k)
    return top


def _exclude(scores: np.ndarray, rows: np.ndarray, exclude: Sequence[np.ndarray]) -> None:
    """Set the excluded rows' scores to -inf, in place, for all queries of the chunk at once."""
    excluded = np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude])
    users = np.repeat(np.arange(len(exclude)), [len(e) for e in exclude])
    columns = np.minimum(np.searchsorted(rows, excluded), rows.size - 1)
    present = rows[columns] == excluded
    scores[users[present], columns[present]] = -np.inf


def _best(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The min(k, len(rows)) best rows of each score row, best first (-1 for excluded ones)."""
    kept = min(k, rows.size)
    columns = np.argpartition(-scores, kept - 1, axis=1)[:, :kept]
    best = np.take_along_axis(scores, columns, axis=1)
    order = np.lexsort((columns, -best), axis=1)
    columns = np.take_along_axis(columns, order, axis=1)
    best = np.take_along_axis(best, order, axis=1)
    return np.where(np.isfinite(best), rows[columns], -1)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows (an item without text, an empty history) stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def content_profiles(features: np.ndarray, history: Sequence[np.ndarray]) -> np.ndarray:
    """Per user, the mean of the unit text features of the history's rows, itself made unit length, so
    that every item counts once whatever its norm and the profile's dot product is a cosine."""
    unit = unit_rows(features)
    lengths = np.array([len(h) for h in history], dtype=np.int64)
    sums = np.zeros((len(history), unit.shape[1]), dtype=np.float32)
    filled = lengths > 0
    if filled.any():
        # Histories lie back to back in one array: one reduceat sums each (non-empty) user's rows.
        starts = np.cumsum(lengths) - lengths
        sums[filled] = np.add.reduceat(unit[np.concatenate(history).astype(np.int64)], starts[filled])
    return unit_rows(sums)


def content_knn_topk(
    features: np.ndarray,
    history: Sequence[np.ndarray],
    k: int,
    rows: np.ndarray | None = None,
    fallback: np.ndarray | None = None,
    progress: bool = False,
    desc: str = "content knn",
) -> np.ndarray:
    """The content-kNN reference: items ranked by cosine, in the text encoder's space, to the user's history.

    `features[r]` is the text-backbone output of index row r; `history[i]` the rows user i had an event with
    before the query time, which are also left out of its ranking (as seen items are for every system).
    Only `rows` are ranked (default: the whole catalogue). A user with no history has no content-kNN
    ranking: it gets its `fallback` row (the popularity ranking, over the full catalogue) when given;
    otherwise (the new-arrivals shelf, where every item ties in popularity at zero training events) its
    scores all tie and its top-k is arbitrary. `progress` shows a bar under `desc`.
    """
    unit = unit_rows(features)
    rows = np.arange(len(unit)) if rows is None else np.asarray(rows, dtype=np.int64)
    top = exact_topk(content_profiles(unit, history), unit[rows], rows, history, k, progress, desc)
    if fallback is not None:
        empty = np.array([len(h) == 0 for h in history], dtype=bool)
        top[empty] = fallback[empty, :k]
    return top


def random_ranking_metrics(
    n_targets: np.ndarray, n_eligible: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """Exact expected recall, precision and nDCG at each k of a uniformly random ranking, means over users.

    User i has `n_targets[i]` targets among its `n_eligible[i]` rankable items. Every rank holds a target
    with probability T/N, so the top min(k, N) hold T min(k, N)/N targets on average: recall min(k, N)/N,
    and the expected DCG is (T/N) times the sum of the first min(k, N) discounts, normalised by the ideal
    DCG as `ranking_metrics` does (the ideal is fixed per user, so this is the expected nDCG). Analytic: a
    reference without sampling noise.
    """
    targets = np.asarray(n_targets, dtype=np.int64)
    eligible = np.asarray(n_eligible, dtype=np.int64)
    cumulative = np.cumsum(1.0 / np.log2(np.arange(2, max(ks) + 2)))
    result: dict[str, float] = {}
    for k in map(int, ks):
        shown = np.minimum(k, eligible)
        expected_hits = targets * shown / eligible
        ideal = cumulative[np.minimum(targets, k) - 1]
        result[f"recall@{k}"] = float((expected_hits / targets).mean())
        result[f"precision@{k}"] = float((expected_hits / k).mean())
        result[f"ndcg@{k}"] = float((targets / eligible * cumulative[shown - 1] / ideal).mean())
    return result


def cold_exposure(
    tops: Mapping[str, np.ndarray], targets: Sequence[np.ndarray], cold: np.ndarray, k: int = 10
) -> dict:
    """Per system, the share of cold items in the top-k slots over the share of cold items among the
    targets: 1.0 means cold items are shown as often as they are wanted, 0 that they are never shown.

    `tops[name]` are the evaluated users' full-catalogue rankings (-1 padding is no slot), `targets` their
    unseen targets; at least one target must be cold. Both shares are returned too.
    """
    wanted = float(np.isin(np.concatenate(targets), cold).mean())
    shown = {}
    for name, top in tops.items():
        slots = top[:, :k]
        slots = slots[slots >= 0]
        shown[name] = float(np.isin(slots, cold).mean()) if slots.size else 0.0
    return {
        **{name: share / wanted for name, share in shown.items()},
        "cold_share_of_targets": wanted,
        f"cold_share_of_top{k}": shown,
    }
