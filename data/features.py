"""User features from the event log: user id, attributes and a history bag of strictly earlier items.

Every history is a contiguous slice of the log sorted by (user, time), found with one vectorised
binary search, so building a batch costs O(batch) and no event at or after the prediction time can
leak into the features, in training as in evaluation.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from tandemrec.data.batch import GAP_BUCKETS, HISTORY, HISTORY_GAP, UNKNOWN_GAP, USER_ID, UserBatch, position_keys
from tandemrec.data.errors import DataError
from tandemrec.data.vocab import Vocabulary


def to_micros(timestamps: pl.Series) -> np.ndarray:
    return timestamps.dt.epoch("us").to_numpy().astype(np.int64)


@dataclass
class EventLog:
    """Encoded events sorted by (user, time, item)."""

    user: np.ndarray  # int64 user index
    item: np.ndarray  # int64 item index
    time: np.ndarray  # int64 microseconds since epoch

    @classmethod
    def from_frame(cls, events: pl.DataFrame, users: Vocabulary, items: Vocabulary) -> "EventLog":
        user = users.encode(events["user_id"])
        item = items.encode(events["item_id"])
        time = to_micros(events["timestamp"])
        order = np.lexsort((item, time, user))
        return cls(user[order], item[order], time[order])

    def __post_init__(self) -> None:
        # The inverse is each event's time rank; asking for it also makes numpy sort rather than hash
        # (the hash path is ~7x slower on tens of millions of distinct times).
        self._times, rank = np.unique(self.time, return_inverse=True)
        self._stride = np.int64(len(self._times) + 1)
        self._keys = self.user * self._stride + rank.reshape(-1)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def before(self, users: np.ndarray, times: np.ndarray | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) log slices: each user's last `limit` events strictly before its time (None: all)."""
        users = np.asarray(users, dtype=np.int64)
        rank = (
            np.full(users.shape, len(self._times), dtype=np.int64)
            if times is None
            else np.searchsorted(self._times, np.asarray(times, dtype=np.int64), side="left")
        )
        hi = np.searchsorted(self._keys, users * self._stride + rank, side="left")
        first = np.searchsorted(self._keys, users * self._stride, side="left")
        return np.maximum(first, hi - limit), hi

    def items_before(self, users: np.ndarray, times: np.ndarray | None) -> list[np.ndarray]:
        """All items each user had events with before its time (e.g. to exclude seen items)."""
        if times is None:  # the whole log: each user's slice in one binary search over users (serving's case)
            users = np.asarray(users, dtype=np.int64)
            lo, hi = np.searchsorted(self.user, np.stack([users, users + 1]))
        else:
            lo, hi = self.before(users, times, limit=len(self))
        return [self.item[a:b] for a, b in zip(lo, hi)]


