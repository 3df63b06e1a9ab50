"""RetailRocket e-commerce dataset (Kaggle): events.csv, item_properties_part*.csv, category_tree.csv.

Events are views, add-to-carts and transactions with millisecond timestamps; they become the canonical
events "view", "cart" and "purchase", so that one domain config (`data.domains`) serves every shop. Item
properties are a time-stamped key/value log whose values are hashed, except `categoryid`: an item's
category is its latest `categoryid`, with its parent and top-level category (from category_tree.csv) as
categorical features. RetailRocket has no titles, texts or images: the item tower sees ids and
categories only. The property files are accounted as their own table (`item_properties`) in the report;
events of items without properties are refused by validation as unknown items.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.intake import Intake, TableSource, without_refused
from tandemrec.data.readers.csv_table import scan_csv
from tandemrec.data.readers.files import require_folder
from tandemrec.data.readers.multi import concat_files
from tandemrec.data.readers.parse import TableBuilder, epoch, integer_id, mapped, text

EVENTS = {"view": "view", "addtocart": "cart", "transaction": "purchase"}
_PROPERTIES = "item_properties"


def read_retailrocket(path: str | Path) -> Dataset:
    """Read a RetailRocket folder: `events.csv`, `item_properties_part*.csv`, optional `category_tree.csv`."""
    folder = require_folder(Path(path), "the RetailRocket folder (events.csv, item_properties_part*.csv)")
    interactions, events = _events(folder / "events.csv")
    properties, source = _properties(folder)
    items = _items(without_refused(properties, source), _category_tree(folder / "category_tree.csv"))
    root = folder.resolve()
    intake = Intake({"interactions": events}, {_PROPERTIES: (properties, source)})
    return Dataset(interactions, items, None, root=root, name=root.name, intake=intake)


def _events(file: Path) -> tuple[pl.LazyFrame, TableSource]:
    frame, rules, locate = scan_csv(file, ["timestamp", "visitorid", "event", "itemid"], "RetailRocket events")
    builder = (
        TableBuilder(rules=rules)
        .parsed("user_id", "visitorid", integer_id("visitorid"), "unparsable id")
        .parsed("item_id", "itemid", integer_id("itemid"), "unparsable id")
        .parsed("timestamp", "timestamp", epoch("timestamp", "ms"), "unparsable timestamp")
        .parsed("event", "event", mapped("event", EVENTS), f"unknown event type (expected {', '.join(EVENTS)})")
        .expr("value", pl.lit(None, pl.Float64))
    )
    return builder.build(frame, file.name, "row", locate)


def _properties(folder: Path) -> tuple[pl.LazyFrame, TableSource]:
    """The property rows of every part file (each row tagged with its file), and their source."""
    files = sorted(folder.glob("item_properties_part*.csv")) or [folder / "item_properties.csv"]
    columns = ["timestamp", "itemid", "property", "value"]
    scans = [scan_csv(file, columns, "RetailRocket item properties") for file in files]
    frame, locate = concat_files([(file.name, plan, locate) for file, (plan, _, locate) in zip(files, scans)])
    builder = (
        TableBuilder(rules=scans[0][1])
        .parsed("item_id", "itemid", integer_id("itemid"), "unparsable id")
        .parsed("timestamp", "timestamp", epoch("timestamp", "ms"), "unparsable timestamp")
        .text("property", "property")
        .text("value", "value")
    )
    return builder.build(frame, ", ".join(f.name for f in files), "row", locate)


def _items(properties: pl.LazyFrame, tree: dict[str, dict[str, str]]) -> pl.DataFrame:
    """One item per item id in the property files: its latest category and that category's ancestors."""
    categories = (
        properties.filter(pl.col("property") == "categoryid")
        .group_by("item_id")
        .agg(pl.col("value").sort_by("timestamp").last().alias("category"))
    )
    items = properties.select("item_id").unique().join(categories, on="item_id", how="left").sort("item_id")
    return items.collect(engine="streaming").select(
        "item_id",
        pl.lit(None, pl.String).alias("title"),
        pl.lit(None, pl.String).alias("text"),
        "category",
        pl.lit(None, pl.String).alias("image"),
        pl.col("category").replace_strict(tree["parent"], default=None).alias("parent_category"),
        pl.col("category").replace_strict(tree["top"], default=None).alias("top_category"),
    )


def _category_tree(file: Path) -> dict[str, dict[str, str]]:
    """category -> its parent, and category -> its top-level ancestor (itself for a top-level category);
    empty when the file is absent."""
    if not file.exists():
        return {"parent": {}, "top": {}}
    frame, _, locate = scan_csv(file, ["categoryid", "parentid"], "the RetailRocket category tree")
    source = TableSource(file.name, locate=locate)
    tree = source.collect(frame.select(text("categoryid").alias("child"), text("parentid").alias("parent")))
    parent = {c: p for c, p in tree.iter_rows() if c is not None and p is not None}
    top = {}
    for category in tree["child"].drop_nulls().to_list():
        node, seen = category, {category}
        while node in parent and parent[node] not in seen:  # a cycle in the tree stops the climb
            node = parent[node]
            seen.add(node)
        top[category] = node
    return {"parent": parent, "top": top}
