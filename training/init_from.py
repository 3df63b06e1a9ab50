"""Staged training: start a model from another run's towers.

Dense weights (encoders, projections, fusion, MLPs) are copied where their shapes match. Embedding
tables are copied row by row through the two runs' vocabularies, so an id known to both keeps its
trained vector even when the new data numbers it differently (another split, another shop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tandemrec.data.vocab import Vocabulary
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.errors import MissingFileError
from tandemrec.run import Run
from tandemrec.towers.two_tower import TwoTower


@dataclass
class InitReport:
    copied: list[str] = field(default_factory=list)
    remapped: dict[str, int] = field(default_factory=dict)  # table key -> rows carried over
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why

    def summary(self) -> str:
        rows = ", ".join(f"{k.split('.')[-2]}: {n}" for k, n in self.remapped.items())
        return (
            f"{len(self.copied)} tensors copied, id rows carried over ({rows}), "
            f"{len(self.skipped)} skipped" + (f": {self.skipped}" if self.skipped else "")
        )


def table_vocabulary(key: str, vocabs: Vocabularies) -> Vocabulary | None:
    """The vocabulary that numbers the rows of the embedding table behind a state-dict key."""
    if ".embedding_bags." not in key:
        return None
    table = key.split(".embedding_bags.")[1].split(".")[0]
    if table == "user_id":
        return vocabs.users
    if table in ("item_id", "history_item"):
        return vocabs.items
    if table == "category":
        return vocabs.categories
    return vocabs.attributes.get(table.removeprefix("user_"))


def init_from(model: TwoTower, vocabs: Vocabularies, source: str | Path) -> InitReport:
    """Load `source`'s model into `model` in place (see module docstring); returns what was carried."""
    run = Run(source)
    if not run.folder.model.is_dir():
        raise MissingFileError(f"--init-from '{source}' is not a trained run folder (no model/)")
    source_model, source_vocabs = run.model, run.vocabs
    source_state = source_model.state_dict()
    report = InitReport()
    with torch.no_grad():
        for key, target in model.state_dict().items():
            value = source_state.get(key)
            if value is None:
                report.skipped[key] = "not in the source model"
                continue
            vocab = table_vocabulary(key, vocabs)
            if vocab is not None and value.shape[1:] == target.shape[1:]:
                report.remapped[key] = _copy_rows(target, value, vocab, table_vocabulary(key, source_vocabs))
            elif value.shape == target.shape:
                target.copy_(value)
                report.copied.append(key)
            else:
                report.skipped[key] = f"shape {tuple(value.shape)} in the source, {tuple(target.shape)} here"
    return report


def _copy_rows(target: torch.Tensor, value: torch.Tensor, vocab: Vocabulary, source_vocab: Vocabulary | None) -> int:
    if source_vocab is None:
        return 0
    common = sorted(set(vocab.ids[1:]) & set(source_vocab.ids[1:]))
    rows = np.concatenate([[0], vocab.encode(common)]) if common else np.zeros(1, np.int64)
    source_rows = np.concatenate([[0], source_vocab.encode(common)]) if common else np.zeros(1, np.int64)
    target[torch.from_numpy(rows)] = value[torch.from_numpy(source_rows)]
    return len(common)
