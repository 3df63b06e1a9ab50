"""Index settings: which FAISS kind, its search parameters, and the recall an index must reach at build
time; each is checked when an IndexConfig is built (see tandemrec/config_schema.py: `setting`)."""
from __future__ import annotations

from dataclasses import dataclass

from tandemrec.config_schema import check_fields, setting

KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
LOW_RECALL_ACTIONS = ("error", "warn")


@dataclass
class IndexConfig:
    """The `[index]` section of a run config; `tandemrec index RUN --kind ...` overrides it."""

    # auto | flat (exact) | ivf | ivfpq | hnsw; auto picks by catalogue size and memory.
    kind: str = setting("auto", one_of=KINDS)
    # IVF lists searched per query; None: tuned at build until min_recall is met.
    nprobe: int | None = setting(None, ge=1)
    # HNSW candidate list per query; None: tuned at build until min_recall is met.
    ef_search: int | None = setting(None, ge=1)
    # Recall@10 against exact search, on a sample of the run's user embeddings.
    min_recall: float = setting(0.95, ge=0, le=1)
    # error: refuse to write the index; warn: log and write it.
    on_low_recall: str = setting("error", one_of=LOW_RECALL_ACTIONS)
    recall_queries: int = setting(1000, ge=1)  # how many user embeddings the build-time recall check uses
    memory_fraction: float = setting(0.5, gt=0, le=1)  # auto: share of the available memory the index may take

    def __post_init__(self) -> None:
        check_fields(self)
