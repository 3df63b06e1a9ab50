"""H&M Personalized Fashion Recommendations (Kaggle, 2022): articles, customers, transactions, images.

The quirks of the real files: article ids are written without their leading zero in the CSVs
(108775015) but with it in the image names (images/010/0108775015.jpg), so ids are normalised to ten
digits; `t_dat` is a date, so a customer's purchases of one day tie (splits break ties by item id);
customer ids are 64-character hashes; some articles have no image (validation counts them). Every
transaction row is one event "purchase"; `price` (scaled by H&M) and `sales_channel_id` are checked but
left out of the tables: a price that is not a number, NaN or negative, or a channel other than 1 (store)
or 2 (online), marks a damaged row, which is refused and counted. The customers' `postal_code` is left
out too (hundreds of thousands of values, mostly one customer each).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.intake import HELPER_PREFIX, Intake, TableSource
from tandemrec.data.readers.csv_table import scan_csv
from tandemrec.data.readers.files import require_folder
from tandemrec.data.readers.parse import TableBuilder, age_band, datetime_text, integer_id, mapped, number, text

ARTICLE_ID_DIGITS = 10
_ITEM_FEATURES = {
    "product_group": "product_group_name",
    "colour": "colour_group_name",
    "department": "department_name",
    "index": "index_name",
    "section": "section_name",
    "garment_group": "garment_group_name",
}
_USER_FEATURES = {
    "club_member_status": "club_member_status",
    "fashion_news_frequency": "fashion_news_frequency",
    "fn": "FN",
    "active": "Active",
}
SALES_CHANNELS = ("1", "2")  # store, online
# Checked, then dropped with the other helper columns by validation.
_PRICE = f"{HELPER_PREFIX}price"
_CHANNEL = f"{HELPER_PREFIX}sales_channel"
_DESCRIBED = ("product_type_name", "colour_group_name", "graphical_appearance_name")


def read_hm(path: str | Path) -> Dataset:
    """Read an H&M folder: `articles.csv`, `transactions_train.csv`, optional `customers.csv` and `images/`."""
    what = "the H&M folder (articles.csv, transactions_train.csv, customers.csv, images/)"
    folder = require_folder(Path(path), what)
    items, item_source = _articles(folder / "articles.csv")
    interactions, interaction_source = _transactions(folder / "transactions_train.csv")
    tables = {"items": item_source, "interactions": interaction_source}
    users = None
    if (folder / "customers.csv").exists():
        users, tables["users"] = _customers(folder / "customers.csv")
    root = folder.resolve()
    return Dataset(interactions, items, users, root=root, name=root.name, intake=Intake(tables))


def _article_id(column: str) -> pl.Expr:
    return integer_id(column, ARTICLE_ID_DIGITS)


def _articles(file: Path) -> tuple[pl.DataFrame, TableSource]:
    described = [*_DESCRIBED, *_ITEM_FEATURES.values()]
    required = ["article_id", "prod_name", "product_type_name", "detail_desc"]
    frame, rules, locate = scan_csv(file, required, "H&M articles", optional=described)
    item_id = _article_id("article_id")
    summary = pl.concat_str([text(c) for c in _DESCRIBED], separator=", ", ignore_nulls=True)
    builder = (
        TableBuilder(rules=rules)
        .parsed("item_id", "article_id", item_id, "unparsable id")
        .text("title", "prod_name")
        .expr("text", pl.concat_str([summary, text("detail_desc")], separator=". ", ignore_nulls=True))
        .text("category", "product_type_name")
        .expr("image", pl.format("images/{}/{}.jpg", item_id.str.slice(0, 3), item_id))
    )
    for name, column in _ITEM_FEATURES.items():
        builder.text(name, column)
    plan, source = builder.build(frame, file.name, "row", locate)
    return source.collect(plan), source


def _customers(file: Path) -> tuple[pl.DataFrame, TableSource]:
    frame, rules, locate = scan_csv(file, ["customer_id"], "H&M customers", optional=["age", *_USER_FEATURES.values()])
    builder = TableBuilder(rules=rules).text("user_id", "customer_id").expr("age_band", age_band("age"), "age")
    for name, column in _USER_FEATURES.items():
        builder.text(name, column)
    plan, source = builder.build(frame, file.name, "row", locate)
    return source.collect(plan), source


def _transactions(file: Path) -> tuple[pl.LazyFrame, TableSource]:
    required = ["t_dat", "customer_id", "article_id"]
    frame, rules, locate = scan_csv(file, required, "H&M transactions", optional=["price", "sales_channel_id"])
    channels = {channel: channel for channel in SALES_CHANNELS}
    unknown_channel = f"unknown sales channel (expected {', '.join(SALES_CHANNELS)})"
    builder = (
        TableBuilder(rules=rules)
        .text("user_id", "customer_id")
        .parsed("item_id", "article_id", _article_id("article_id"), "unparsable id")
        .parsed("timestamp", "t_dat", datetime_text("t_dat", "%Y-%m-%d"), "unparsable timestamp")
        .expr("event", pl.lit("purchase"))
        .expr("value", pl.lit(None, pl.Float64))
        .parsed(_PRICE, "price", number("price"), "unparsable price")
        .bounded(_PRICE, "price", low=0)
        .parsed(_CHANNEL, "sales_channel_id", mapped("sales_channel_id", channels), unknown_channel)
    )
    return builder.build(frame, file.name, "row", locate)
