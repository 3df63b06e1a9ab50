"""A run trained only to be measured, by `tandemrec ablate` and `tandemrec benchmark`.

Once trained and indexed such a run is evaluated, read and compared, never resumed: its training
checkpoints (about 300 MB for a MovieLens run, most of its folder) are removed, so that a study of a
dozen runs fits on a small disk. Its model, index and metrics stay.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tandemrec.config import RunConfig
from tandemrec.io.run_folder import RunFolder
from tandemrec.jobs import build_index, train


def train_and_index(config: RunConfig, run_dir: Path) -> None:
    """Train `config` into `run_dir` (no progress bars), index it, then drop its checkpoints."""
    train(config, run_dir, progress=False)
    build_index(run_dir)
    shutil.rmtree(RunFolder(run_dir).checkpoints, ignore_errors=True)
