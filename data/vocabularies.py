"""All the id vocabularies of a run, built from a dataset and saved with the run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.vocab import Vocabulary


@dataclass
class Vocabularies:
    users: Vocabulary
    items: Vocabulary
    categories: Vocabulary
    attributes: dict[str, Vocabulary]  # user attribute name -> its values

    @classmethod
    def build(cls, dataset: Dataset) -> "Vocabularies":
        """Every id of the dataset; interactions held as a plan are read for their distinct user ids only."""
        user_ids = dataset.interactions.lazy().select(pl.col("user_id").unique()).collect(engine="streaming")["user_id"]
        attributes = {}
        if dataset.users is not None:
            user_ids = pl.concat([user_ids, dataset.users["user_id"]])
            attributes = {
                name: Vocabulary.build(dataset.users[name].drop_nulls().to_list(), name=name)
                for name in dataset.user_attributes()
            }
        category = dataset.items["category"] if "category" in dataset.items.columns else pl.Series([], dtype=pl.String)
        return cls(
            users=Vocabulary.build(user_ids, name="users"),
            items=Vocabulary.build(dataset.items["item_id"], name="items"),
            categories=Vocabulary.build(category.drop_nulls(), name="categories"),
            attributes=attributes,
        )

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, vocab in self._named().items():
            vocab.save(folder / f"{name}.json")

    @classmethod
    def load(cls, folder: str | Path) -> "Vocabularies":
        folder = Path(folder)
        attributes = {
            p.stem.removeprefix("attribute_"): Vocabulary.load(p) for p in sorted(folder.glob("attribute_*.json"))
        }
        return cls(
            users=Vocabulary.load(folder / "users.json"),
            items=Vocabulary.load(folder / "items.json"),
            categories=Vocabulary.load(folder / "categories.json"),
            attributes=attributes,
        )

    def _named(self) -> dict[str, Vocabulary]:
        named = {"users": self.users, "items": self.items, "categories": self.categories}
        named.update({f"attribute_{k}": v for k, v in self.attributes.items()})
        return named

    def user_attribute_matrix(self, users: pl.DataFrame | None) -> np.ndarray:
        """(len(users vocab), n_attributes) attribute indices; users without a row get 0 (unknown)."""
        names = sorted(self.attributes)
        matrix = np.zeros((len(self.users), len(names)), dtype=np.int64)
        if users is None or not names:
            return matrix
        known = users.filter(pl.col("user_id").is_in(self.users.ids))
        rows = self.users.encode(known["user_id"])
        for col, name in enumerate(names):
            matrix[rows, col] = self.attributes[name].encode(known[name].fill_null(""), unknown="zero")
        return matrix
