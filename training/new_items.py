"""Where new items land: the offset that moves content-only vectors to where trained ids put items.

An item without training events is embedded from its content alone (its id is masked). Such vectors rank
well among themselves but sit apart from the users: on MovieLens a held-out movie was shown 20 times less
often than it was wanted (benchmarks/results/cold_start.md). A trained item's full vector differs from its
content-only vector by what its id learned; the event-weighted mean of that difference is where an average
event's item is taken by its id. Every new item gets `shift` times that offset, and is brought back to unit
length (so that inner products stay cosines: near-duplicate new items stay each other's nearest). One
vector added to all new items barely changes their order among themselves (the new-arrivals shelf), while
it moves how often they reach the first page. The shift is chosen on the validation part so that new items
fill the first page as often as validation users want them (cold exposure at a target, 1 by default),
because how much new items are wanted differs from shop to shop.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from tandemrec.data.content import ItemContent
from tandemrec.data.prepared import PreparedData
from tandemrec.retrieval.cold_start import cold_rows, exact_topk
from tandemrec.towers.inference import embed
from tandemrec.towers.two_tower import TwoTower

EXPOSURE_K = 10  # the first page, as evaluation's cold exposure
# Candidate shifts, in units of the mean offset (< 0: content-only items were shown too often): a coarse
# sweep, then a fine one around its best.
COARSE_SHIFTS = np.round(np.arange(-1.0, 3.0001, 0.1), 2)
FINE_STEP = 0.01
MAX_USERS = 20_000  # validation users the exposure is measured on (a seeded sample beyond): bounds the cost
# Used when the validation part has no new-item target to calibrate on: about the shift MovieLens 100K's
# per-user temporal validation chose (0.36, 0.36 and 0.20 over 3 seeds; benchmarks/results/cold_start.md).
FALLBACK_SHIFT = 0.3


@dataclasses.dataclass(frozen=True)
class NewItemPlacement:
    offset: torch.Tensor  # (dim,) added to every new item's content-only vector: shift * mean offset
    shift: float
    validation_exposure: float | None  # cold exposure on the validation part at `shift`; None: not measured
    chosen_by: str  # how the shift was chosen, for the log

    def summary(self) -> str:
        return f"new items moved by {self.shift:.2f} x the mean id offset (|offset| {float(self.offset.norm()):.3f}): {self.chosen_by}"


def fit_new_item_placement(
    model: TwoTower,
    content: ItemContent,
    data: PreparedData,
    target_exposure: float = 1.0,
    batch_size: int = 256,
    device: torch.device = torch.device("cpu"),
) -> NewItemPlacement:
    """The offset for new items of `model` (trained on `data`), with its shift chosen on `data.valid`.

    `content` is the catalogue in vocabulary order, items without training events already id-masked (as
    `PreparedData.content` makes it). `target_exposure` 0 leaves new items at their content-only vectors.
    Under a training job's process group every process calls it together (the embedding is shared).
    """
    counts = data.item_frequencies()[1:]
    warm = counts > 0
    was_training = model.training
    model.eval()
    try:
        full = embed(model.item_tower, content.batches(batch_size), device, shared=True).double().numpy()
        masked = dataclasses.replace(content, item_index=torch.zeros_like(content.item_index))
        content_only = embed(model.item_tower, masked.batches(batch_size), device, shared=True).double().numpy()
        mean_offset = (counts[warm, None] * (full[warm] - content_only[warm])).sum(0) / max(counts[warm].sum(), 1.0)
        shift, exposure, chosen_by = _calibrated_shift(
            model, data, full, cold_rows(counts), mean_offset, target_exposure, batch_size, device
        )
    finally:
        model.train(was_training)
    return NewItemPlacement(torch.as_tensor(shift * mean_offset, dtype=torch.float32), shift, exposure, chosen_by)


def _calibrated_shift(
    model: TwoTower,
    data: PreparedData,
    items: np.ndarray,
    cold: np.ndarray,
    mean_offset: np.ndarray,
    target: float,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float | None, str]:
    """The shift whose validation cold exposure is nearest `target` (by ratio), that exposure, and how it
    was chosen. Exposure is measured as evaluation measures it: over the users with an unseen target."""
    if target == 0:
        return 0.0, None, "left at their content-only vectors (train.new_item_exposure = 0)"
    valid = data.valid
    seen = [s - 1 for s in data.log.items_before(valid.users, valid.times)]
    targets = [np.setdiff1d(t - 1, s) for t, s in zip(valid.targets, seen)]
    evaluated = np.array([i for i, t in enumerate(targets) if len(t)], dtype=np.int64)
    if len(evaluated) > MAX_USERS:
        evaluated = np.sort(np.random.default_rng(0).choice(evaluated, MAX_USERS, replace=False))
    wanted = np.concatenate([targets[i] for i in evaluated]) if len(evaluated) else np.zeros(0, dtype=np.int64)
    cold_share = float(np.isin(wanted, cold).mean()) if wanted.size else 0.0
    if cold_share == 0.0:
        return FALLBACK_SHIFT, None, f"no new-item target in the validation part: shift {FALLBACK_SHIFT} (MovieLens's choice)"
    batches = data.features.batches(valid.users[evaluated], valid.times[evaluated], batch_size)
    users = embed(model.user_tower, batches, device, shared=True).double().numpy()
    share = _ColdShare(users, items, cold, mean_offset, [seen[i] for i in evaluated])

    def distance(shift: float) -> float:
        return abs(np.log(max(share(shift) / cold_share, 1e-9) / target))

    coarse = min(COARSE_SHIFTS, key=distance)
    best = float(min(np.round(np.arange(coarse - 0.1, coarse + 0.1 + FINE_STEP / 2, FINE_STEP), 2), key=distance))
    exposure = share(best) / cold_share
    return best, exposure, f"validation cold exposure {exposure:.2f} (target {target:g})"


class _ColdShare:
    """Share of cold items among the users' top-`EXPOSURE_K` slots when the cold items are moved by
    `shift` x `mean_offset` and brought back to unit length, as `ItemTower.place_new_items` does.

    The warm items do not move: their top-k is found once, and each shift ranks the moved cold items and
    merges their top-k with it."""

    def __init__(
        self, users: np.ndarray, items: np.ndarray, cold: np.ndarray, mean_offset: np.ndarray, seen: list[np.ndarray]
    ) -> None:
        self.users, self.cold, self.seen = users, cold, seen
        self.content_only, self.mean_offset = items[cold], mean_offset
        self.k = min(EXPOSURE_K, len(items))
        warm = np.setdiff1d(np.arange(len(items)), cold)
        self.warm_scores = _top_scores(users, items[warm], warm, seen, self.k)
        self._memo: dict[float, float] = {}

    def __call__(self, shift: float) -> float:
        shift = round(float(shift), 2)
        if shift not in self._memo:
            moved = self.content_only + shift * self.mean_offset
            moved /= np.linalg.norm(moved, axis=1, keepdims=True)
            cold_scores = _top_scores(self.users, moved, self.cold, self.seen, self.k)
            scores = np.concatenate([self.warm_scores, cold_scores], axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
            slots = np.isfinite(np.take_along_axis(scores, order, axis=1))
            self._memo[shift] = float((order >= self.k)[slots].mean()) if slots.any() else 0.0
        return self._memo[shift]


def _top_scores(users: np.ndarray, vectors: np.ndarray, rows: np.ndarray, seen: list[np.ndarray], k: int) -> np.ndarray:
    """Each user's k best scores among `rows` (vectors[j] is row rows[j]), seen rows left out; -inf pads."""
    top = exact_topk(users, vectors, rows, seen, k)
    position = np.searchsorted(rows, np.maximum(top, 0))
    scores = np.einsum("ud,ukd->uk", users, vectors[np.minimum(position, len(rows) - 1)])
    return np.where(top >= 0, scores, -np.inf)
