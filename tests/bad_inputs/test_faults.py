"""Faults a job meets: another job on the same run, a full or refusing disk, a kill mid-training, damaged
artifacts. Each ends in a named error (exit 2 for what the user can fix, 1 for the disk), never in a
half-written artifact, a hang, or a silently different model."""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_OVERRIDES, tiny_config
from tandemrec.cli import main
from tandemrec.errors import RunFolderError
from tandemrec.jobs import build_index, train
from tandemrec.run_lock import LOCK_FILE, run_lock
from test_checkpoint import snapshot

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

TIMEOUT = 240  # seconds any one child process may take: a hang fails the test instead of the suite
HOLD = """
import sys, time
from tandemrec.run_lock import run_lock
with run_lock(sys.argv[1], "train"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("shop"))
    return copy


@pytest.fixture
def held(run_copy: Path):
    """Another process holding the run, as a running `train` would; killed (-9) at the end."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(TIMEOUT)


PROGRESS_BAR = re.compile(r"^[\w ]+: +\d+%\|")


def one_error_line(capsys: pytest.CaptureFixture[str], verb: str) -> str:
    """The one error line on stderr; the job's progress bars before it (tqdm: "items:  50%|...") aside."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not PROGRESS_BAR.match(line)]
    assert len(err) == 1 and err[0].startswith(f"tandemrec {verb}: error: "), err
    return err[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed write would leave behind."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.startswith(".") and p.name != LOCK_FILE)


def test_a_job_on_a_run_another_job_holds_is_refused_with_its_holder(run_copy, held, capsys):
    before = snapshot(run_copy)
    assert main(["index", str(run_copy)]) == 2
    line = one_error_line(capsys, "index")
    assert f"run folder '{run_copy}' is in use by another job (train, pid {held.pid}, since " in line
    assert snapshot(run_copy) == before


def test_the_python_jobs_refuse_a_held_run_too(run_copy, held):
    with pytest.raises(RunFolderError, match="is in use by another job"):
        build_index(run_copy)
    with pytest.raises(RunFolderError, match="is in use by another job"):
        train(tiny_config(), run_copy, progress=False, resume=True)


def test_a_killed_holder_frees_the_run(run_copy, held, capsys):
    held.send_signal(signal.SIGKILL)
    held.wait(TIMEOUT)
    assert main(["export", str(run_copy), "--what", "items"]) == 0  # the kernel dropped the lock: none is stale


def test_another_thread_is_refused_and_the_holding_thread_may_nest(tmp_path):
    outcome = []
    with run_lock(tmp_path / "run", "train"):
        with run_lock(tmp_path / "run", "index"):  # the demo's jobs, one after another in one run
            pass

        def other() -> None:
            try:
                with run_lock(tmp_path / "run", "export"):
                    outcome.append("entered")
            except RunFolderError as err:
                outcome.append(str(err))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(TIMEOUT)
    assert len(outcome) == 1 and "is in use by another job (train, pid" in outcome[0]
    with run_lock(tmp_path / "run", "export"):  # released on exit
        pass


def fail_fsync(number: int):
    def fsync(fd: int) -> None:
        raise OSError(number, os.strerror(number))

    return fsync


def test_a_full_disk_during_export_names_the_file_and_keeps_the_old_one(run_copy, monkeypatch, capsys):
    items = run_copy / "embeddings" / "items.parquet"
    old = items.read_bytes()
    monkeypatch.setattr(os, "fsync", fail_fsync(errno.ENOSPC))
    assert main(["export", str(run_copy), "--what", "items"]) == 1
    line = one_error_line(capsys, "export")
    assert line == f"tandemrec export: error: No space left on device: '{items}'"
    assert items.read_bytes() == old
    assert leftovers(run_copy / "embeddings") == []


def test_a_refused_rename_during_index_names_the_file_and_keeps_the_old_index(run_copy, monkeypatch, capsys):
    before = snapshot(run_copy / "index")
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("index.faiss"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src), None, str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert main(["index", str(run_copy)]) == 1
    assert "Permission denied: '" in one_error_line(capsys, "index")
    assert snapshot(run_copy / "index") == before
    assert leftovers(run_copy / "index") == []


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 64 KiB file system (tmpfs): writes fail as on a full disk. Needs mount rights (root)."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the simulated full-disk tests still run")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_while_making_a_shop_names_the_path_and_leaves_nothing(tiny_disk, capsys):
    dest = tiny_disk / "shop"
    assert main(["data", "synth", str(dest), "--users", "200", "--items", "300"]) == 1
    line = one_error_line(capsys, "data")
    assert "No space left on device: '" in line and str(tiny_disk) in line
    assert list(tiny_disk.iterdir()) == []  # no shop, no staging folder


def test_a_run_killed_mid_training_resumes_to_the_same_model(tmp_path):
    overrides = [*TINY_OVERRIDES, "train.epochs=4", "train.patience=10"]
    whole = tmp_path / "whole"
    train(tiny_config(*overrides[len(TINY_OVERRIDES):]), whole, progress=False)

    killed = tmp_path / "killed"
    argv = [sys.executable, "-m", "tandemrec.cli", "train", "demo", "--run", str(killed)]
    for override in overrides:
        argv += ["--set", override]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    deadline = time.monotonic() + TIMEOUT
    while not (killed / "checkpoints").is_dir() or not any(
        p.name.startswith("epoch") for p in (killed / "checkpoints").iterdir()
    ):
        assert child.poll() is None and time.monotonic() < deadline, "training ended or hung before its first checkpoint"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait(TIMEOUT) == -signal.SIGKILL

    train(tiny_config(*overrides[len(TINY_OVERRIDES):]), killed, progress=False, resume=True)
    resumed, expected = load_file(killed / "model" / "model.safetensors"), load_file(whole / "model" / "model.safetensors")
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("damage", "culprit"),
    [
        (lambda run: (run / "model" / "model.safetensors").write_bytes(b"\x00" * 10), "model.safetensors"),
        (lambda run: (run / "index" / "index.faiss").write_bytes(b"truncated"), "index.faiss"),
        (lambda run: (run / "index" / "ids.json").write_text("[1, 2"), "ids.json"),
        (lambda run: (run / "config.json").write_text("{not json"), "config.json"),
        (lambda run: (run / "model" / "config.json").unlink(), "config.json"),
        (lambda run: (run / "vocab" / "items.json").write_text("[]"), "items.json"),
    ],
    ids=["weights-truncated", "index-truncated", "ids-truncated", "run-config-not-json", "model-config-missing", "vocab-emptied"],
)
def test_a_damaged_run_is_named_when_queried(run_copy, damage, culprit, capsys):
    damage(run_copy)
    assert main(["recommend", str(run_copy), "u1"]) == 2
    assert culprit in one_error_line(capsys, "recommend")


def test_a_truncated_checkpoint_meta_is_named_and_nothing_is_written(run_copy):
    from tandemrec.training.checkpoint import CheckpointError

    latest = sorted((run_copy / "checkpoints").iterdir())[-1]
    meta = latest / "meta.json"
    meta.write_text(meta.read_text()[:20])
    before = snapshot(run_copy)
    with pytest.raises(CheckpointError):
        train(tiny_config(), run_copy, progress=False, resume=True)
    assert snapshot(run_copy) == before
