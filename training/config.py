"""Training settings; each is checked when a TrainConfig is built (see tandemrec/config_schema.py: `setting`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from tandemrec.config_schema import check_fields, setting
from tandemrec.errors import ConfigError

SCHEDULES = ("constant", "cosine")
# The optimizers training/distributed.py fuses into the embedding tables' backward.
EMBEDDING_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd")
# TorchRec's sharding types (torchrec.distributed.types.ShardingType), named here so that a config is
# checked without loading TorchRec.
SHARDING_TYPES = (
    "table_wise", "column_wise", "row_wise", "table_row_wise", "table_column_wise", "grid_shard", "data_parallel"
)
DOMAIN_MODES = ("joint", "source", "target")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = re.compile(rf"(\d+(?:\.\d+)?)\s*({'|'.join(_UNITS)})?")


@dataclass
class TrainConfig:
    epochs: int = setting(8, ge=1)
    # The global batch: split over the processes, whose items are all its negatives.
    batch_size: int = setting(512, ge=1)
    lr: float = setting(2e-3, gt=0)  # AdamW: projections, fusion, MLPs, temperature
    backbone_lr: float = setting(1e-4, gt=0)  # AdamW: the top trainable encoder block
    # Each block further down gets this factor more (layer-wise decay; 1: the same rate throughout).
    backbone_lr_decay: float = setting(1.0, gt=0, le=1)
    # Of the AdamW rates: constant | cosine (to 0 at the last step).
    lr_schedule: str = setting("constant", one_of=SCHEDULES)
    warmup_steps: int = setting(0, ge=0)  # linear warm-up of the AdamW rates
    # Of the embedding tables' optimizer, fused by TorchRec into the backward.
    embedding_lr: float = setting(0.05, gt=0)
    embedding_optimizer: str = setting("rowwise_adagrad", one_of=EMBEDDING_OPTIMIZERS)
    weight_decay: float = setting(0.01, ge=0)
    logq: bool = True
    # logQ subtracts this times log(sampling probability). 1 removes just what in-batch sampling does to
    # popular items; above 1 the learned scores also keep (weight - 1) x log q: a popularity prior.
    logq_weight: float = setting(1.0, gt=0)
    # Extra uniformly drawn catalogue items per step (mixed negative sampling).
    mixed_negatives: int = setting(0, ge=0)
    # Extra hard negatives per step and process, mined from the model's own index.
    hard_negatives: int = setting(0, ge=0)
    # Each user's list of hard negatives: this many top-scored unseen items.
    hard_negative_depth: int = setting(50, ge=1)
    # Re-mine every this many epochs (mining starts after the first).
    hard_negatives_every: int = setting(1, ge=1)
    # With source and target domains configured: "joint" trains on L_S + target_weight * L_T,
    # "source" or "target" on that domain's examples alone (staged training: source, then target).
    domains: str = setting("joint", one_of=DOMAIN_MODES)
    target_weight: float = setting(1.0, ge=0)
    # Weight of an auxiliary loss on content-only item vectors (the batch's items with their ids hidden,
    # as a new item is embedded): each user must also find its item from content alone. 0: off.
    content_loss_weight: float = setting(0.0, ge=0)
    # After training, items without training events are moved toward the users until they fill the first
    # page this many times as often as validation users want them (training/new_items.py). 0: left where
    # their content-only vectors fall.
    new_item_exposure: float = setting(1.0, ge=0)
    eval_k: int = setting(10, ge=1)  # the validation recall@k that picks the best epoch
    patience: int = setting(3, ge=0)  # epochs without a better validation recall before stopping
    seed: int = setting(0, ge=0)
    # Torch threads of each training process on CPU; 0: this host's cores shared among its processes.
    cpu_threads: int = setting(0, ge=0)
    device: str = "auto"  # auto (cuda when present, else cpu) | cpu | cuda | cuda:N
    # DataLoader worker processes per training process that build the next steps' inputs (user features,
    # item content, negatives) while the model computes; 0: each step builds its own, which was faster on
    # CPU: a worker's inputs took 1.7x as long to hand over as to build (training/step_inputs.py).
    loader_workers: int = setting(0, ge=0)
    # Send the next step's table inputs to their shards while this step computes (TorchRec's input
    # all-to-alls, overlapped as its TrainPipelineSparseDist does; training/sparse_prefetch.py). Off: on
    # CPU it changed samples/s by no more than the noise, and its CUDA stream has not run on a GPU yet.
    prefetch_table_inputs: bool = False
    encode_batch_size: int = setting(256, ge=1)
    # Frozen backbones run once over the catalogue and their outputs are reused; off, they run every step.
    cache_frozen_backbones: bool = True
    # TorchRec sharding type of every embedding table (data_parallel: GPU only), and per-table
    # exceptions {table name = type}.
    sharding: str = setting("table_wise", one_of=SHARDING_TYPES)
    table_sharding: dict[str, str] = setting(factory=dict, one_of=SHARDING_TYPES)
    # Steps between checkpoints within an epoch (0: at the end of each epoch only).
    checkpoint_every: int = setting(0, ge=0)
    keep_checkpoints: int = setting(2, ge=1)
    # Memory the sharding planner may give each process's tables and their optimizer state, e.g. "24GiB";
    # a plan over it is refused before any table is allocated. "": the host's RAM shared by its processes
    # (on GPU, the device's memory).
    max_memory_per_process: str = ""
    init_from: str | None = None  # a run folder whose towers start this model (staged training)

    def __post_init__(self) -> None:
        check_fields(self)
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(
                f"config key 'device' must be auto, cpu, cuda or cuda:N, got {self.device!r}", ("device",)
            )
        self.max_memory_bytes()

    def max_memory_bytes(self) -> int:
        """`max_memory_per_process` in bytes (0: not set)."""
        if not self.max_memory_per_process:
            return 0
        size = _SIZE.fullmatch(self.max_memory_per_process.strip())
        if not size or float(size[1]) <= 0:
            raise ConfigError(
                "config key 'max_memory_per_process' must be a size such as \"512MiB\", \"24GiB\" or \"2TB\", "
                f"got {self.max_memory_per_process!r}", ("max_memory_per_process",)
            )
        return int(float(size[1]) * _UNITS[size[2] or "B"])
