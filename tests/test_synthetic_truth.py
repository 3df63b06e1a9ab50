"""The synthetic shop's own distribution (data/synthetic_truth.py): what it says the events are, they are,
and the Bayes-optimal ranking built on it ranks better than a ranking learned from the same events."""

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tandemrec.data import SyntheticShopConfig, make_synthetic_shop, temporal_split
from tandemrec.data.synthetic import CLASSES, draw_shop
from tandemrec.data.synthetic_truth import ShopTruth

LONG_TAIL = SyntheticShopConfig(n_users=3000, n_items=600, n_classes=8, long_tail=True, max_events_per_user=300)
PLAIN = SyntheticShopConfig(n_users=3000, n_items=600, n_classes=8, events_per_user=30)


def _positions(events: pl.DataFrame) -> pl.DataFrame:
    """The events with `u` and `i`: the generator's user and item positions ("user0042" is 42)."""
    return events.with_columns(
        pl.col("user_id").str.slice(4).cast(pl.Int64).alias("u"),
        pl.col("item_id").str.slice(4).cast(pl.Int64).alias("i"),
    )


def _counts(config: SyntheticShopConfig) -> tuple[ShopTruth, np.ndarray, np.ndarray]:
    """The truth, each user's event count and each item's event count (generator order)."""
    shop = draw_shop(config)
    events = _positions(shop.interactions)
    per_user = np.bincount(events["u"].to_numpy(), minlength=config.n_users)
    return ShopTruth(shop, config.long_tail), per_user, np.bincount(events["i"].to_numpy())


@pytest.mark.parametrize("config", [LONG_TAIL, PLAIN], ids=["long-tail", "plain"])
def test_probabilities_are_the_distribution_the_events_are_drawn_from(config):
    truth, per_user, per_item = _counts(config)
    users = np.arange(config.n_users)
    p = truth.probabilities(*truth.known_classes(users))
    assert p.shape == (config.n_users, config.n_items)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    expected = per_user @ p  # each item's expected number of events
    top = np.argsort(-expected)[:40]  # the items with enough events to compare
    assert np.all(np.abs(per_item[top] - expected[top]) < 4 * np.sqrt(expected[top]) + 3)
    # and across the whole catalogue, a wrong share (e.g. "anywhere" uniform in a long-tail shop) would show
    assert np.corrcoef(per_item, expected)[0, 1] > 0.95


def test_the_posterior_finds_the_classes_of_users_with_many_events():
    shop = draw_shop(LONG_TAIL)
    truth = ShopTruth(shop, True)
    histories = _positions(shop.interactions).group_by("u").agg("i").sort("u")
    users = histories["u"].to_numpy()
    items = [np.asarray(h) for h in histories["i"].to_list()]
    main, second = truth.posterior(users, items)
    np.testing.assert_allclose(main.sum(axis=1), 1.0)
    np.testing.assert_allclose(second.sum(axis=1), 1.0)
    heavy = np.array([len(h) >= 40 for h in items])
    assert heavy.sum() > 50
    assert np.mean(main[heavy].argmax(axis=1) == truth.main[users[heavy]]) > 0.95
    assert np.mean(second[heavy].argmax(axis=1) == truth.second[users[heavy]]) > 0.8
    # With no events, the attributes alone favour the class they imply.
    alone, _ = truth.posterior(users[:200], [np.zeros(0, dtype=np.int64)] * 200)
    assert np.mean(alone.argmax(axis=1) == truth.main[users[:200]]) > 3 / LONG_TAIL.n_classes


def test_the_bayes_ranking_beats_a_ranking_learned_from_the_same_events():
    """Leave-last-out: the posterior ranking (true weights) against class shares and popularity counted from
    the training events, both with seen items left out: the bound is higher, as a bound must be."""
    shop = draw_shop(PLAIN)
    truth = ShopTruth(shop, False)
    split = temporal_split(_positions(shop.interactions), valid_last=0, test_last=1)
    train = split.train.group_by("u").agg("i").sort("u")
    test = split.test.sort("u")
    assert train["u"].to_list() == test["u"].to_list()
    users, histories = train["u"].to_numpy(), [np.asarray(h) for h in train["i"].to_list()]
    targets = test["i"].to_numpy()
    counts = np.bincount(split.train["i"].to_numpy(), minlength=PLAIN.n_items).astype(float)
    within = counts / np.bincount(truth.item_class, weights=counts)[truth.item_class]
    shares = np.stack([np.bincount(truth.item_class[h], minlength=PLAIN.n_classes) + 0.1 for h in histories])
    learned = (shares / shares.sum(axis=1, keepdims=True))[:, truth.item_class] * within
    bayes = truth.probabilities(*truth.posterior(users, histories))

    def recall_at_10(scores: np.ndarray) -> float:
        for row, seen in enumerate(histories):
            scores[row, seen] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :10]
        unseen = np.array([t not in h for t, h in zip(targets, histories)])
        return float((top == targets[:, None]).any(axis=1)[unseen].mean())

    assert recall_at_10(bayes) > recall_at_10(learned)  # 0.336 against 0.326


def test_the_truth_is_the_one_of_the_written_shop(tmp_path):
    config = SyntheticShopConfig(n_users=40, n_items=30, n_classes=4, image_size=16, seed=5)
    written = make_synthetic_shop(tmp_path / "shop", config)
    shop = draw_shop(config)
    assert_frame_equal(written.collect().interactions.select(shop.interactions.columns), shop.interactions)
    names = pl.read_parquet(tmp_path / "shop" / "truth.parquet")["main_class"].to_list()
    assert names == [CLASSES[c].category for c in shop.main]
