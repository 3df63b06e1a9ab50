"""Training settings."""
from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 512  # the global batch: split over the processes, whose items are all its negatives
    lr: float = 2e-3  # AdamW: projections, fusion, MLPs, temperature
    backbone_lr: float = 1e-4  # AdamW: the top trainable encoder block
    backbone_lr_decay: float = 1.0  # each block further down gets this factor more (layer-wise decay)
    lr_schedule: str = "constant"  # of the AdamW rates: constant | cosine (to 0 at the last step)
    warmup_steps: int = 0  # linear warm-up of the AdamW rates
    embedding_lr: float = 0.05  # of the embedding tables' optimizer, fused by TorchRec into the backward
    embedding_optimizer: str = "rowwise_adagrad"  # rowwise_adagrad | adagrad | sgd
    weight_decay: float = 0.01
    logq: bool = True
    mixed_negatives: int = 0  # extra uniformly drawn catalogue items per step (mixed negative sampling)
    hard_negatives: int = 0  # extra hard negatives per step and process, mined from the model's own index
    hard_negative_depth: int = 50  # each user's list of hard negatives: this many top-scored unseen items
    hard_negatives_every: int = 1  # re-mine every this many epochs (mining starts after the first)
    # With source and target domains configured: "joint" trains on L_S + target_weight * L_T,
    # "source" or "target" on that domain's examples alone (staged training: source, then target).
    domains: str = "joint"
    target_weight: float = 1.0
    # Weight of an auxiliary loss on content-only item vectors (the batch's items with their ids hidden,
    # as a new item is embedded): each user must also find its item from content alone. 0: off.
    content_loss_weight: float = 0.0
    eval_k: int = 10
    patience: int = 3  # epochs without a better validation recall before stopping
    seed: int = 0
    device: str = "auto"  # auto: cuda when present, else cpu
    encode_batch_size: int = 256
    # Frozen backbones run once over the catalogue and their outputs are reused; off, they run every step.
    cache_frozen_backbones: bool = True
    # TorchRec sharding type of every embedding table (table_wise, column_wise, row_wise, table_row_wise,
    # table_column_wise, data_parallel: GPU only), and per-table exceptions {table name = type}.
    sharding: str = "table_wise"
    table_sharding: dict[str, str] = field(default_factory=dict)
    checkpoint_every: int = 0  # steps between checkpoints within an epoch (0: at the end of each epoch only)
    keep_checkpoints: int = 2
    init_from: str | None = None  # a run folder whose towers start this model (staged training)

    def __post_init__(self) -> None:
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {list(SCHEDULES)}, got '{self.lr_schedule}'")
        for name in ("batch_size", "epochs", "hard_negatives_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("mixed_negatives", "hard_negatives", "checkpoint_every", "warmup_steps", "content_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be 0 or more, got {getattr(self, name)}")