def gather_slices(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate values[lo[i]:hi[i]] for all i without a Python loop; returns (values, lengths)."""
    lengths = (hi - lo).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(lengths.sum()) - np.repeat(starts, lengths) + np.repeat(lo, lengths)
    return values[positions], lengths


class UserFeatures:
    """Builds UserBatch KeyedJaggedTensors for users at given times (training) or now (serving)."""

    def __init__(
        self,
        log: EventLog,
        attributes: np.ndarray,
        attribute_names: Sequence[str],
        history_len: int,
        sequence: bool = False,
    ) -> None:
        """`sequence`: the history as one feature per position (newest first) with time-gap buckets, for
        the attention history encoder; else one bag."""
        if attributes.ndim != 2 or attributes.shape[1] != len(attribute_names):
            raise DataError(
                f"user attributes: expected a (n_users, {len(attribute_names)}) index matrix, "
                f"got shape {attributes.shape}"
            )
        self.log = log
        self.attributes = attributes.astype(np.int64)
        self.attribute_names = list(attribute_names)
        self.history_len = history_len
        self.sequence = sequence

    @property
    def keys(self) -> list[str]:
        if self.sequence:
            history = position_keys(HISTORY, self.history_len) + position_keys(HISTORY_GAP, self.history_len)
        else:
            history = [HISTORY]
        return [USER_ID, *self.attribute_names, *history]

    def batches(self, users: np.ndarray, times: np.ndarray | None, size: int) -> Iterator[UserBatch]:
        """`batch` over `users` (and their `times`), `size` users at a time, in order."""
        for start in range(0, len(users), size):
            yield self.batch(users[start : start + size], None if times is None else times[start : start + size])

    def batch(self, users: np.ndarray, times: np.ndarray | None = None) -> UserBatch:
        """Features of `users` as they were just before `times` (None: after every logged event)."""
        lo, hi = self.log.before(users, times, self.history_len)
        if self.sequence:
            history, lengths = self._sequence(lo, hi)
        else:
            history, lengths = gather_slices(self.log.item, lo, hi)
        return self._assemble(np.asarray(users, dtype=np.int64), self.attributes[users], history, lengths)

    def batch_from(
        self, users: np.ndarray, histories: Sequence[np.ndarray], attributes: np.ndarray | None = None
    ) -> UserBatch:
        """Features given at call time: histories (item indices, oldest first) and optional attributes."""
        users = np.asarray(users, dtype=np.int64)
        attrs = self.attributes[users] if attributes is None else np.asarray(attributes, dtype=np.int64)
        tails = [np.asarray(h, dtype=np.int64)[-self.history_len:] for h in histories]
        lengths = np.array([len(t) for t in tails], dtype=np.int64)
        if self.sequence:  # given histories have no times: every gap is unknown
            present = np.arange(self.history_len) < lengths[:, None]
            items = np.zeros(present.shape, dtype=np.int64)
            items[present] = np.concatenate([t[::-1] for t in tails]) if tails else []
            history, lengths = _positions(items, np.full(present.shape, UNKNOWN_GAP), present)
        else:
            history = np.concatenate(tails) if tails else np.zeros(0, dtype=np.int64)
        return self._assemble(users, attrs, history, lengths)

    def _sequence(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sequence features of the log slices [lo, hi): each position's item, newest first, and its
        time-gap bucket before the newest event of the slice."""
        newest_first = hi[:, None] - 1 - np.arange(self.history_len)  # log rows, (B, history_len)
        present = newest_first >= lo[:, None]
        if not present.any():  # no history at all (an empty log among them): nothing to look up
            nothing = np.zeros(present.shape, dtype=np.int64)
            return _positions(nothing, nothing, present)
        rows = np.where(present, newest_first, 0)  # absent positions read row 0, then are left out
        gaps = gap_buckets(self.log.time[rows[:, :1]] - self.log.time[rows])
        return _positions(self.log.item[rows], gaps, present)

    def _assemble(
        self, users: np.ndarray, attrs: np.ndarray, history: np.ndarray, lengths: np.ndarray
    ) -> UserBatch:
        """The batch's KeyedJaggedTensor: one value per user for the id and each attribute, then the history
        features' `history` values with their `lengths` (key-major, as a KeyedJaggedTensor lays them)."""
        n = users.shape[0]
        values = np.concatenate([users, attrs.T.reshape(-1), history])
        all_lengths = np.concatenate([np.ones(n * (1 + attrs.shape[1]), dtype=np.int64), lengths])
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=self.keys,
            values=torch.from_numpy(values),
            lengths=torch.from_numpy(all_lengths).to(torch.int32),
        )
        return UserBatch(kjt)


def gap_buckets(gaps_us: np.ndarray) -> np.ndarray:
    """Time-gap buckets of gaps in microseconds: floor(log2(1 + minutes)), capped below UNKNOWN_GAP. A log
    scale, so that a minute and an hour differ as much as a day and two months."""
    minutes = np.maximum(gaps_us, 0) / 60e6
    return np.minimum(np.floor(np.log2(1.0 + minutes)), GAP_BUCKETS - 2).astype(np.int64)


def _positions(items: np.ndarray, gaps: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and lengths of the sequence features from (B, N) items and gap buckets, newest first: the N
    item positions, then the N gap positions, each with one value for a user whose history reaches it."""
    by_position = present.T
    values = np.concatenate([items.T[by_position], np.asarray(gaps).T[by_position]]).astype(np.int64)
    lengths = np.tile(by_position.reshape(-1), 2).astype(np.int64)
    return values, lengths
