from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from PIL import Image
from polars.testing import assert_frame_equal

from tandemrec.data import Dataset, SyntheticShopConfig, make_synthetic_shop, temporal_split
from tandemrec.data.synthetic import CLASSES

SMALL = SyntheticShopConfig(n_users=150, n_items=90, n_classes=6, events_per_user=15, image_size=32, seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Dataset:
    return make_synthetic_shop(tmp_path_factory.mktemp("shop") / "small", SMALL)


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> Dataset:
    return make_synthetic_shop(tmp_path_factory.mktemp("shop") / "default")


def _truth(dataset: Dataset) -> pl.DataFrame:
    return pl.read_parquet(dataset.root / "truth.parquet")


def _with_class(dataset: Dataset) -> pl.DataFrame:
    return dataset.interactions.join(dataset.items.select("item_id", "category"), on="item_id").join(
        _truth(dataset), on="user_id"
    )


def test_tables_images_and_truth(small):
    assert small.interactions.height >= 5 * SMALL.n_users
    assert small.items.height == SMALL.n_items
    assert small.users.columns == ["user_id", "age_band", "region"]
    assert small.items["category"].n_unique() == SMALL.n_classes
    assert set(_truth(small)["main_class"]) <= set(small.items["category"])
    for image in small.items["image"]:
        with Image.open(small.image_path(image)) as picture:
            assert picture.format == "PNG" and picture.mode == "RGB"
            assert picture.size == (SMALL.image_size, SMALL.image_size)


def test_same_seed_same_shop_other_seed_other_shop(small, tmp_path):
    again = make_synthetic_shop(tmp_path / "again", SMALL)
    for table in ("interactions", "items", "users"):
        assert_frame_equal(getattr(again, table), getattr(small, table))
    for image in small.items["image"].head(10):
        assert again.image_path(image).read_bytes() == small.image_path(image).read_bytes()
    other = make_synthetic_shop(tmp_path / "other", SyntheticShopConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not other.interactions.equals(small.interactions)


def test_events_per_user_and_timestamps(small):
    per_user = small.interactions.group_by("user_id").agg(
        pl.len().alias("n"),
        (pl.col("timestamp").diff().dt.total_microseconds() > 0).all().alias("increasing"),
        pl.col("timestamp").min().alias("first"),
        pl.col("timestamp").max().alias("last"),
    )
    assert per_user.height == SMALL.n_users
    assert per_user["n"].min() >= 5
    assert abs(per_user["n"].mean() - SMALL.events_per_user) < 1.5
    assert per_user["increasing"].all()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert per_user["first"].min() >= start and per_user["last"].max() < start + timedelta(days=90)


def test_most_of_each_users_events_fall_in_their_main_class(small):
    events = _with_class(small)
    share = events.group_by("user_id").agg((pl.col("category") == pl.col("main_class")).mean().alias("main"))
    assert share["main"].median() > 0.65
    top = events.group_by("user_id", "category").len().group_by("user_id").agg(
        (pl.col("len").max() / pl.col("len").sum()).alias("top")
    )
    assert (top["top"] > 0.5).mean() > 0.9


def test_purchases_are_rarer_and_favour_the_main_class(default):
    events = _with_class(default)
    rate = (events["event"] == "purchase").mean()
    assert 0.06 < rate < 0.10
    in_main = events.group_by(pl.col("category") == pl.col("main_class")).agg(
        (pl.col("event") == "purchase").mean().alias("rate")
    )
    rates = dict(in_main.iter_rows())
    assert rates[True] > 3 * rates[False]


def test_text_and_images_carry_the_class(small):
    items = small.items
    noun = {product.category: product.noun for product in CLASSES}
    assert all(title.endswith(noun[category]) for category, title in items.select("category", "title").rows())
    features = np.stack([_colour_features(small, image) for image in items["image"]])
    classes = items["category"].to_numpy()
    centroids = {c: features[classes == c].mean(axis=0) for c in np.unique(classes)}
    names = list(centroids)
    nearest = [names[np.argmin([np.linalg.norm(f - centroids[c]) for c in names])] for f in features]
    assert np.mean(np.array(nearest) == classes) > 0.9


def _colour_features(dataset: Dataset, image: str) -> np.ndarray:
    """Mean colour of the foreground and its share of the picture."""
    pixels = np.asarray(Image.open(dataset.image_path(image)), dtype=float).reshape(-1, 3)
    foreground = np.abs(pixels - pixels[0]).sum(axis=1) > 40
    return np.append(pixels[foreground].mean(axis=0) / 255, foreground.mean())


def test_attributes_hint_at_the_main_class(small):
    users = small.users.join(_truth(small), on="user_id")
    mode = users.group_by("age_band", "region").agg(pl.col("main_class").mode().first().alias("guess"))
    guessed = users.join(mode, on=["age_band", "region"])
    assert (guessed["guess"] == guessed["main_class"]).mean() > 0.5  # chance is 1 / n_classes


def test_structure_gives_a_good_model_3x_the_recall_of_popularity(default):
    """An oracle that knows the structure (class shares from the user's training events, popularity
    within the class) must beat most-popular by 3x in Recall@10 on a leave-last-out split."""
    split = temporal_split(default.interactions, valid_last=0, test_last=1)
    items = default.items.with_row_index("item")
    classes = items["category"].rank("dense").to_numpy().astype(int) - 1
    train = split.train.join(items.select("item_id", "item"), on="item_id")
    test = split.test.join(items.select("item_id", "item"), on="item_id")
    users = {user: k for k, user in enumerate(default.users["user_id"])}
    train_users = train["user_id"].replace_strict(users).to_numpy()
    counts = np.bincount(train["item"].to_numpy(), minlength=items.height).astype(float)
    class_counts = np.zeros((len(users), classes.max() + 1))
    np.add.at(class_counts, (train_users, classes[train["item"].to_numpy()]), 1)
    class_share = (class_counts + 0.1) / (class_counts + 0.1).sum(axis=1, keepdims=True)
    within_class = counts / np.bincount(classes, weights=counts)[classes]
    test_users, targets = test["user_id"].replace_strict(users).to_numpy(), test["item"].to_numpy()
    oracle = class_share[test_users][:, classes] * within_class
    popular = np.tile(counts, (len(test_users), 1))

    def recall_at_10(scores: np.ndarray) -> float:
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        return float((top == targets[:, None]).any(axis=1).mean())

    assert recall_at_10(oracle) > 3 * recall_at_10(popular)


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"config key 'n_classes' must be an integer in \[2, 24\], got 30"):
        make_synthetic_shop(tmp_path / "x", SyntheticShopConfig(n_classes=30))
    with pytest.raises(ValueError, match="config key 'events_per_user' must be an integer >= 5, got 3"):
        make_synthetic_shop(tmp_path / "x", SyntheticShopConfig(events_per_user=3))
    with pytest.raises(ValueError, match=r"config key 'n_items' must be >= n_classes \(20\), got 3"):
        SyntheticShopConfig(n_items=3)
    assert not (tmp_path / "x").exists()


def test_long_tail_shop_has_power_law_popularity_and_activity(tmp_path):
    """Item counts fall as 1 / rank (log-log slope near -1 over ranks 10..300), and users range from 5
    events to hundreds, most having few."""
    config = SyntheticShopConfig(
        n_users=2000, n_items=2000, n_classes=20, long_tail=True, max_events_per_user=500, image_size=16
    )
    events = make_synthetic_shop(tmp_path / "shop", config).collect().interactions
    activity = events.group_by("user_id").len()["len"].to_numpy()
    assert activity.min() >= 5 and 200 < activity.max() <= 500
    assert np.median(activity) < 15 < activity.mean()  # a long tail of heavy users
    counts = np.sort(events.group_by("item_id").len()["len"].to_numpy())[::-1]
    ranks = np.arange(10, 300)
    slope = np.polyfit(np.log(ranks + 1), np.log(counts[ranks]), 1)[0]
    assert -1.3 < slope < -0.7
