"""The jobs behind the CLI verbs: train a run, export and index it, evaluate it.

Each job reads and writes one run folder (see `tandemrec.data.run_folder.RunFolder`), so the verbs
can run one after another or alone on an existing run.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tandemrec.config import DataConfig, RunConfig, read_run_config
from tandemrec.data.atomic import atomic_write_json
from tandemrec.data.content import ItemContent
from tandemrec.data.content_cache import tokenizer_fingerprint
from tandemrec.data.dataset import Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.readers import READERS, read
from tandemrec.data.prepared import PreparedData, prepare
from tandemrec.data.run_folder import RunFolder
from tandemrec.data.synthetic import SyntheticShopConfig, make_synthetic_shop
from tandemrec.data.validate import validate
from tandemrec.plots import grouped_bars
from tandemrec.retrieval.embeddings import export_embeddings
from tandemrec.retrieval.evaluate import evaluate
from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_build import build_tuned_index
from tandemrec.retrieval.retriever import Retriever
from tandemrec.towers.config import Cardinalities, to_dict
from tandemrec.towers.inference import embed, frozen_backbone_features
from tandemrec.towers.serialization import TOKENIZER_DIR, load_model, model_hash
from tandemrec.towers.text_encoder import load_tokenizer, make_tokenize
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training.init_from import init_from
from tandemrec.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)
EXPORTS = ("items", "users")


def load_dataset(config: DataConfig, run: RunFolder) -> Dataset:
    """The dataset a config names, validated (refusals reported), filtered to the configured events."""
    if config.source == "synthetic":
        dest = Path(config.path) if config.path else run.root / "shop"
        dataset = make_synthetic_shop(dest, SyntheticShopConfig(**config.synthetic))
    elif config.source in READERS:
        options = {"mapping": config.mapping} if config.source == "generic" else {}
        dataset = read(config.source, _existing(config.path, f"data.path (the {config.source} files)"), **options)
    elif config.source == "dataset":
        dataset = Dataset.load(_existing(config.path, "data.path (a dataset folder)"))
    else:
        sources = ", ".join(["synthetic", "dataset", *READERS])
        raise DataError(f"data.source must be one of {sources}, got '{config.source}'")
    dataset, report = validate(dataset)
    log.info("validation: %s", report.summary())
    dataset = dataset.collect()
    if config.events is not None:
        dataset = dataclasses.replace(
            dataset, interactions=dataset.interactions.filter(dataset.interactions["event"].is_in(config.events))
        )
        if dataset.interactions.is_empty():
            raise DataError(f"no interactions with data.events {config.events}")
    return dataset


def _existing(path: str | None, what: str) -> Path:
    if not path:
        raise DataError(f"{what} is not set")
    if not Path(path).exists():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    return Path(path)


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


def train(config: RunConfig, run_dir: str | Path, progress: bool = True) -> TrainResult:
    """Prepare the data, build the towers and train; writes config, vocabularies, dataset and model."""
    run = RunFolder(Path(run_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    # The run's own copy of the dataset is what everything reads, so that its content cache (decoded
    # pixels, token ids) lives in the run and serves index and evaluate too.
    dataset = Dataset.load(load_dataset(config.data, run).save(run.dataset))
    data = prepare(dataset, config.data.split, config.model.user.history_len, config.data.domains)
    vocabs = data.vocabs
    sizes = Cardinalities(
        users=len(vocabs.users),
        items=len(vocabs.items),
        categories=len(vocabs.categories),
        user_attributes={name: len(v) for name, v in vocabs.attributes.items()},
    )
    model_config = dataclasses.replace(config.model, sizes=sizes)
    config = dataclasses.replace(config, model=model_config)
    atomic_write_json(run.config, to_dict(config))
    vocabs.save(run.vocab)
    model = TwoTower(model_config)
    if config.train.init_from:
        log.info("init from %s: %s", config.train.init_from, init_from(model, vocabs, config.train.init_from).summary())
    tokenizer = load_tokenizer(model_config.item.text.name_or_path) if model_config.item.text else None
    content = item_content(model, data, tokenizer, progress)
    trainer = Trainer(model, data, content, config.train, run.model, run.train_metrics, tokenizer, progress)
    return trainer.fit()


def run_tokenizer(run: RunFolder):
    folder = run.model / TOKENIZER_DIR
    return load_tokenizer(str(folder)) if folder.exists() else None


@dataclasses.dataclass
class RunEmbeddings:
    """Item and user vectors computed by a run's saved model, in vocabulary order (index 0 left out)."""

    item_ids: list[str]
    items: np.ndarray
    user_ids: list[str]
    users: np.ndarray
    model_hash: str


