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
        # Never re-entered, so a plain lock. Readers take it directly (a C context manager, where the
        # Condition's is Python) and use the condition only to wait.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._reading = _Reading(self)

    def read(self) -> "_Reading":
        """`with lock.read():` holds a read lock (a plain context object: a generator costs a one-query
        search more than the lock itself)."""
        return self._reading

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
        lock = self._lock  # its state handled here, not in a method of its own: a call less per search
        with lock._mutex:
            while lock._writing or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._mutex:
            lock._readers -= 1
            if lock._readers == 0 and lock._writers_waiting:  # readers only ever wait for writers
                lock._cond.notify_all()
