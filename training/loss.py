"""In-batch sampled softmax: each user's positive item against the other items of the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InBatchSoftmax(nn.Module):
    """Cross-entropy over in-batch items with a temperature, logQ correction and accidental-hit masking.

    logQ subtracts log(sampling probability) of each candidate, so popular items, which appear as
    negatives more often, are not pushed down for being popular (Yi et al., RecSys 2019). A candidate
    equal to the row's positive (the same item twice in a batch) is masked, not counted as a negative.

    The candidates may be more than the rows: the global batch gathered from every rank (this rank's
    rows are the columns from `offset` on), then any extra negatives (mixed or hard) after the batch.
    """

    def forward(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        item_ids: torch.Tensor,
        temperature: torch.Tensor | float,
        log_q: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """users (R, d), items (C, d), item_ids and log_q (C,): row i's positive is column offset + i.

        Mean loss over rows, or the `weights`-weighted sum of row losses (per-domain means, or each
        row's share of a global batch spread over ranks).
        """
        logits = users @ items.T / temperature
        if log_q is not None:
            logits = logits - log_q.unsqueeze(0)
        positives = torch.arange(offset, offset + users.shape[0], device=logits.device)
        same = item_ids.unsqueeze(0) == item_ids[positives].unsqueeze(1)
        same[torch.arange(users.shape[0], device=logits.device), positives] = False
        logits = logits.masked_fill(same, float("-inf"))
        rows = F.cross_entropy(logits, positives, reduction="none")
        return rows.mean() if weights is None else (rows * weights).sum()


def domain_weights(
    source: torch.Tensor,
    target: torch.Tensor,
    target_weight: float,
    totals: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Row weights that make the weighted sum equal L_S + lambda * L_T, each a mean over its rows.

    An example can be in both domains (a high rating is a view and a purchase) and then counts in both.
    `totals`: the source and target row counts of the whole global batch, when these rows are one
    rank's part of it (default: these rows' own counts).
    """
    source, target = source.float(), target.float()
    n_source, n_target = totals if totals is not None else (source.sum().item(), target.sum().item())
    return source / max(n_source, 1.0) + target_weight * target / max(n_target, 1.0)
