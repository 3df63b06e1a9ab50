"""User features from the event log: no leakage from the prediction time on, KJT layout, eval queries."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from tandemrec.data.errors import DataError
from tandemrec.data.examples import eval_queries
from tandemrec.data.features import EventLog, UserFeatures, gather_slices
from tandemrec.data.vocab import Vocabulary

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def micros(seconds: int) -> int:
    return int(at(seconds).timestamp()) * 1_000_000


def frame(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [at(r[2]) for r in rows],
        },
        schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )


# u1: a@10, then b and c tied at 20, then d@30.  u2: e@5.  u3: no events at all.
EVENTS = frame([("u1", "d", 30), ("u2", "e", 5), ("u1", "c", 20), ("u1", "a", 10), ("u1", "b", 20)])
USERS = Vocabulary.build(["u1", "u2", "u3"], name="users")
ITEMS = Vocabulary.build(["a", "b", "c", "d", "e", "f"], name="items")
U1, U2, U3 = USERS.encode(["u1", "u2", "u3"])
A, B, C, D, E, F = ITEMS.encode(["a", "b", "c", "d", "e", "f"])


@pytest.fixture
def log() -> EventLog:
    return EventLog.from_frame(EVENTS, USERS, ITEMS)


def features(log: EventLog, history_len: int = 10, attributes=None, names=()) -> UserFeatures:
    if attributes is None:
        attributes = np.zeros((len(USERS), len(names)), dtype=np.int64)
    return UserFeatures(log, np.asarray(attributes), list(names), history_len)


def histories(batch) -> list[list[int]]:
    bag = batch.features["history"]
    values, lengths = bag.values().tolist(), bag.lengths().tolist()
    out, start = [], 0
    for n in lengths:
        out.append(values[start : start + n])
        start += n
    return out


def test_log_is_sorted_by_user_time_item(log):
    assert log.user.tolist() == [U1, U1, U1, U1, U2]
    assert log.item.tolist() == [A, B, C, D, E]
    assert log.time.tolist() == [micros(10), micros(20), micros(20), micros(30), micros(5)]


def test_history_excludes_event_at_prediction_time_and_later(log):
    f = features(log)
    times = np.array([micros(10), micros(20), micros(30), micros(31)])
    batch = f.batch(np.array([U1, U1, U1, U1]), times)
    # At t=10 the event a@10 itself is excluded; at t=20 both tied events are; at t=31 all are in.
    assert histories(batch) == [[], [A], [A, B, C], [A, B, C, D]]


def test_history_between_logged_times(log):
    f = features(log)
    batch = f.batch(np.array([U1, U1]), np.array([micros(20) - 1, micros(20) + 1]))
    assert histories(batch) == [[A], [A, B, C]]


def test_history_is_last_history_len_items_oldest_first(log):
    f = features(log, history_len=2)
    batch = f.batch(np.array([U1, U1]), np.array([micros(31), micros(30)]))
    assert histories(batch) == [[C, D], [B, C]]


def test_no_time_means_after_every_event(log):
    batch = features(log, history_len=3).batch(np.array([U1, U2, U3]))
    assert histories(batch) == [[B, C, D], [E], []]


def test_users_without_earlier_events_get_empty_bag(log):
    f = features(log)
    batch = f.batch(np.array([U2, U3, U1]), np.array([micros(5), micros(1000), micros(0)]))
    assert histories(batch) == [[], [], []]
    assert batch.features["history"].lengths().tolist() == [0, 0, 0]


def test_histories_never_cross_users(log):
    # u3 sorts after u2 and has no events: it must not pick up u2's e, nor u1 anything of u2's.
    batch = features(log).batch(np.array([U3, U2, U1]), np.array([micros(100)] * 3))
    assert histories(batch) == [[], [E], [A, B, C, D]]


def reference_history(rows, user, t, limit):
    mine = sorted((time, item) for u, item, time in rows if u == user and time < t)
    return [item for _, item in mine][-limit:] if limit else []


def test_history_matches_python_reference_on_random_log_with_ties():
    rng = np.random.default_rng(1)
    n_users, n_items, n = 6, 9, 120
    users = Vocabulary.build([f"u{i}" for i in range(n_users)], name="users")
    items = Vocabulary.build([f"i{i}" for i in range(n_items)], name="items")
    raw = [
        (f"u{rng.integers(n_users)}", f"i{rng.integers(n_items)}", int(rng.integers(0, 15)))  # many ties
        for _ in range(n)
    ]
    log = EventLog.from_frame(frame(raw), users, items)
    encoded = [(users.encode([u])[0], items.encode([i])[0], micros(s)) for u, i, s in raw]
    f = UserFeatures(log, np.zeros((len(users), 0), dtype=np.int64), [], history_len=4)
    query_users = rng.integers(1, n_users + 1, size=200)
    query_times = np.array([micros(int(s)) for s in rng.integers(-1, 17, size=200)])
    got = histories(f.batch(query_users, query_times))
    for u, t, h in zip(query_users, query_times, got):
        expected = reference_history(encoded, u, t, 4)
        # Ties at one time are ordered by item index, in the log as in the reference.
        assert h == expected, (u, t)


def test_items_before_excludes_ties(log):
    seen = log.items_before(np.array([U1, U1, U2]), np.array([micros(20), micros(30), micros(5)]))
    assert [s.tolist() for s in seen] == [[A], [A, B, C], []]


def test_items_before_without_times_is_each_users_whole_log():
    rng = np.random.default_rng(3)
    user, item, times = rng.integers(1, 9, 300), rng.integers(1, 50, 300), rng.integers(0, 40, 300)
    order = np.lexsort((item, times, user))
    log = EventLog(user[order], item[order], times[order])
    users = np.array([0, 1, 5, 8, 9, 12, 5])  # 0 and 9+ have no events; a repeat
    whole = log.items_before(users, None)
    after_all = log.items_before(users, np.full(len(users), 10**6))  # the timed route, after every event
    for u, got, timed in zip(users, whole, after_all):
        assert got.tolist() == timed.tolist() == log.item[log.user == u].tolist()


def test_kjt_layout_user_id_attributes_history(log):
    attrs = np.zeros((len(USERS), 2), dtype=np.int64)
    attrs[U1] = [1, 2]
    attrs[U2] = [3, 4]
    f = features(log, history_len=2, attributes=attrs, names=("age", "region"))
    assert f.keys == ["user_id", "age", "region", "history"]
    batch = f.batch(np.array([U1, U2, U3]), np.array([micros(100)] * 3))
    kjt = batch.features
    assert kjt.keys() == ["user_id", "age", "region", "history"]
    assert len(batch) == 3 and kjt.stride() == 3
    assert kjt["user_id"].values().tolist() == [U1, U2, U3]
    assert kjt["user_id"].lengths().tolist() == [1, 1, 1]
    assert kjt["age"].values().tolist() == [1, 3, 0]
    assert kjt["region"].values().tolist() == [2, 4, 0]
    assert kjt["history"].lengths().tolist() == [2, 1, 0]
    assert kjt["history"].values().tolist() == [C, D, E]
    assert kjt.values().dtype.is_floating_point is False


def test_attribute_matrix_shape_is_checked(log):
    with pytest.raises(DataError, match=r"expected a \(n_users, 2\) index matrix"):
        UserFeatures(log, np.zeros((len(USERS), 1), dtype=np.int64), ["age", "region"], 5)


def test_batch_from_given_histories(log):
    attrs = np.array([[0], [7], [8], [9]])
    f = features(log, history_len=2, attributes=attrs, names=("age",))
    batch = f.batch_from(np.array([U1, U3]), [np.array([E, F, A]), np.array([], dtype=np.int64)])
    kjt = batch.features
    assert histories(batch) == [[F, A], []]  # the last history_len items, oldest first
    assert kjt["user_id"].values().tolist() == [U1, U3]
    assert kjt["age"].values().tolist() == [attrs[U1, 0], attrs[U3, 0]]


def test_batch_from_with_attributes_given(log):
    f = features(log, history_len=5, attributes=np.zeros((len(USERS), 1)), names=("age",))
    batch = f.batch_from(np.array([U2]), [[B]], attributes=np.array([[5]]))
    assert batch.features["age"].values().tolist() == [5]
    assert histories(batch) == [[B]]


def test_gather_slices_matches_python_reference():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 1000, size=50)
    lo = rng.integers(0, 50, size=30)
    hi = np.minimum(50, lo + rng.integers(0, 6, size=30))  # includes empty slices
    got, lengths = gather_slices(values, lo, hi)
    expected = [v for a, b in zip(lo, hi) for v in values[a:b]]
    assert got.tolist() == expected
    assert lengths.tolist() == (hi - lo).tolist()


def test_gather_slices_all_empty():
    got, lengths = gather_slices(np.arange(5), np.array([2, 4]), np.array([2, 4]))
    assert got.tolist() == [] and lengths.tolist() == [0, 0]
    got, lengths = gather_slices(np.arange(5), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert got.tolist() == [] and lengths.tolist() == []


def test_eval_queries_time_is_first_event_and_targets_unique():
    part = frame([("u2", "e", 50), ("u1", "c", 42), ("u1", "b", 40), ("u1", "c", 45), ("u2", "e", 51)])
    queries = eval_queries(part, USERS, ITEMS)
    assert len(queries) == 2
    assert queries.users.tolist() == [U1, U2]
    assert queries.times.tolist() == [micros(40), micros(50)]
    assert sorted(queries.targets[0].tolist()) == sorted([B, C])
    assert len(queries.targets[0]) == 2
    assert queries.targets[1].tolist() == [E]


def test_eval_queries_empty_part():
    queries = eval_queries(frame([]), USERS, ITEMS)
    assert len(queries) == 0 and queries.targets == []


def test_features_at_query_time_do_not_see_the_evaluated_part():
    train = [("u1", "a", 10), ("u1", "b", 20), ("u2", "e", 5)]
    test = [("u1", "c", 30), ("u1", "d", 30), ("u2", "f", 40)]
    log = EventLog.from_frame(frame(train + test), USERS, ITEMS)
    queries = eval_queries(frame(test), USERS, ITEMS)
    batch = features(log).batch(queries.users, queries.times)
    assert histories(batch) == [[A, B], [E]]
