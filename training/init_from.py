"""Staged training: start a model from another run's towers.

Dense weights (encoders, projections, fusion, MLPs) are copied where their shapes match. Embedding
tables are copied row by row through the two runs' vocabularies, so an id known to both keeps its
trained vector even when the new data numbers it differently (another split, another shop). The source's
tables are read from its weights file a block of rows at a time, never whole: into the shards each
process holds, for a model whose tables are still on the meta device (training/table_init.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from tandemrec.data.vocab import Vocabulary
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.errors import MissingFileError
from tandemrec.run import Run
from tandemrec.training import distributed
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.serialization import WEIGHTS_FILE, require_files
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training.table_init import CarriedRows


@dataclass
class InitReport:
    copied: list[str] = field(default_factory=list)
    remapped: dict[str, int] = field(default_factory=dict)  # table key -> rows carried over
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why
    # Of tables still on the meta device: key -> (row numbers, their values), put into the shards once they
    # exist (training/table_init.py).
    carried: dict[str, CarriedRows] = field(default_factory=dict)

    def summary(self) -> str:
        rows = ", ".join(f"{k.split('.')[-2]}: {n}" for k, n in self.remapped.items())
        return (
            f"{len(self.copied)} tensors copied, id rows carried over ({rows}), "
            f"{len(self.skipped)} skipped" + (f": {self.skipped}" if self.skipped else "")
        )


def table_vocabulary(key: str, vocabs: Vocabularies) -> Vocabulary | None:
    """The vocabulary that numbers the rows of the embedding table behind a state-dict key."""
    if not distributed.is_table(key):
        return None
    table = distributed.table_name(key)
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
    weights, source_vocabs = run.folder.model / WEIGHTS_FILE, run.vocabs
    require_files(run.folder.model, (WEIGHTS_FILE,), "--init-from model")
    report = InitReport()
    try:
        with safe_open(str(weights), "pt") as source_state, torch.no_grad():
            known = set(source_state.keys())
            for key, target in model.state_dict().items():
                if key not in known:
                    report.skipped[key] = "not in the source model"
                    continue
                shape = tuple(source_state.get_slice(key).get_shape())
                vocab = table_vocabulary(key, vocabs)
                if vocab is not None and shape[1:] == tuple(target.shape[1:]):
                    rows, source_rows = _common_rows(vocab, table_vocabulary(key, source_vocabs))
                    carried = CarriedRows(rows, source_rows, weights, key)
                    if target.is_meta:
                        report.carried[key] = carried
                    else:
                        carried.copy_into(target, 0, 0)
                    report.remapped[key] = max(0, len(rows) - 1)
                elif shape == tuple(target.shape):
                    target.copy_(source_state.get_tensor(key))
                    report.copied.append(key)
                else:
                    report.skipped[key] = f"shape {shape} in the source, {tuple(target.shape)} here"
    except SafetensorError as err:
        raise EncoderLoadError(f"--init-from weights '{weights}' are unreadable: {err}") from err
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
