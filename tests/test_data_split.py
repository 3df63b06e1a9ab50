from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tandemrec.data import INTERACTION_COLUMNS, DataError, temporal_split
from tandemrec.data.split import SplitConfig, split_by

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _random_interactions(seed: int = 0, n_users: int = 60) -> pl.DataFrame:
    """Users with 1..10 events in shuffled order; few distinct days, so many timestamps tie."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for _ in range(rng.integers(1, 11)):
            day = int(rng.integers(0, 4))
            rows.append((f"u{user}", f"i{rng.integers(0, 30)}", START + timedelta(days=day), "view", None))
    order = rng.permutation(len(rows))
    return pl.DataFrame([rows[k] for k in order], schema=INTERACTION_COLUMNS, orient="row")


@pytest.mark.parametrize(
    ("valid_last", "test_last", "min_train"), [(1, 1, 1), (0, 1, 1), (2, 2, 3), (1, 0, 0)]
)
def test_split_invariants(valid_last, test_last, min_train):
    interactions = _random_interactions()
    split = temporal_split(interactions, valid_last=valid_last, test_last=test_last, min_train=min_train)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}

    key = ["user_id", "timestamp", "item_id"]
    together = pl.concat(parts.values())
    assert_frame_equal(together.sort(key), interactions.sort(key))

    for frame in parts.values():
        assert frame.columns == list(INTERACTION_COLUMNS)
        order = frame.select("user_id", "timestamp")
        assert_frame_equal(order, order.sort(["user_id", "timestamp"]))

    sizes = interactions.group_by("user_id").len()
    for user, total in sizes.iter_rows():
        per_part = {name: frame.filter(pl.col("user_id") == user) for name, frame in parts.items()}
        if total >= min_train + valid_last + test_last:
            assert (per_part["valid"].height, per_part["test"].height) == (valid_last, test_last)
        else:
            assert per_part["train"].height == total
        times = [per_part[name]["timestamp"] for name in ("train", "valid", "test")]
        for earlier, later in zip(times, times[1:]):
            if len(earlier) and len(later):
                assert earlier.max() <= later.min()


def test_ties_are_broken_by_item_id_and_short_users_stay_in_train():
    same_time = [("u1", item, START, "view", None) for item in ["c", "a", "b"]]
    rows = [*same_time, ("u2", "z", START, "view", None)]
    interactions = pl.DataFrame(rows, schema=INTERACTION_COLUMNS, orient="row")
    split = temporal_split(interactions)
    assert split.train["item_id"].to_list() == ["a", "z"]
    assert split.valid["item_id"].to_list() == ["b"]
    assert split.test["item_id"].to_list() == ["c"]


def test_bad_arguments_and_missing_columns():
    interactions = _random_interactions(n_users=2)
    with pytest.raises(ValueError, match="test_last must be >= 0"):
        temporal_split(interactions, test_last=-1)
    with pytest.raises(DataError, match="interactions: missing column 'timestamp'"):
        temporal_split(interactions.drop("timestamp"))


def test_share_split_holds_out_the_last_shares_per_user():
    """Per user by time: the last 20% test, the last 10% of the rest validation (each at least one), and
    users who would keep fewer than min_train training events stay wholly in train."""
    rows = [(f"u{n}", f"i{t:02d}", START + timedelta(days=t), "view", None) for n in (4, 5, 10, 23) for t in range(n)]
    interactions = pl.DataFrame(rows, schema=INTERACTION_COLUMNS, orient="row")
    config = SplitConfig(test_fraction=0.2, valid_fraction=0.1, min_train=3)
    split = split_by(interactions, config)
    # n=4: 1 test + 1 valid would leave 2 < 3 in train; n=5: 1/1/3; n=10: 2 test, 1 valid; n=23: 5 test, 2 valid.
    expected = {"u4": (4, 0, 0), "u5": (3, 1, 1), "u10": (7, 1, 2), "u23": (16, 2, 5)}
    for user, sizes in expected.items():
        got = tuple(part.filter(pl.col("user_id") == user).height for part in (split.train, split.valid, split.test))
        assert got == sizes, user
    last = split.test.filter(pl.col("user_id") == "u23")["item_id"].to_list()
    assert last == ["i18", "i19", "i20", "i21", "i22"]
    assert split.valid.filter(pl.col("user_id") == "u23")["item_id"].to_list() == ["i16", "i17"]


def test_share_split_rejects_shares_out_of_range():
    interactions = _random_interactions(n_users=2)
    with pytest.raises(ValueError, match=r"config key 'test_fraction' must be a number in \[0, 1\), got 1.0"):
        split_by(interactions, SplitConfig(test_fraction=1.0))
