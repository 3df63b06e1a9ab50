"""One job at a time per run folder: a second job that would write the same run is refused, not interleaved.

Two jobs writing one run (say `train` while `index` reads a half-replaced model) would leave files from
different models side by side, each with a valid hash. Every job that writes a run holds an exclusive
`flock` on `RUN/.lock` while it works; the kernel drops it when the process ends, even on a crash or a
kill, so there is never a stale lock to clean up. Within a process the lock is re-entrant for the thread
that holds it; another thread is refused like another process (each `open` is its own lock holder). Under torchrun only rank 0 takes it: the ranks of one job are one job.
"""
from __future__ import annotations

import fcntl
import functools
import inspect
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from tandemrec.errors import RunFolderError

LOCK_FILE = ".lock"

P = ParamSpec("P")
R = TypeVar("R")

_guard = threading.Lock()
_held: dict[Path, tuple[int, int]] = {}  # resolved run folder -> (holding thread, depth)


@contextmanager
def run_lock(root: str | Path, job: str) -> Iterator[None]:
    """Hold the run folder `root` (created if missing) for `job`; RunFolderError if another job holds it."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"run folder '{root}' is a file, not a folder: name a new or existing run folder")
    root.mkdir(parents=True, exist_ok=True)
    key = root.resolve()
    me = threading.get_ident()
    with _guard:
        holder = _held.get(key)
        if holder is not None and holder[0] == me:
            _held[key] = (me, holder[1] + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[key] = (me, _held[key][1] - 1)
        return
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(
                f"run folder '{root}' is in use by another job ({_holder(fd)}): wait for it to finish or use "
                "another run folder"
            ) from None
        with _guard:
            _held[key] = (me, 1)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{job}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
            yield
        finally:
            with _guard:
                del _held[key]
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "unknown job"


def launched_first() -> bool:
    """Whether this process is torchrun's process 0 (RANK 0), or was launched alone (no RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def writes_run(job: Callable[P, R]) -> Callable[P, R]:
    """Decorate a job whose `run_dir` argument names the run folder it writes: it runs holding that run."""
    signature = inspect.signature(job)

    @functools.wraps(job)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        if not launched_first():
            return job(*args, **kwargs)
        run_dir = signature.bind(*args, **kwargs).arguments["run_dir"]
        with run_lock(run_dir, job.__name__):
            return job(*args, **kwargs)

    return locked


def clear_run(root: str | Path) -> None:
    """Empty a run folder this process holds, keeping its lock file (removing it would free the run)."""
    for entry in Path(root).iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
