"""In-batch sampled softmax: each user's positive item against the other items of the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InBatchSoftmax(nn.Module):
    """Cross-entropy over in-batch items with a temperature, logQ correction and accidental-hit masking.

    logQ subtracts log(sampling probability) of each candidate, so popular items, which appear as
    negatives more often, are not pushed down for being popular (Yi et al., RecSys 2019). A batch item
    equal to the row's positive (the same item twice in a batch) is masked, not counted as a negative.
    """

    def forward(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        item_ids: torch.Tensor,
        temperature: torch.Tensor | float,
        log_q: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean loss over rows, or the `weights`-weighted sum of row losses (e.g. per-domain means)."""
        logits = users @ items.T / temperature
        if log_q is not None:
            logits = logits - log_q.unsqueeze(0)
        same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        rows = F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device), reduction="none")
        return rows.mean() if weights is None else (rows * weights).sum()


def domain_weights(source: torch.Tensor, target: torch.Tensor, target_weight: float) -> torch.Tensor:
    """Row weights that make the weighted sum equal L_S + lambda * L_T, each a mean over its rows.

    An example can be in both domains (a high rating is a view and a purchase) and then counts in both.
    """
    source, target = source.float(), target.float()
    return source / source.sum().clamp_min(1.0) + target_weight * target / target.sum().clamp_min(1.0)
