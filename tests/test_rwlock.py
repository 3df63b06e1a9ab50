"""The catalogue's read-write lock: searches overlap, an add or removal waits for them and they for it."""

import threading
import time

from tandemrec.retrieval.rwlock import ReadWriteLock

WAIT = 0.2  # long enough for a thread that could go on to do so


def test_readers_overlap_and_a_writer_waits_for_every_reader():
    lock, log = ReadWriteLock(), []
    first, second = lock.read(), lock.read()
    first.__enter__()
    second.__enter__()  # a second reader does not wait for the first
    writer = threading.Thread(target=lambda: _write(lock, log))
    writer.start()
    time.sleep(WAIT)
    first.__exit__(None, None, None)
    time.sleep(WAIT)
    assert log == []  # one reader still holds the lock
    log.append("last reader out")
    second.__exit__(None, None, None)
    writer.join(5)
    assert log == ["last reader out", "wrote"]


def test_a_waiting_writer_holds_back_new_readers():
    lock, log = ReadWriteLock(), []
    lock.read().__enter__()
    writer = threading.Thread(target=lambda: _write(lock, log))
    writer.start()
    time.sleep(WAIT)  # the writer now waits for the reader
    reader = threading.Thread(target=lambda: _read(lock, log))
    reader.start()
    time.sleep(WAIT)
    assert log == []  # the new reader queues behind the writer: a stream of searches cannot starve an add
    lock.read().__exit__(None, None, None)
    writer.join(5)
    reader.join(5)
    assert log == ["wrote", "read"]


def _write(lock: ReadWriteLock, log: list[str]) -> None:
    with lock.write():
        log.append("wrote")


def _read(lock: ReadWriteLock, log: list[str]) -> None:
    with lock.read():
        log.append("read")
