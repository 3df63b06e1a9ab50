"""DCP's index (`.metadata`) is a pickle: a crafted one, with meta.json's checksum rewritten to match, is
refused by name on resume and nothing in it runs."""
from __future__ import annotations

import builtins
import datetime
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config
from tandemrec.jobs import train
from tandemrec.training.checkpoint import CheckpointError, IndexCheckedReader, read_index
from test_checkpoint import run_copy, snapshot  # noqa: F401 (run_copy is a fixture)

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux


class Payload:
    """Pickles as a call of `function(*args)`, run by a plain pickle.load."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple:
        return self.function, self.args


def latest_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").iterdir())[-1]


def plant_index(checkpoint: Path, data: bytes) -> Path:
    """Replace the checkpoint's index and rewrite its checksum in meta.json, as an attacker would."""
    index = checkpoint / ".metadata"
    index.write_bytes(data)
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["files"][".metadata"] = hashlib.sha256(data).hexdigest()
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    return index


@pytest.mark.parametrize(
    ("make_payload", "name"),
    [
        (lambda marker: Payload(os.system, f"touch '{marker}'"), SYSTEM),
        (lambda marker: Payload(builtins.exec, f"open({str(marker)!r}, 'w').write('ran')"), "builtins.exec"),
    ],
    ids=["os.system", "builtins.exec"],
)
def test_a_crafted_index_is_refused_by_name_and_never_runs(run_copy: Path, tmp_path: Path, make_payload, name: str) -> None:
    marker = tmp_path / "payload-ran"
    index = plant_index(latest_checkpoint(run_copy), pickle.dumps(make_payload(marker)))
    before = snapshot(run_copy)
    with pytest.raises(CheckpointError, match=f"'{index}' tries to load '{name}'.*refused, nothing in it was run"):
        train(tiny_config(), run_copy, progress=False, resume=True)
    assert not marker.exists()
    assert snapshot(run_copy) == before


def test_an_unexpected_harmless_class_inside_a_real_index_is_refused_too(run_copy: Path) -> None:
    checkpoint = latest_checkpoint(run_copy)
    real = read_index(checkpoint / ".metadata")
    real.planner_data = {**real.planner_data, "extra": datetime.timedelta(days=1)}
    index = plant_index(checkpoint, pickle.dumps(real))
    with pytest.raises(CheckpointError, match=f"'{index}' tries to load 'datetime.timedelta'"):
        train(tiny_config(), run_copy, progress=False, resume=True)


def test_the_reader_given_to_dcp_refuses_an_index_swapped_after_the_check(run_copy: Path, tmp_path: Path) -> None:
    checkpoint = latest_checkpoint(run_copy)
    IndexCheckedReader(checkpoint).read_metadata()  # the real index reads
    marker = tmp_path / "payload-ran"
    (checkpoint / ".metadata").write_bytes(pickle.dumps(Payload(os.system, f"touch '{marker}'")))
    with pytest.raises(CheckpointError, match=f"tries to load '{SYSTEM}'"):
        IndexCheckedReader(checkpoint).read_metadata()
    assert not marker.exists()


def test_a_malformed_index_is_a_named_error(run_copy: Path) -> None:
    index = plant_index(latest_checkpoint(run_copy), b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match=f"'{index}' is not a readable DCP checkpoint index"):
        train(tiny_config(), run_copy, progress=False, resume=True)
