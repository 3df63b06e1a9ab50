"""Training settings."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 512
    lr: float = 2e-3  # AdamW: projections, fusion, MLPs, temperature
    backbone_lr: float = 1e-4  # AdamW: the top trainable encoder block
    backbone_lr_decay: float = 1.0  # each block further down gets this factor more (layer-wise decay)
    embedding_lr: float = 0.05  # TorchRec fused row-wise Adagrad on the embedding tables
    weight_decay: float = 0.01
    logq: bool = True
    # With source and target domains configured: "joint" trains on L_S + target_weight * L_T,
    # "source" or "target" on that domain's examples alone (staged training: source, then target).
    domains: str = "joint"
    target_weight: float = 1.0
    eval_k: int = 10
    patience: int = 3  # epochs without a better validation recall before stopping
    seed: int = 0
    device: str = "auto"  # auto: cuda when present, else cpu
    encode_batch_size: int = 256
    sharding: str = "table_wise"  # TorchRec sharding type of every embedding table
    init_from: str | None = None  # a run folder whose towers start this model (staged training)
