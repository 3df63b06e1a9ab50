"""A dataset turned into what training and evaluation consume: split, vocabularies, log, examples."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tandemrec.data.content import ItemContent, Tokenize, build_item_content
from tandemrec.data.dataset import Dataset
from tandemrec.data.examples import EvalQueries, Examples, eval_queries, examples_from
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.data.split import Split, SplitConfig, temporal_split
from tandemrec.data.vocabularies import Vocabularies


@dataclass
class PreparedData:
    dataset: Dataset
    split: Split
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

    def content(self, tokenize: Tokenize | None, max_length: int, image_size: int | None, progress: bool = False) -> ItemContent:
        catalogue = self.catalogue()
        category = (
            catalogue["category"].fill_null("") if "category" in catalogue.columns else pl.Series([""] * catalogue.height)
        )
        return build_item_content(
            catalogue,
            self.vocabs.items.encode(catalogue["item_id"]),
            self.vocabs.categories.encode(category, unknown="zero"),
            self.dataset.root,
            tokenize,
            max_length,
            image_size,
            progress,
        )


def prepare(dataset: Dataset, split_config: SplitConfig, history_len: int) -> PreparedData:
    split = temporal_split(dataset.interactions, split_config.valid_last, split_config.test_last, split_config.min_train)
    vocabs = Vocabularies.build(dataset)
    cold = cold_item_indices(len(vocabs.items) - 1, split_config.cold_items, split_config.seed)
    train = split.train.filter(~pl.col("item_id").is_in(vocabs.items.decode(cold)))
    log = EventLog.from_frame(dataset.interactions, vocabs.users, vocabs.items)
    features = UserFeatures(
        log, vocabs.user_attribute_matrix(dataset.users), sorted(vocabs.attributes), history_len
    )
    return PreparedData(
        dataset=dataset,
        split=split,
        vocabs=vocabs,
        log=log,
        features=features,
        train=examples_from(train, vocabs.users, vocabs.items),
        valid=eval_queries(split.valid, vocabs.users, vocabs.items),
        test=eval_queries(split.test, vocabs.users, vocabs.items),
        cold_items=cold,
    )


def cold_item_indices(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of item indices 1..n_items whose events never become training examples."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.split.cold_items must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1, n_items + 1), size=int(round(fraction * n_items)), replace=False))
