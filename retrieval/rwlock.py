"""A readers-writer lock: many searches at once, one add or remove at a time.

FAISS answers concurrent searches safely, but adding to or taking from an index while it is searched is
not safe; a plain mutex would make every search wait for every other. Writers get priority, so a steady
stream of searches cannot starve an add. Not reentrant: never take `read` inside `read`.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())  # never re-entered: a plain lock is cheaper
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._reading = _Reading(self)

    def read(self) -> "_Reading":
        """`with lock.read():` holds a read lock (a plain context object: a generator costs a one-query
        search more than the lock itself)."""
        return self._reading

    def _enter_read(self) -> None:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _exit_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0 and self._writers_waiting:  # readers only ever wait for writers
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class _Reading:
    """The context of `ReadWriteLock.read`; it holds no state of its own, so every reader shares one."""

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._enter_read()

    def __exit__(self, *exc: object) -> None:
        self._lock._exit_read()