def embed_run(run_dir: str | Path, batch_size: int = 256) -> RunEmbeddings:
    """Embed the catalogue (from its content) and every user (all their events) with the run's model."""
    run = RunFolder(Path(run_dir))
    config = read_run_config(run.config)
    model = load_model(run.model)
    data = prepare(Dataset.load(run.dataset), config.data.split, model.config.user.history_len, config.data.domains)
    content = item_content(model, data, run_tokenizer(run))
    image, text = frozen_backbone_features(model.item_tower, content.batches(batch_size), torch.device("cpu"))
    content.image_features, content.text_features = image, text
    items = embed(model.item_tower, content.batches(batch_size), torch.device("cpu")).numpy()
    users = np.arange(1, len(data.vocabs.users))
    user_vectors = embed(model.user_tower, data.features.batches(users, None, batch_size), torch.device("cpu")).numpy()
    return RunEmbeddings(
        data.vocabs.items.ids[1:], items, data.vocabs.users.ids[1:], user_vectors, model_hash(run.model)
    )


def export_run(
    run_dir: str | Path,
    what: Sequence[str] = EXPORTS,
    formats: Sequence[str] = ("parquet",),
    batch_size: int = 256,
) -> list[Path]:
    """Write RUN/embeddings/<what>.<format> (items and/or users) with their manifest entries."""
    unknown = sorted(set(what) - set(EXPORTS))
    if unknown or not what:
        raise ValueError(f"what must name some of {list(EXPORTS)}, got {list(what)}")
    vectors = embed_run(run_dir, batch_size)
    tables = {"items": (vectors.item_ids, vectors.items), "users": (vectors.user_ids, vectors.users)}
    folder = RunFolder(Path(run_dir)).embeddings
    return [
        path
        for name in what
        for path in export_embeddings(folder, name, *tables[name], vectors.model_hash, tuple(formats))
    ]


def build_index(run_dir: str | Path, config: IndexConfig | None = None, batch_size: int = 256) -> ItemIndex:
    """Embed the catalogue and the users, export both as Parquet, and build the index `config` asks for
    (default: the run config's [index]), its recall@10 measured on the users' embeddings."""
    run = RunFolder(Path(run_dir))
    config = config or read_run_config(run.config).index
    vectors = embed_run(run_dir, batch_size)
    export_embeddings(run.embeddings, "items", vectors.item_ids, vectors.items, vectors.model_hash)
    export_embeddings(run.embeddings, "users", vectors.user_ids, vectors.users, vectors.model_hash)
    index = build_tuned_index(
        vectors.items, vectors.item_ids, vectors.users, config, {"model_hash": vectors.model_hash}
    )
    index.save(run.index)
    return index


def evaluate_run(run_dir: str | Path, ks: list[int] | None = None) -> dict:
    """Test-split metrics of the model and of popularity, written to metrics.json and a bar plot."""
    run = RunFolder(Path(run_dir))
    config = read_run_config(run.config)
    retriever = Retriever.load(run.root)
    history_len = retriever.model.config.user.history_len
    data = prepare(Dataset.load(run.dataset), config.data.split, history_len, config.data.domains)
    counts = data.item_frequencies()[1:]
    metrics = evaluate(retriever, data.test, counts, ks or config.eval.ks, data.cold_items - 1)
    atomic_write_json(run.metrics, metrics)
    plot_metrics(metrics, run.plots / "metrics.png")
    return metrics


def plot_metrics(metrics: dict, path: Path) -> None:
    names = [k for k in metrics["tandemrec"] if "@" in k and not k.startswith("coverage")]
    grouped_bars(
        names,
        {system: [metrics[system][n] for n in names] for system in ("tandemrec", "popularity")},
        "test split, full ranking, seen items excluded",
        path,
    )
