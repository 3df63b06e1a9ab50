"""Where each artifact of a run lives: one folder holds everything a job makes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def vocab(self) -> Path:
        return self.root / "vocab"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def train_metrics(self) -> Path:
        return self.root / "train_metrics.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def metrics_valid(self) -> Path:
        """The validation part's metrics (`evaluate --part valid`): what settings are chosen on."""
        return self.root / "metrics_valid.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def sharding_plan(self) -> Path:
        return self.root / "sharding_plan.json"

    @property
    def behaviour(self) -> Path:
        return self.root / "behaviour"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"
