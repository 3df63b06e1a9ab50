"""`[behaviour]`: the behaviour head trained on a run's frozen towers (see training/behaviour_head_fit.py);
each setting is checked when a BehaviourConfig is built (see tandemrec/config_schema.py: `setting`)."""
from __future__ import annotations

from dataclasses import dataclass

from tandemrec.config_schema import check_fields, setting


@dataclass
class BehaviourConfig:
    enabled: bool = True  # train a head at the end of `tandemrec train` (seconds on CPU)
    hidden: list[int] = setting(factory=lambda: [64], ge=1)  # MLP layer widths
    # Sampled items per observed pair (all-zero labels), in training and evaluation.
    negatives: int = setting(4, ge=0)
    # Share of those drawn by training popularity, the rest uniformly.
    popular_negatives: float = setting(0.5, ge=0, le=1)
    epochs: int = setting(20, ge=1)
    patience: int = setting(2, ge=0)  # epochs without a lower validation loss before stopping
    batch_size: int = setting(1024, ge=1)
    lr: float = setting(3e-3, gt=0)
    weight_decay: float = setting(1e-4, ge=0)
    # Observed training pairs kept (a seeded sample above that), to stay cheap.
    max_pairs: int = setting(500_000, ge=1)
    seed: int = setting(0, ge=0)
    # The outcome model (features + calibrated scorers, see towers/outcome_model.py): what it predicts, an
    # event type or "target" ("": the target domain, else the rarest event type), the depth of retrieved
    # candidates its relevance scorer learns to rerank, at how many moments per user, and the scorer kinds
    # it chooses among on validation.
    outcome: str = ""
    candidates: int = setting(50, ge=1)
    states: int = setting(5, ge=1)  # moments per user at which those candidates are drawn
    models: list[str] = setting(factory=lambda: ["gbdt", "logistic"], one_of=("gbdt", "logistic"))

    def __post_init__(self) -> None:
        check_fields(self)
