"""The training task: contrastive two-tower training with validation, progress and the best model saved."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from tqdm import tqdm

from tandemrec.data.content import ItemContent
from tandemrec.data.examples import Examples
from tandemrec.data.prepared import PreparedData
from tandemrec.towers.freezing import layerwise_learning_rates
from tandemrec.towers.inference import embed, frozen_backbone_features
from tandemrec.towers.serialization import save_model
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training import distributed
from tandemrec.training.config import TrainConfig
from tandemrec.training.loss import InBatchSoftmax, domain_weights
from tandemrec.training.validation import recall_at_k

@dataclass
class TrainResult:
    best_epoch: int
    best_recall: float
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Runs on CUDA with bf16 autocast when present, else on CPU in float32.

    Embedding tables get TorchRec's fused row-wise Adagrad (applied inside the backward pass);
    everything else AdamW, with a smaller learning rate for the pretrained backbones.
    """

    def __init__(
        self,
        model: TwoTower,
        data: PreparedData,
        content: ItemContent,
        config: TrainConfig,
        model_dir: Path,
        metrics_path: Path,
        tokenizer=None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.data = data
        self.content = content
        self.config = config
        self.model_dir = Path(model_dir)
        self.metrics_path = Path(metrics_path)
        self.tokenizer = tokenizer
        self.progress = progress
        self.loss_fn = InBatchSoftmax()

    def fit(self) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        env = distributed.init(cfg.device)
        try:
            return self._fit(env, rng)
        finally:
            distributed.shutdown(env)

    def _fit(self, env: distributed.Env, rng: np.random.Generator) -> TrainResult:
        cfg, model = self.config, self.model
        model.to(env.device)
        self._cache_frozen_backbones(env.device)
        dmp, _ = distributed.shard(model, env, cfg.embedding_lr, cfg.sharding)
        optimizer = self._optimizer(dmp)
        log_q = self._log_q() if cfg.logq else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=env.device.type == "cuda")
        train, source, target = self._examples()
        steps = math.ceil(len(train) / cfg.batch_size)
        best = TrainResult(best_epoch=-1, best_recall=-1.0, epochs_run=0, seconds=0.0)
        start, stale = time.perf_counter(), 0
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        self.metrics_path.write_text("")
        for epoch in range(1, cfg.epochs + 1):
            dmp.train()
            order = rng.permutation(len(train))
            total = 0.0
            bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not self.progress or env.rank != 0)
            for step in bar:
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                items = torch.from_numpy(train.items[idx])
                users_batch = self.data.features.batch(train.users[idx], train.times[idx]).to(env.device)
                items_batch = self.content.batch(items - 1).to(env.device)
                with autocast:
                    user_vec, item_vec = dmp(users_batch, items_batch)
                weights = None
                if target is not None:
                    weights = domain_weights(
                        torch.from_numpy(source[idx]), torch.from_numpy(target[idx]), cfg.target_weight
                    ).to(env.device)
                loss = self.loss_fn(
                    user_vec.float(),
                    item_vec.float(),
                    items.to(env.device),
                    model.temperature,
                    None if log_q is None else log_q[items].to(env.device),
                    weights,
                )
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                total += loss.item()
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
            recall = self._validate(dmp, env.device)
            row = {
                "epoch": epoch,
                "train_loss": total / steps,
                f"valid_recall@{cfg.eval_k}": recall,
                "temperature": model.temperature.item(),
                "seconds": round(time.perf_counter() - start, 2),
            }
            best.history.append(row)
            best.epochs_run = epoch
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.progress and env.rank == 0:
                print(json.dumps(row))
            if recall > best.best_recall:
                best.best_epoch, best.best_recall, stale = epoch, recall, 0
                state = distributed.dense_state_dict(dmp)
                if env.rank == 0:
                    save_model(model, self.model_dir, state, self.tokenizer)
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        best.seconds = time.perf_counter() - start
        return best

    def _examples(self) -> tuple[Examples, np.ndarray | None, np.ndarray | None]:
        """The training examples and, in joint training over two domains, their domain masks."""
        train, mode = self.data.train, self.config.domains
        if mode not in ("joint", "source", "target"):
            raise ValueError(f"train.domains must be joint, source or target, got '{mode}'")
        if train.target is None or not train.target.any():
            if mode == "target":
                raise ValueError("train.domains='target' but the data has no target-domain training events")
            return train, None, None
        source = train.source if train.source is not None else np.ones(len(train), dtype=bool)
        if mode == "joint":
            return train, source, train.target
        keep = np.flatnonzero(source if mode == "source" else train.target)
        return Examples(train.users[keep], train.items[keep], train.times[keep]), None, None

    def _optimizer(self, dmp) -> CombinedOptimizer:
        cfg = self.config
        dense = dict(in_backward_optimizer_filter(dmp.named_parameters()))
        rates: dict[int, float] = {}
        for encoder in (self.model.item_tower.image, self.model.item_tower.text):
            if encoder is not None:
                rates.update(layerwise_learning_rates(encoder, encoder.blocks, cfg.backbone_lr, cfg.backbone_lr_decay))

        def adamw(params: list[torch.Tensor]) -> torch.optim.Optimizer:
            groups: dict[float, list[torch.Tensor]] = {}
            for p in params:
                groups.setdefault(rates.get(id(p), cfg.lr), []).append(p)
            return torch.optim.AdamW(
                [{"params": ps, "lr": lr} for lr, ps in groups.items()], weight_decay=cfg.weight_decay
            )

        trainable = {name: p for name, p in dense.items() if p.requires_grad}
        return CombinedOptimizer([dmp.fused_optimizer, KeyedOptimizerWrapper(trainable, adamw)])

    def _log_q(self) -> torch.Tensor:
        freq = self.data.item_frequencies() + 1.0
        return torch.from_numpy(np.log(freq / freq.sum())).float()

    def _cache_frozen_backbones(self, device: torch.device) -> None:
        tower = self.model.item_tower
        tower.eval()
        image, text = frozen_backbone_features(tower, self.content.batches(self.config.encode_batch_size), device)
        if image is not None:
            self.content.image_features = image
        if text is not None:
            self.content.text_features = text

    def _validate(self, dmp, device: torch.device) -> float:
        dmp.eval()
        model, valid, size = self.model, self.data.valid, self.config.encode_batch_size
        items = embed(model.item_tower, self.content.batches(size), device)
        users = embed(model.user_tower, self.data.features.batches(valid.users, valid.times, size), device)
        seen = self.data.log.items_before(valid.users, valid.times)
        return recall_at_k(users, items, valid.targets, seen, self.config.eval_k)
