"""Fitting the behaviour head on a trained run's frozen towers.

Why afterwards and frozen, not jointly: the retrieval model, its exported embeddings and its index stay
exactly as they are (a head can be added to, or retrained on, an existing run in seconds on CPU); the
head does not couple to the sharded multi-process trainer; and the towers' retrieval loss is not traded
against a calibration loss. The cost: the head can only use what the towers' vectors already encode.

Inputs per pair: the user vector at the user's state just before the pair's first event (the same
strictly-earlier history as training examples, so nothing leaks), the item vector, their product and
the score. Loss: binary cross-entropy per output, mean over outputs. Early stopping on the validation
pairs' loss when the split has a validation part.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from tandemrec.data.behaviour_pairs import BehaviourPairs, BehaviourSplit, state_vectors
from tandemrec.data.errors import DataError
from tandemrec.data.features import UserFeatures
from tandemrec.towers.behaviour_head import BehaviourHead, BehaviourHeadConfig
from tandemrec.towers.inference import embed
from tandemrec.towers.user_tower import UserTower
from tandemrec.training.behaviour_config import BehaviourConfig

log = logging.getLogger(__name__)
USER_BATCH = 1024


def tower_inputs(
    user_tower: UserTower,
    features: UserFeatures,
    item_vectors: np.ndarray,
    pairs: BehaviourPairs,
    progress: bool = False,
    desc: str = "users",
) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, item vectors) of every pair; `item_vectors[r]` is item index r + 1's vector.
    `progress` shows a bar under `desc` over the users' distinct states."""
    user_tower.eval()

    def embed_users(users: np.ndarray, times: np.ndarray) -> np.ndarray:
        batches = features.batches(users, times, USER_BATCH)
        return embed(user_tower, batches, torch.device("cpu"), progress, len(users), desc).numpy()

    return state_vectors(embed_users, pairs.users, pairs.times), item_vectors[pairs.items - 1]


def fit_behaviour_head(
    user_tower: UserTower,
    features: UserFeatures,
    item_vectors: np.ndarray,
    split: BehaviourSplit,
    config: BehaviourConfig,
    model_hash: str,
    progress: bool = False,
) -> BehaviourHead:
    """Train a head on `split.train` (early-stopped on `split.valid` when it has pairs); the returned
    head's config carries the towers' hash and a summary of the fit. `progress` shows the bars of
    embedding the pairs' users."""
    if len(split.train) == 0:
        raise DataError("behaviour: no training pairs (is the training part empty?)")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_inputs = tower_inputs(user_tower, features, item_vectors, split.train, progress, "behaviour train users")
    x_user, x_item = (torch.from_numpy(a) for a in train_inputs)
    y = torch.from_numpy(split.train.labels)
    valid = None
    if len(split.valid):
        valid_inputs = tower_inputs(user_tower, features, item_vectors, split.valid, progress, "behaviour valid users")
        valid = [torch.from_numpy(a) for a in valid_inputs]
        valid.append(torch.from_numpy(split.valid.labels))
    head = BehaviourHead(
        BehaviourHeadConfig(x_user.shape[1], list(split.outputs), list(config.hidden), model_hash=model_hash)
    )
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best_loss, best_epoch, best_state, stale, history = float("inf"), 0, None, 0, []
    for epoch in range(1, config.epochs + 1):
        head.train()
        order = torch.from_numpy(rng.permutation(len(y)))
        total = 0.0
        for batch in order.split(config.batch_size):
            loss = loss_fn(head(x_user[batch], x_item[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        row = {"epoch": epoch, "train_loss": total / len(y)}
        if valid is not None:
            head.eval()
            with torch.no_grad():
                row["valid_loss"] = loss_fn(head(valid[0], valid[1]), valid[2]).item()
        history.append(row)
        score = row.get("valid_loss", row["train_loss"])
        if score < best_loss:
            best_loss, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    head.load_state_dict(best_state)
    head.config.summary = {
        "train_pairs": len(split.train),
        "train_observed": int(split.train.observed.sum()),
        "train_positives": dict(zip(split.outputs, split.train.labels.sum(axis=0).astype(int).tolist())),
        "valid_pairs": len(split.valid),
        "negatives_per_pair": config.negatives,
        "best_epoch": best_epoch,
        "best_loss": best_loss,
        "loss_on": "valid" if valid is not None else "train",
        "history": history,
        "seconds": round(time.perf_counter() - start, 2),
    }
    log.info("behaviour head: %d pairs, best epoch %d, %s loss %.4f (%.1f s)", len(y), best_epoch,
             head.config.summary["loss_on"], best_loss, head.config.summary["seconds"])
    return head.eval()
