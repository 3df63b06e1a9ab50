"""The classical baselines a recommender must beat: EASE and cosine item-kNN, each tuned on validation.

Both learn an item-to-item weight matrix W from the binary user x item matrix of training events and
score a user as the sum of W's rows over the user's history, so one top-k routine (`baseline_topk`)
ranks for both, with the user's seen items excluded as for every system (retrieval/evaluate.py). Rows
are index rows (item vocabulary index - 1). Plain numpy/scipy: W is dense over the items with training
events only (items without any have no row or column in either model and score 0).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from tandemrec.progress import blocks
from tandemrec.retrieval.cold_start import exact_topk
from tandemrec.retrieval.metrics import ranking_metrics

# Candidate settings, chosen per split on validation. EASE's L2 weight grows with the data (its best
# value on MovieLens 100K is a few hundred); item-kNN's neighbourhood ends at "all items" (0).
EASE_LAMBDAS = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
KNN_SIZES = (10, 20, 50, 100, 200, 0)
TUNED_ON = "ndcg"  # at the k tuned for
_USER_CHUNK = 1024  # users scored at once: bounds the dense history chunk whatever the user count


@dataclass(frozen=True)
class ItemWeights:
    """An item-to-item model: `weights[i, j]` is how much a history item `rows[i]` votes for `rows[j]`."""

    rows: np.ndarray  # sorted index rows the model covers
    weights: np.ndarray  # (len(rows), len(rows)) float32


def interaction_matrix(users: np.ndarray, rows: np.ndarray) -> sp.csr_matrix:
    """Binary (user x item row) matrix of events: an item seen twice by a user counts once, as the
    metrics count a target once."""
    users, rows = np.asarray(users, np.int64), np.asarray(rows, np.int64)
    shape = (int(users.max(initial=-1)) + 1, int(rows.max(initial=-1)) + 1)
    matrix = sp.csr_matrix((np.ones(len(users), np.float32), (users, rows)), shape=shape)
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def _active(matrix: sp.csr_matrix) -> tuple[np.ndarray, sp.csc_matrix]:
    """The item rows with some event and the matrix restricted to them."""
    rows = np.flatnonzero(np.asarray(matrix.sum(axis=0)).ravel() > 0)
    return rows, matrix.tocsc()[:, rows]


def gram(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The active item rows and their co-occurrence matrix X^T X (dense float32: 10K items take 400 MB, and
    EASE's inverse is well conditioned by its L2 term), shared by the candidate settings of one model."""
    rows, active = _active(matrix)
    return rows, (active.T @ active).toarray().astype(np.float32)


def ease(rows: np.ndarray, co: np.ndarray, lam: float) -> ItemWeights:
    """EASE (Steck 2019): B = argmin ||X - XB||^2 + lam ||B||^2 with diag(B) = 0, in closed form
    B = I - P diag(1 / diag(P)), P = (X^T X + lam I)^-1; the diagonal constraint stops an item from
    recommending itself."""
    p = np.linalg.inv(co + np.float32(lam) * np.eye(len(co), dtype=np.float32))
    weights = -p / np.diag(p)[None, :]
    np.fill_diagonal(weights, 0.0)
    return ItemWeights(rows, weights.astype(np.float32, copy=False))


def item_knn(rows: np.ndarray, co: np.ndarray, neighbours: int) -> ItemWeights:
    """Cosine item-kNN: similarity |U_i & U_j| / sqrt(|U_i| |U_j|) between the items' user sets; each
    item keeps its `neighbours` most similar items (0: all) and is scored by the similarities to the
    history's items."""
    norms = np.sqrt(np.diag(co))
    sim = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    if 0 < neighbours < len(sim) - 1:
        # Keep each candidate item j's `neighbours` most similar history items: the column's top.
        cut = np.partition(sim, len(sim) - neighbours, axis=0)[len(sim) - neighbours]
        sim = np.where(sim >= cut[None, :], sim, 0.0)
    return ItemWeights(rows, sim.astype(np.float32))


def baseline_topk(
    model: ItemWeights,
    history: Sequence[np.ndarray],
    k: int,
    fallback: np.ndarray | None = None,
    progress: bool = False,
    desc: str = "baseline",
) -> np.ndarray:
    """Per user, the k best index rows by the summed weights of the history's rows, history excluded.

    Only the model's rows are ranked; a user whose history has none of them (no history, or only items
    without training events) gets its `fallback` row (popularity) when given. Padded with -1. `progress`
    shows a bar under `desc`."""
    everything = np.concatenate([model.rows, *(np.asarray(h, np.int64) for h in history)])
    position = np.full(int(everything.max(initial=-1)) + 1, -1)  # index row -> the model's column
    position[model.rows] = np.arange(len(model.rows))
    top = np.full((len(history), k), -1, dtype=np.int64)
    for start, stop in blocks(len(history), _USER_CHUNK, progress, desc):
        chunk = history[start:stop]
        profile = np.zeros((len(chunk), len(model.rows)), np.float32)
        for i, rows in enumerate(chunk):
            known = position[np.asarray(rows, np.int64)]
            profile[i, known[known >= 0]] = 1.0
        top[start : start + len(chunk)] = exact_topk(profile, model.weights.T, model.rows, chunk, k)
        if fallback is not None:
            empty = np.flatnonzero(~profile.any(axis=1))
            top[start + empty] = fallback[start + empty, :k]
    return top


@dataclass(frozen=True)
class Tuned:
    """A baseline's setting chosen on validation, and the validation metric of every candidate."""

    name: str
    setting: float
    scores: dict[float, float]

    def report(self) -> dict:
        """As metrics.json holds it (JSON keys are text)."""
        return {"chosen": self.setting, f"valid_{TUNED_ON}": {str(c): v for c, v in self.scores.items()}}


BUILDERS: dict[str, tuple[Callable[[np.ndarray, np.ndarray, float], ItemWeights], tuple[float, ...]]] = {
    "ease": (ease, EASE_LAMBDAS),
    "item_knn": (item_knn, KNN_SIZES),
}


def tune(
    train: sp.csr_matrix,
    history: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    k: int = 10,
    progress: bool = False,
) -> list[Tuned]:
    """Each baseline's setting with the best validation TUNED_ON (first on ties), fitted on `train`
    and ranked for the validation queries (`history` seen before each, `targets` its unseen items);
    `progress` shows a bar over each baseline's candidate settings (a fit and a ranking each)."""
    rows, co = gram(train)
    keep = [i for i, t in enumerate(targets) if len(t)]
    if not keep:
        return [Tuned(name, candidates[0], {}) for name, (_, candidates) in BUILDERS.items()]
    wanted = [targets[i] for i in keep]
    seen = [history[i] for i in keep]
    tuned = []
    for name, (build, candidates) in BUILDERS.items():
        scores = {
            c: ranking_metrics(baseline_topk(build(rows, co, c), seen, k), wanted, (k,))[f"{TUNED_ON}@{k}"]
            for c in tqdm(candidates, desc=f"{name} tuning", unit="setting", disable=not progress)
        }
        tuned.append(Tuned(name, max(candidates, key=lambda c: scores[c]), scores))
    return tuned


def fit(train: sp.csr_matrix, tuned: Sequence[Tuned]) -> dict[str, ItemWeights]:
    """The tuned baselines fitted on `train` (the training part, or training and validation together)."""
    rows, co = gram(train)
    return {t.name: BUILDERS[t.name][0](rows, co, t.setting) for t in tuned}
