"""Amazon Reviews 2023 (McAuley lab): `<Category>.jsonl` reviews and `meta_<Category>.jsonl` item metadata.

Every review is an event "rating" with its star rating as value (which ratings are the target domain is
configuration, `data.domains`); items are keyed by `parent_asin`, as the reviews are. An item's text is
its feature bullets and description, its category the most specific of its `categories` (else its
`main_category`). Images are URLs in the metadata; an item gets a local image when `images/` next to the
files holds one named after the item (`<parent_asin>.jpg`) or after the URL's file name, and otherwise
the expected `images/<parent_asin>.jpg`, which validation counts as a missing image. Timestamps are
milliseconds; ratings are 1 to 5 stars, and a rating off that scale (or NaN) is refused, counted. A folder
may hold several categories: each `meta_<Category>.jsonl` with its reviews.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.intake import Intake, TableSource
from tandemrec.data.readers.jsonl_table import scan_jsonl
from tandemrec.data.readers.multi import concat_files
from tandemrec.data.readers.parse import TableBuilder, epoch, number, text

IMAGES_DIR = "images"
_IMAGE_NAME = "__image_name"  # the file name of the item's first image URL
RATINGS = (1.0, 5.0)
_REVIEW_FIELDS = {"user_id": pl.String, "parent_asin": pl.String, "rating": pl.String, "timestamp": pl.String}
_IMAGE = pl.Struct({"large": pl.String, "hi_res": pl.String, "thumb": pl.String, "variant": pl.String})
_META_FIELDS = {
    "parent_asin": pl.String,
    "title": pl.String,
    "main_category": pl.String,
    "store": pl.String,
    "features": pl.List(pl.String),
    "description": pl.List(pl.String),
    "categories": pl.List(pl.String),
    "images": pl.List(_IMAGE),
}


def read_amazon(path: str | Path) -> Dataset:
    """Read a folder of Amazon Reviews 2023 categories, or one `<Category>.jsonl` with its meta file."""
    given = Path(path)
    pairs = _category_files(given)
    root = (given if given.is_dir() else given.parent).resolve()
    reviews = _tables([_reviews(r) for r, _ in pairs])
    items, item_source = _tables([_meta(m) for _, m in pairs])
    items = item_source.collect(items)
    items = items.with_columns(image=_local_images(items, root))
    intake = Intake({"interactions": reviews[1], "items": item_source})
    return Dataset(reviews[0], items.drop(_IMAGE_NAME), None, root=root, name=root.name, intake=intake)


def _category_files(path: Path) -> list[tuple[Path, Path]]:
    """(reviews, meta) file pairs: every meta_<Category>.jsonl of a folder, or the one of a reviews file."""
    if path.is_file():
        return [(path, path.with_name(f"meta_{path.name}"))]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder, expected Amazon Reviews 2023 files (<Category>.jsonl)")
    metas = sorted(path.glob("meta_*.jsonl"))
    if not metas:
        raise DataError(f"{path}: no meta_<Category>.jsonl files, expected Amazon Reviews 2023 files")
    return [(m.with_name(m.name.removeprefix("meta_")), m) for m in metas]


def _tables(parts: list[tuple[pl.LazyFrame, TableSource]]) -> tuple[pl.LazyFrame, TableSource]:
    """Several files of one table (one per category) as one plan and one source."""
    frame, locate = concat_files([(source.file, plan, source.locate) for plan, source in parts])
    first = parts[0][1]
    files = ", ".join(source.file for _, source in parts)
    return frame, TableSource(files, first.row_label, first.columns, first.rules, locate=locate)


def _reviews(file: Path) -> tuple[pl.LazyFrame, TableSource]:
    frame, rules, locate = scan_jsonl(file, _REVIEW_FIELDS, "Amazon reviews", id_fields=["user_id", "parent_asin"])
    builder = (
        TableBuilder(rules=rules)
        .text("user_id", "user_id")
        .text("item_id", "parent_asin")
        .parsed("timestamp", "timestamp", epoch("timestamp", "ms"), "unparsable timestamp")
        .expr("event", pl.lit("rating"))
        .parsed("value", "rating", number("rating"), "unparsable rating")
        .bounded("value", "rating", *RATINGS)
    )
    return builder.build(frame, file.name, "line", locate)


def _meta(file: Path) -> tuple[pl.LazyFrame, TableSource]:
    frame, rules, locate = scan_jsonl(file, _META_FIELDS, "Amazon item metadata", id_fields=["parent_asin"])
    described = pl.concat_str(
        [pl.col("features").list.join(" "), pl.col("description").list.join(" ")], separator=" ", ignore_nulls=True
    )
    first_image = pl.col("images").list.first().struct
    url = pl.coalesce(first_image.field("hi_res"), first_image.field("large"), first_image.field("thumb"))
    builder = (
        TableBuilder(rules=rules)
        .text("item_id", "parent_asin")
        .text("title", "title")
        .expr("text", pl.when(described.str.strip_chars() != "").then(described), "description")
        .expr("category", pl.coalesce(pl.col("categories").list.last(), text("main_category")), "categories")
        .expr("image", pl.lit(None, pl.String))
        .text("main_category", "main_category")
        .text("store", "store")
        .expr(_IMAGE_NAME, url.str.split("/").list.last())
    )
    return builder.build(frame, file.name, "line", locate)


def _local_images(items: pl.DataFrame, root: Path) -> pl.Series:
    """`images/<file>` for items with a local image (by item id, else by the URL's file name); the expected
    `images/<item id>.jpg` for items whose metadata lists an image that is not there; else null."""
    folder = root / IMAGES_DIR
    by_stem: dict[str, str] = {}
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            by_stem.setdefault(Path(name).stem, name)
            by_stem.setdefault(name, name)
    paths = []
    for item_id, url_name in items.select("item_id", _IMAGE_NAME).iter_rows():
        name = by_stem.get(item_id or "") or by_stem.get(url_name or "")
        if name is None and url_name is not None:
            name = f"{item_id}.jpg"
        paths.append(None if name is None else f"{IMAGES_DIR}/{name}")
    return pl.Series("image", paths, dtype=pl.String)
