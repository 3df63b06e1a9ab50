"""Index settings: which FAISS kind, its search parameters, and the recall an index must reach at build time."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
LOW_RECALL_ACTIONS = ("error", "warn")


@dataclass
class IndexConfig:
    """The `[index]` section of a run config; `tandemrec index RUN --kind ...` overrides it."""

    kind: str = "auto"  # auto | flat (exact) | ivf | ivfpq | hnsw; auto picks by catalogue size and memory
    nprobe: int | None = None  # IVF lists searched per query; None: tuned at build until min_recall is met
    ef_search: int | None = None  # HNSW candidate list per query; None: tuned at build until min_recall is met
    min_recall: float = 0.95  # recall@10 against exact search, on a sample of the run's user embeddings
    on_low_recall: str = "error"  # error: refuse to write the index; warn: log and write it
    recall_queries: int = 1000  # how many user embeddings the build-time recall check uses
    memory_fraction: float = 0.5  # auto: share of the available memory the index may take

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index.kind must be one of {KINDS}, got {self.kind!r}")
        if self.on_low_recall not in LOW_RECALL_ACTIONS:
            raise ValueError(f"index.on_low_recall must be one of {LOW_RECALL_ACTIONS}, got {self.on_low_recall!r}")
        for name in ("nprobe", "ef_search"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"index.{name} must be a positive integer or unset, got {value!r}")
        recall = self.min_recall
        if isinstance(recall, bool) or not isinstance(recall, (int, float)) or not 0 <= recall <= 1:
            raise ValueError(f"index.min_recall must lie in [0, 1], got {self.min_recall!r}")
        queries = self.recall_queries
        if isinstance(queries, bool) or not isinstance(queries, int) or queries <= 0:
            raise ValueError(f"index.recall_queries must be a positive integer, got {self.recall_queries!r}")
        if not isinstance(self.memory_fraction, (int, float)) or not 0 < self.memory_fraction <= 1:
            raise ValueError(f"index.memory_fraction must lie in (0, 1], got {self.memory_fraction!r}")
