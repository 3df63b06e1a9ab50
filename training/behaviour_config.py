"""`[behaviour]`: the behaviour head trained on a run's frozen towers (see training/behaviour.py)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BehaviourConfig:
    enabled: bool = True  # train a head at the end of `tandemrec train` (seconds on CPU)
    hidden: list[int] = field(default_factory=lambda: [64])
    negatives: int = 4  # sampled items per observed pair (all-zero labels), in training and evaluation
    popular_negatives: float = 0.5  # share of those drawn by training popularity, the rest uniformly
    epochs: int = 20
    patience: int = 2  # epochs without a lower validation loss before stopping
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_pairs: int = 500_000  # observed training pairs kept (a seeded sample above that), to stay cheap
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("negatives", "epochs", "batch_size", "max_pairs"):
            value = getattr(self, name)
            least = 0 if name == "negatives" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"behaviour.{name} must be an integer >= {least}, got {value!r}")
        if not 0.0 <= self.popular_negatives <= 1.0:
            raise ValueError(f"behaviour.popular_negatives must lie in [0, 1], got {self.popular_negatives!r}")
