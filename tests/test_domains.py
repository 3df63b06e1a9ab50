"""Domains (source and target events), the global time cut, the target-sparse variant, and prepare."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from tandemrec.data import INTERACTION_COLUMNS, Dataset
from tandemrec.data.domains import DomainConfig, domain_counts, label_domains, target_sparse
from tandemrec.data.prepared import prepare
from tandemrec.data.split import SplitConfig, temporal_cut, temporal_split

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
RATINGS = DomainConfig(source=["rating"], target=["rating"], target_min_value=4)
SHOP = DomainConfig(source=["view", "cart"], target=["purchase"])


def _events(rows: list[tuple[str, str, int, str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(u, i, START + timedelta(days=d), e, v) for u, i, d, e, v in rows], schema=INTERACTION_COLUMNS, orient="row"
    )


def _shop(n_users: int = 40, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for day in range(12):
            kind = ["view", "view", "cart", "purchase", "wishlist"][int(rng.integers(0, 5))]
            rows.append((f"u{user:02d}", f"i{rng.integers(0, 25):02d}", day, kind, None))
    return _events(rows)


def test_ratings_at_or_above_the_threshold_are_in_both_domains():
    ratings = _events([("u", "a", 0, "rating", 5.0), ("u", "b", 1, "rating", 3.0), ("u", "c", 2, "rating", None)])
    labelled = label_domains(ratings, RATINGS)
    assert labelled.select("item_id", "source", "target").rows() == [("a", True, True), ("b", True, False), ("c", True, False)]
    assert domain_counts(ratings, RATINGS) == {"source only": 2, "target only": 0, "both": 1, "neither": 0}


def test_event_types_in_neither_domain_are_dropped_and_counted():
    shop = _events([("u", "a", 0, "view", None), ("u", "a", 1, "purchase", 1.0), ("u", "b", 2, "wishlist", None)])
    assert label_domains(shop, SHOP).select("event", "source", "target").rows() == [
        ("view", True, False),
        ("purchase", False, True),
    ]
    assert domain_counts(shop, SHOP)["neither"] == 1
    assert label_domains(shop.lazy(), SHOP).collect().height == 2  # plans too
    everything = label_domains(shop, DomainConfig())
    assert everything["source"].all() and not everything["target"].any()


def test_target_sparse_keeps_a_seeded_fraction_of_each_users_target_events():
    train = label_domains(_shop(n_users=200), SHOP)
    sparse = target_sparse(train, 0.25, seed=3)
    assert sparse.equals(target_sparse(train, 0.25, seed=3))
    assert not sparse.equals(target_sparse(train, 0.25, seed=4))
    before = train.group_by("user_id").agg(pl.col("target").sum().alias("n"))
    after = sparse.group_by("user_id").agg(pl.col("target").sum().alias("k"))
    both = before.join(after, on="user_id")
    assert (both["k"] <= np.ceil(both["n"] * 0.25)).all() and (both["k"] >= np.floor(both["n"] * 0.25)).all()
    assert abs(both["k"].sum() / both["n"].sum() - 0.25) < 0.03
    # Source events stay; target-only events not kept leave the part.
    assert sparse.filter(pl.col("source")).height == train.filter(pl.col("source")).height
    assert sparse.height == train.filter(pl.col("source")).height + both["k"].sum()
    assert target_sparse(train, 1.0, seed=0).equals(train)
    assert target_sparse(train, 0.0, seed=0)["target"].sum() == 0


def test_target_sparse_demotes_events_that_are_also_source():
    train = label_domains(_events([("u", f"i{k}", k, "rating", 5.0) for k in range(10)]), RATINGS)
    sparse = target_sparse(train, 0.0, seed=0)
    assert sparse.height == 10 and sparse["source"].all() and not sparse["target"].any()


def test_temporal_cut_splits_every_user_at_one_time():
    shop = _shop()
    split = temporal_cut(shop, at=datetime(2026, 1, 10), valid_from=datetime(2026, 1, 8))  # naive: UTC
    assert split.train["timestamp"].max() < datetime(2026, 1, 8, tzinfo=timezone.utc)
    assert split.valid["timestamp"].min() >= datetime(2026, 1, 8, tzinfo=timezone.utc)
    assert split.test["timestamp"].min() >= datetime(2026, 1, 10, tzinfo=timezone.utc)
    assert split.train.height + split.valid.height + split.test.height == shop.height
    assert temporal_cut(shop, at=START + timedelta(days=10)).valid.is_empty()
    with pytest.raises(ValueError, match="must not be after the cut"):
        temporal_cut(shop, at=START, valid_from=START + timedelta(days=1))


def _dataset(interactions: pl.DataFrame) -> Dataset:
    items = pl.DataFrame({"item_id": sorted(interactions["item_id"].unique()), "title": "t", "text": "x"})
    return Dataset(interactions, items)


def test_prepare_matches_temporal_split_and_labels_examples():
    shop = _shop()
    data = prepare(_dataset(shop), SplitConfig(), history_len=5, domains=SHOP)
    labelled = label_domains(shop, SHOP)
    expected = temporal_split(labelled)
    assert len(data.train) == expected.train.height
    assert data.train.source.sum() == expected.train["source"].sum()
    assert data.train.target.sum() == expected.train["target"].sum()
    # Evaluation asks for target events: users whose held-out event is a view have no query.
    assert len(data.test) == expected.test.filter(pl.col("target"))["user_id"].n_unique()
    assert (data.events["part"] == "test").sum() == expected.test.height


def test_prepare_with_a_cut_from_the_config_and_a_sparse_target():
    shop = _shop()
    split = SplitConfig(cut_at="2026-01-10", valid_from="2026-01-08")
    sparse = DomainConfig(source=["view", "cart"], target=["purchase"], train_target_fraction=0.0)
    data = prepare(_dataset(shop), split, history_len=5, domains=sparse)
    assert data.train.target.sum() == 0 and len(data.train) > 0
    assert len(data.test) > 0  # test keeps its target events
    cut = int(datetime(2026, 1, 8, tzinfo=timezone.utc).timestamp() * 1e6)
    assert data.train.times.max() < cut
    purchases_in_train = shop.filter((pl.col("event") == "purchase") & (pl.col("timestamp") < START + timedelta(days=7)))
    assert len(data.log) == shop.filter(pl.col("event") != "wishlist").height - purchases_in_train.height


def test_bad_domain_and_cut_settings():
    with pytest.raises(ValueError, match=r"config key 'train_target_fraction' must be a number in \[0, 1\]"):
        DomainConfig(train_target_fraction=1.5)
    with pytest.raises(ValueError, match="config key 'cut_at' must be an ISO 8601"):
        prepare(_dataset(_shop(n_users=2)), SplitConfig(cut_at="next tuesday"), history_len=5)
