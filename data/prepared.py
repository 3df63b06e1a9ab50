"""A dataset turned into what training and evaluation consume: split, vocabularies, log, examples.

Everything here is in index space and built from one out-of-core pass over the interactions (see
data/encoded.py), so a dataset whose interactions are a Parquet scan (`Dataset.scan`) of tens of millions
of events prepares in a few GB.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.data.content import ItemContent, Tokenize, build_item_content
from tandemrec.data.content_cache import CACHE_DIR
from tandemrec.data.dataset import Dataset
from tandemrec.data.domains import TARGET, DomainConfig
from tandemrec.data.encoded import PART, encode_events
from tandemrec.data.examples import EvalQueries, Examples, examples_of, queries_of
from tandemrec.data.features import EventLog, UserFeatures, to_micros
from tandemrec.data.given_split import check_given
from tandemrec.data.split import SplitConfig, cold_item_indices
from tandemrec.data.vocabularies import Vocabularies


@dataclass
class PreparedData:
    dataset: Dataset
    events: pl.DataFrame  # every event in index space with its `part` (and domain flags), see encode_events
    vocabs: Vocabularies
    log: EventLog  # every event of every part: features look strictly before their time
    features: UserFeatures
    train: Examples
    valid: EvalQueries
    test: EvalQueries
    cold_items: np.ndarray  # item indices kept out of training (cold start), sorted

    def item_frequencies(self) -> np.ndarray:
        """Training-event count of each item index (index 0 included, always 0)."""
        return np.bincount(self.train.items, minlength=len(self.vocabs.items)).astype(np.float64)

    def catalogue(self) -> pl.DataFrame:
        """The items table in vocabulary order: row r is item index r + 1."""
        order = pl.DataFrame({"item_id": self.vocabs.items.ids[1:]})
        return order.join(self.dataset.items, on="item_id", how="left", maintain_order="left")

    def content(
        self,
        tokenize: Tokenize | None,
        max_length: int,
        image_size: int | None,
        progress: bool = False,
        tokenizer_key: str | None = None,
    ) -> ItemContent:
        """Tokens and pixels of the catalogue, cached in the dataset folder's `cache/` when the dataset is
        a writable dataset folder (token ids only when `tokenizer_key` says which tokenizer made them).

        An item without training events gets id 0 (unknown): its id embedding was never trained, so the
        item tower masks it and embeds the item from its content alone, as it does a new item.
        """
        catalogue = self.catalogue()
        category = (
            catalogue["category"].fill_null("") if "category" in catalogue.columns else pl.Series([""] * catalogue.height)
        )
        ids = self.vocabs.items.encode(catalogue["item_id"])
        return build_item_content(
            catalogue,
            np.where(self.item_frequencies()[ids] > 0, ids, 0),
            self.vocabs.categories.encode(category, unknown="zero"),
            self.dataset.root,
            tokenize,
            max_length,
            image_size,
            progress,
            cache=content_cache_dir(self.dataset.root),
            tokenizer_key=tokenizer_key,
        )


def prepare(
    dataset: Dataset,
    split_config: SplitConfig,
    history_len: int,
    domains: DomainConfig | None = None,
    sequence: bool = False,
) -> PreparedData:
    """Vocabularies, the encoded and split events, the event log of user histories, training examples
    (of `training_parts`, with domain masks when `domains` is given) and validation/test queries (of
    target events only when a target domain is configured: the transfer setting predicts the target).
    `sequence`: user histories as sequences (see `UserFeatures`)."""
    if split_config.given:
        check_given(dataset.interactions, split_config.column)
    vocabs = Vocabularies.build(dataset)
    events = encode_events(dataset.interactions, vocabs, split_config, domains)
    cold = cold_item_indices(len(vocabs.items) - 1, split_config.cold_items, split_config.seed)
    log = EventLog(events["user_id"].to_numpy(), events["item_id"].to_numpy(), to_micros(events["timestamp"]))
    features = UserFeatures(
        log, vocabs.user_attribute_matrix(dataset.users), sorted(vocabs.attributes), history_len, sequence
    )
    train = events.filter(pl.col(PART).is_in(training_parts(split_config.refit)) & ~pl.col("item_id").is_in(cold))
    evaluated = events.filter(pl.col(TARGET)) if domains is not None and domains.has_target else events
    return PreparedData(
        dataset=dataset,
        events=events,
        vocabs=vocabs,
        log=log,
        features=features,
        train=examples_of(train),
        valid=queries_of(evaluated.filter(pl.col(PART) == "valid")),
        test=queries_of(evaluated.filter(pl.col(PART) == "test")),
        cold_items=cold,
    )


def training_parts(refit: bool) -> tuple[str, ...]:
    """The parts a model learns from: training, and with `refit` (the final fit) validation too."""
    return ("train", "valid") if refit else ("train",)


def content_cache_dir(root: Path | None) -> Path | None:
    """`root/cache` when root is a dataset folder this process may write to, else None (no caching:
    a source folder such as a shared MovieLens download is never written into)."""
    if root is None or not (root / "manifest.json").is_file() or not os.access(root, os.W_OK):
        return None
    return root / CACHE_DIR
