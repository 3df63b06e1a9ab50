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
    # Of tables still on the meta device: key -> (row numbers, their values), put into the shards once they
    # exist (training/table_init.py).
    carried: dict[str, tuple[np.ndarray, torch.Tensor]] = field(default_factory=dict)

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
    """Load `source`'s model into `model` in place (see module docstring); returns what was carried. The
    rows of tables built on the meta device are returned in `carried` instead."""
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
                rows, source_rows = _common_rows(vocab, table_vocabulary(key, source_vocabs))
                if target.is_meta:
                    report.carried[key] = (rows, value[torch.from_numpy(source_rows)])
                else:
                    target[torch.from_numpy(rows)] = value[torch.from_numpy(source_rows)]
                report.remapped[key] = max(0, len(rows) - 1)
            elif value.shape == target.shape:
                target.copy_(value)
                report.copied.append(key)
            else:
                report.skipped[key] = f"shape {tuple(value.shape)} in the source, {tuple(target.shape)} here"
    return report


def _common_rows(vocab: Vocabulary, source_vocab: Vocabulary | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the ids both vocabularies know, here and in the source, the unknown id's row 0 first
    (none when the source has no such vocabulary)."""
    if source_vocab is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    common = sorted(set(vocab.ids[1:]) & set(source_vocab.ids[1:]))
    if not common:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    return np.concatenate([[0], vocab.encode(common)]), np.concatenate([[0], source_vocab.encode(common)])
