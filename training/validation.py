"""Full-ranking Recall@K during training: every catalogue item scored, seen items excluded."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def user_recall_at_k(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: Sequence[np.ndarray],
    seen: Sequence[np.ndarray],
    k: int,
    chunk: int = 1024,
) -> float:
    """Mean share of each user's held-out items found in their top-`k` of the whole catalogue: how well
    the model recommends (unlike `retrieval.index_build.ann_recall_at_k`, how well an index searches).

    item_vectors row r is item index r + 1 (index 0, the unknown item, is never ranked).

    Seen items are never ranked, so targets among them are left out, as in offline evaluation.
    """
    targets = [np.setdiff1d(t, s) for t, s in zip(targets, seen)]
    if not any(len(t) for t in targets):
        return float("nan")
    recalls = []
    for start in range(0, len(targets), chunk):
        scores = user_vectors[start : start + chunk] @ item_vectors.T
        for row, items in enumerate(seen[start : start + chunk]):
            scores[row, torch.as_tensor(items - 1)] = float("-inf")
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices.numpy() + 1
        for row, wanted in enumerate(targets[start : start + chunk]):
            if len(wanted):
                recalls.append(np.isin(wanted, top[row]).sum() / len(wanted))
    return float(np.mean(recalls))
