"""`Run`: a run folder opened once, the one place that knows how its parts are read back.

Every job (index, export, evaluate, behaviour, profile, search state) and `Retriever.load` start from a
`Run`; each part is read on first use and kept, so one job that needs the model, the prepared data and
the catalogue's content in several steps reads and builds each once.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch.distributed as dist

from tandemrec.config import RunConfig, read_run_config
from tandemrec.data.content import ItemContent
from tandemrec.data.content_cache import tokenizer_fingerprint
from tandemrec.data.dataset import Dataset
from tandemrec.data.prepared import PreparedData, prepare
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.io.run_folder import RunFolder
from tandemrec.towers.serialization import TOKENIZER_DIR, model_hash
from tandemrec.towers.text_encoder import load_tokenizer, make_tokenize
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training.sharded_model import load_sharded


class Run:
    """A run folder's parts, each read (or built) on first use: `config`, `vocabs`, `dataset`, `data`
    (the prepared split: costly), `model`, `tokenizer`, `model_hash`, `content` (the catalogue's tokens
    and pixels for the model: costly). `folder` has the paths."""

    def __init__(self, root: str | Path, config: RunConfig | None = None, shard_tables: bool = False) -> None:
        """`config` stands in for RUN/config.json: training's own, before the run has one written.
        `shard_tables`: a job whose processes (torchrun) only embed with the model loads it with its tables
        sharded over them (see `model`)."""
        self.folder = RunFolder(Path(root))
        self._shard_tables = shard_tables
        self._sharded_by = None  # the wrapper holding a sharded model's shards
        if config is not None:
            self.config = config

    @property
    def root(self) -> Path:
        return self.folder.root

    @cached_property
    def config(self) -> RunConfig:
        """The resolved config the run saved (table sizes filled in)."""
        return read_run_config(self.folder.config)

    @cached_property
    def vocabs(self) -> Vocabularies:
        return Vocabularies.load(self.folder.vocab)

    @cached_property
    def dataset(self) -> Dataset:
        """The run's own copy of its dataset (its content cache serves every job of the run)."""
        return Dataset.load(self.folder.dataset)

    @cached_property
    def data(self) -> PreparedData:
        """The dataset split and encoded as the config says: what training, evaluation and embedding read."""
        config = self.config
        user = config.model.user
        return prepare(self.dataset, config.data.split, user.history_len, config.data.domains, user.sequence)

    @cached_property
    def model(self) -> TwoTower:
        """The saved model. With `shard_tables` inside a process group, its tables are sharded over the group
        as training shards them, each process reading only its shards (training/sharded_model.py): loading
        is then collective, and so is every table lookup (towers/inference.py), which ends with the group."""
        if self._shard_tables and dist.is_initialized():
            model, self._sharded_by = load_sharded(self.folder.model, self.config.train)
            return model
        return TwoTower.from_pretrained(self.folder.model)

    @cached_property
    def tokenizer(self):
        """The text encoder's tokenizer saved with the model; None for a model without text."""
        folder = self.folder.model / TOKENIZER_DIR
        return load_tokenizer(str(folder)) if folder.is_dir() else None

    @cached_property
    def model_hash(self) -> str:
        """sha256 of the model's weights: what the index, the head and the exports were made for."""
        return model_hash(self.folder.model)

    @cached_property
    def content(self) -> ItemContent:
        """The catalogue (row r: item index r + 1) as the saved model's encoders take it."""
        return item_content(self.model, self.data, self.tokenizer)


def item_content(model: TwoTower, data: PreparedData, tokenizer, progress: bool = False) -> ItemContent:
    """Tokens and pixels of the catalogue in the form this model's encoders take."""
    tower = model.item_tower
    text = model.config.item.text
    return data.content(
        make_tokenize(tokenizer) if tokenizer is not None else None,
        text.max_length if text else 0,
        tower.image.image_size if tower.image is not None else None,
        progress,
        tokenizer_key=tokenizer_fingerprint(tokenizer) if tokenizer is not None else None,
    )
