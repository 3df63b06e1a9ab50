"""The jobs behind the CLI verbs: train a run, index it, evaluate it (export: tandemrec/export_job.py).

Each job reads and writes one run folder, opened once as a `tandemrec.run.Run` (its paths:
`tandemrec.io.run_folder.RunFolder`), so the verbs can run one after another or alone on an existing run.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from tandemrec.config import DataConfig, RunConfig
from tandemrec.behaviour_job import fit_outcome_model
from tandemrec.config_schema import to_dict
from tandemrec.data.behaviour_pairs import BehaviourSplit, behaviour_events, behaviour_outputs, behaviour_split
from tandemrec.data.content import ItemContent
from tandemrec.data.dataset import Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.examples import EvalQueries
from tandemrec.data.given_split import read_given
from tandemrec.data.readers import READERS, read
from tandemrec.data.prepared import PreparedData
from tandemrec.io.atomic import atomic_write_json
from tandemrec.data.synthetic import SyntheticShopConfig, make_synthetic_shop
from tandemrec.data.validate import validate
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.io.run_folder import RunFolder
from tandemrec.retrieval.behaviour_eval import evaluate_behaviour
from tandemrec.run import Run, item_content
from tandemrec.run_embeddings import RunEmbeddings, embed_items, embed_run
from tandemrec.job_group import is_writer, job_group, writer_alone
from tandemrec.errors import ArgumentError, MissingFileError
from tandemrec.plots import grouped_bars
from tandemrec.retrieval.baseline_split import split_baselines
from tandemrec.retrieval.cold_start import cold_rows
from tandemrec.retrieval.embeddings import export_embeddings
from tandemrec.retrieval.evaluate import evaluate
from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.index import ItemIndex
from tandemrec.retrieval.index_build import build_tuned_index
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run_lock import writes_run
from tandemrec.towers.behaviour_head import BehaviourHead
from tandemrec.towers.outcome_model import OUTCOME_MODEL
from tandemrec.towers.config import Cardinalities
from tandemrec.towers.inference import embed
from tandemrec.towers.text_encoder import load_tokenizer
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training import distributed
from tandemrec.training.behaviour_head_fit import fit_behaviour_head
from tandemrec.training.checkpoint import CheckpointError, Checkpoints
from tandemrec.training.behaviour_config import BehaviourConfig
from tandemrec.training.init_from import init_from
from tandemrec.training.table_init import TableInit
from tandemrec.training.frozen_features import cache_frozen_backbones
from tandemrec.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)


def load_dataset(config: DataConfig, run: RunFolder) -> Dataset:
    """The dataset a config names, validated (refusals reported), filtered to the configured events."""
    if config.split.files:  # a given split, one path per part
        dataset = read_given(config.source, config.split, config.mapping)
    elif config.source == "synthetic":
        dest = Path(config.path) if config.path else run.root / "shop"
        dataset = make_synthetic_shop(dest, SyntheticShopConfig(**config.synthetic))
    elif config.source in READERS:
        options = {"mapping": config.mapping} if config.source == "generic" else {}
        dataset = read(config.source, _existing(config.path, f"data.path (the {config.source} files)"), **options)
    else:  # "dataset": the config allows nothing else
        dataset = Dataset.load(_existing(config.path, "data.path (a dataset folder)"))
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
        raise MissingFileError(f"{what} '{path}' does not exist")
    return Path(path)


@writes_run
def train(config: RunConfig, run_dir: str | Path, progress: bool = True, resume: bool = False) -> TrainResult:
    """Prepare the data, build the towers and train; writes config, vocabularies, dataset and model.

    Under torchrun every process runs this; rank 0 writes the run's files, the others read them.
    `resume` continues from the run's latest checkpoint, which must have been made with the same
    settings: that is checked before anything in the run is written.
    """
    run = Run(run_dir, config)
    env = distributed.init(config.train.device, config.train.cpu_threads)
    try:
        if resume:
            _check_resumable(config, run.folder)
        elif env.rank == 0:
            run.root.mkdir(parents=True, exist_ok=True)
            # The run's own copy of the dataset is what everything reads, so that its content cache (decoded
            # pixels, token ids) lives in the run and serves index and evaluate too.
            load_dataset(config.data, run.folder).save(run.folder.dataset)
        torch.distributed.barrier()
        data = run.data
        resolved = sized(config, data.vocabs)
        if env.rank == 0 and not resume:
            atomic_write_json(run.folder.config, to_dict(resolved))
            data.vocabs.save(run.folder.vocab)
        torch.manual_seed(config.train.seed)  # the same initial model on every rank, and on every run
        # Tables on the meta device: each process materialises only its shards (training/table_init.py).
        model = TwoTower(resolved.model, device=torch.device("meta"))
        table_init = TableInit(config.train.seed)
        if config.train.init_from and not resume:
            report = init_from(model, data.vocabs, config.train.init_from)
            table_init.carried = report.carried
            log.info("init from %s: %s", config.train.init_from, report.summary())
        tokenizer = load_tokenizer(resolved.model.item.text.name_or_path) if resolved.model.item.text else None
        content = item_content(model, data, tokenizer, progress and env.rank == 0)
        trainer = Trainer(
            model, data, content, config.train, run.folder, tokenizer, progress, fingerprint(config), resume, table_init
        )
        result = trainer.fit()
        if env.rank == 0:
            log.info(result.placement.summary())
        if config.behaviour.enabled and env.rank == 0:
            fit_run_behaviour(run, config.behaviour, content, progress)
        return result
    finally:
        distributed.shutdown(env)


def sized(config: RunConfig, vocabs: Vocabularies) -> RunConfig:
    """The config with the model's table sizes taken from the vocabularies, or the configured
    `model.sizes` where larger (tables sized ahead for a catalogue or user base that will grow)."""
    floor = config.model.sizes
    sizes = Cardinalities(
        users=max(len(vocabs.users), floor.users),
        items=max(len(vocabs.items), floor.items),
        categories=max(len(vocabs.categories), floor.categories),
        user_attributes={name: max(len(v), floor.user_attributes.get(name, 0)) for name, v in vocabs.attributes.items()},
    )
    return dataclasses.replace(config, model=dataclasses.replace(config.model, sizes=sizes))


# Settings that may change between a checkpoint and its resumption: how long, where and how often.
RESUMABLE_CHANGES = (
    "epochs", "patience", "device", "sharding", "table_sharding", "checkpoint_every", "keep_checkpoints",
    "encode_batch_size", "init_from", "cpu_threads", "max_memory_per_process", "loader_workers", "prefetch_table_inputs",
)


def fingerprint(config: RunConfig) -> dict:
    """What a checkpoint must have been made with to be resumed: the data, model and training settings,
    but for those in RESUMABLE_CHANGES."""
    train = {k: v for k, v in to_dict(config.train).items() if k not in RESUMABLE_CHANGES}
    return {"data": to_dict(config.data), "model": to_dict(config.model), "train": train}


def _check_resumable(config: RunConfig, run: RunFolder) -> None:
    for needed in (run.dataset, run.config, run.vocab):
        if not needed.exists():
            raise CheckpointError(f"cannot resume: run folder '{run.root}' has no {needed.name}")
    checkpoints = Checkpoints(run.checkpoints, fingerprint(config))
    latest = checkpoints.latest()
    if latest is None:
        raise CheckpointError(f"cannot resume: no complete checkpoint in '{run.checkpoints}'")
    checkpoints.check(latest)


@writes_run
def build_index(
    run_dir: str | Path, config: IndexConfig | None = None, batch_size: int = 256, progress: bool = False
) -> ItemIndex | None:
    """Embed the catalogue and the users, export both as Parquet, and build the index `config` asks for
    (default: the run config's [index]), its recall@10 measured on the users' embeddings; then the search
    state (RUN/search/: item text features, score weights chosen on validation queries). `progress` shows
    the embedding's and the index build's bars. Under torchrun the processes load the model with its
    tables sharded over them and embed together; process 0 builds and writes the index, then all choose
    the search weights together (the validation events' users embedded through the shards) and process 0
    writes them (the others return None): tandemrec/job_group.py."""
    from tandemrec.search_job import write_search_state  # here: search_job uses this module

    run = Run(run_dir, shard_tables=True)
    config = config or run.config.index
    with job_group():
        vectors = embed_run(run, batch_size, progress, shared=True)
        index = writer_alone(lambda: _write_index(run, vectors, config, progress))
        write_search_state(run)
    return index


def _write_index(run: Run, vectors: RunEmbeddings, config: IndexConfig, progress: bool) -> ItemIndex:
    """The index job's files but the search state: both exports (Parquet) and the tuned index."""
    export_embeddings(run.folder.embeddings, "items", vectors.item_ids, vectors.items, vectors.model_hash)
    export_embeddings(run.folder.embeddings, "users", vectors.user_ids, vectors.users, vectors.model_hash)
    index = build_tuned_index(
        vectors.items, vectors.item_ids, vectors.users, config, {"model_hash": vectors.model_hash}, progress=progress
    )
    index.save(run.folder.index)
    return index


@writes_run
def evaluate_run(run_dir: str | Path, ks: list[int] | None = None, part: str = "test", progress: bool = False) -> dict:
    """Test-split metrics of the model and its references (popularity, content-kNN, random, and EASE and
    item-kNN tuned on validation: see retrieval/baseline_split.py), for all, warm and cold targets, the new-arrivals shelf and cold exposure, written to metrics.json and a bar plot.
    `part="valid"` measures the validation part instead, into metrics_valid.json (no plot): what settings
    are chosen on, so that the test part is looked at once. `progress` shows the embedding and ranking bars.
    Under torchrun the processes load the model with its tables sharded over them and embed the evaluated
    users together; process 0 ranks them and the references while the others wait, then all measure the
    behaviour head and product search together (their users and queries go through the shards), and
    process 0 writes (the others return {}): tandemrec/job_group.py.

    Cold items are all items without training events: the held-out ones and the new arrivals alike."""
    if part not in ("test", "valid"):
        raise ArgumentError(f"part must be 'test' or 'valid', got '{part}'")
    run = Run(run_dir, shard_tables=True)
    config, data = run.config, run.data
    queries = data.test if part == "test" else data.valid
    with job_group():
        retriever = Retriever.load(run)
        users = retriever.embed_users(queries.users, queries.times, progress and is_writer(), "evaluated users", shared=True)
        metrics = writer_alone(lambda: _ranking_metrics(run, retriever, queries, ks, part, users, progress))
        if part == "valid":
            return metrics or {}
        if retriever.behaviour is not None:
            split = behaviour_pairs(data, config, config.behaviour)
            behaviour = evaluate_behaviour(retriever, split.test, split.outputs, data.test, shared=True)
        from tandemrec.search_job import evaluate_search  # here: search_job uses this module

        search = evaluate_search(retriever, data, config)
    if not is_writer():
        return {}
    if retriever.behaviour is not None:
        metrics["behaviour"] = behaviour
    metrics["search"] = search
    atomic_write_json(run.folder.metrics, metrics)
    plot_metrics(metrics, run.folder.plots / "metrics.png")
    return metrics


def _ranking_metrics(
    run: Run, retriever: Retriever, queries: EvalQueries, ks: list[int] | None, part: str, users: np.ndarray, progress: bool
) -> dict:
    """`evaluate_run`'s ranking metrics of the model (its `users` vectors already embedded) and of the
    references, which need no table lookup; the validation part's are written to metrics_valid.json."""
    config, data = run.config, run.data
    counts = data.item_frequencies()[1:]
    text = catalogue_text_features(run.model, run.content, progress=progress)
    refit = config.data.split.refit and part == "test"  # as the model was fitted for its test
    baselines, tuned = split_baselines(data, retriever.seen_rows, refit, progress)
    metrics = evaluate(
        retriever, queries, counts, ks or config.eval.ks, cold_rows(counts), text, baselines, progress, users
    )
    metrics["baseline_settings"] = {t.name: t.report() for t in tuned}
    if part == "valid":
        atomic_write_json(run.folder.metrics_valid, metrics)
    return metrics


def catalogue_text_features(
    model: TwoTower, content: ItemContent, batch_size: int = 256, progress: bool = False
) -> np.ndarray | None:
    """The text space of the catalogue (`content`: the model's, as `Run.content`) for the content-kNN
    reference and product search: the pooled text-backbone output of each index row (row r: item index
    r + 1), zero for an item without text; None without a text encoder.

    A frozen encoder's outputs come from the frozen-backbone cache (the same ones training used, kept in
    `content` once computed); a trained one is run here, as it is now, since its outputs changed during
    training (only its trained top layers, from its frozen bottom's cached states, when only those
    trained). `progress` shows a bar."""
    tower = model.item_tower
    if tower.text is None:
        return None
    if tower.text.frozen or tower.text.prefix_layers:
        cache_frozen_backbones(tower, content, batch_size, torch.device("cpu"), progress)
    features = content.text_features
    if features is None:
        tower.eval()
        features = embed(tower.text_output, content.batches(batch_size), torch.device("cpu"), progress, len(content), "text")
    features = features.float().numpy().copy()
    if content.has_text is not None:
        features[~content.has_text.numpy()] = 0.0  # as the tower masks it: no text, no text features
    return features


def plot_metrics(metrics: dict, path: Path) -> None:
    """Bars of each @k metric (coverage aside) for the model and its references, all test targets."""
    names = [k for k in metrics["tandemrec"] if "@" in k and not k.startswith("coverage")]
    systems = [s for s in ("tandemrec", "popularity", "content_knn") if s in metrics]
    grouped_bars(
        names,
        {system: [metrics[system][n] for n in names] for system in systems},
        "test split, full ranking, seen items excluded",
        path,
    )


def behaviour_pairs(data: PreparedData, config: RunConfig, behaviour: BehaviourConfig) -> BehaviourSplit:
    """The behaviour head's outputs and labelled pairs of each part, from a run's prepared data."""
    events = behaviour_events(data.dataset, data.vocabs, config.data.split, config.data.domains)
    return behaviour_split(
        events,
        behaviour_outputs(events, config.data.domains),
        data.item_frequencies(),
        data.cold_items,
        behaviour.negatives,
        behaviour.popular_negatives,
        behaviour.max_pairs,
        behaviour.seed,
    )


@writes_run
def train_behaviour(run_dir: str | Path, behaviour: BehaviourConfig | None = None, progress: bool = False) -> BehaviourHead:
    """Fit the behaviour head on a trained run's frozen towers and write RUN/behaviour/ (head.safetensors,
    head.json); `behaviour` defaults to the run config's [behaviour]; `progress` shows the embedding bars."""
    run = Run(run_dir)
    return fit_run_behaviour(run, behaviour or run.config.behaviour, run.content, progress)


def fit_run_behaviour(run: Run, behaviour: BehaviourConfig, content: ItemContent, progress: bool = False) -> BehaviourHead:
    """Fit the head on the run's saved towers (the best epoch) over its prepared data and `content`
    (training's own at the end of `train`, so its cached frozen-backbone outputs are reused) and save it
    in RUN/behaviour/; `progress` shows the bars of embedding the items and the pairs' users."""
    model, data, config = run.model, run.data, run.config
    split = behaviour_pairs(data, config, behaviour)
    items = embed_items(model, content, progress=progress)
    head = fit_behaviour_head(model.user_tower, data.features, items, split, behaviour, run.model_hash, progress)
    head.save_pretrained(run.folder.behaviour)
    if run.folder.index.exists():  # the outcome model trains on the retriever's own candidates
        (run.folder.behaviour / OUTCOME_MODEL).unlink(missing_ok=True)  # the old one may belong to other towers
        fit_outcome_model(run, Retriever.load(run), behaviour, progress)
    else:
        log.info("behaviour: no index yet, so no outcome model: run `tandemrec index RUN`, then `tandemrec behaviour RUN`")
    return head
