"""`index`, `export` and `evaluate` launched under torchrun: the processes embed together and the files
and metrics are those of a single process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tandemrec.retrieval.embeddings import read_embeddings
from tandemrec.retrieval.index import ItemIndex

pytestmark = [pytest.mark.slow, pytest.mark.distributed]  # torchrun subprocesses

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _jobs(n: int, run: Path) -> str:
    """index, export (Parquet and .npy) and evaluate of `run` on n processes; the output of process 0."""
    printed = []
    for verb in (["index"], ["export", "--format", "parquet,npy"], ["evaluate"]):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "tandemrec.cli", *verb, str(run),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)
        assert done.returncode == 0, f"{verb} on {n}: exit {done.returncode}:\n{done.stderr[-3000:]}"
        printed.append(done.stdout)
    return "".join(printed)


def _without_times(manifest: dict) -> dict:
    return {key: {k: v for k, v in entry.items() if k != "created"} for key, entry in manifest.items()}


def test_two_processes_write_the_files_and_metrics_of_one(trained_run: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for run in (one, two):
        shutil.copytree(trained_run, run)
        for made in ("index", "embeddings", "search", "metrics.json"):  # what the jobs below write again
            target = run / made
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

    printed = {n: _jobs(n, run) for n, run in ((1, one), (2, two))}

    for name in ("items.parquet", "users.parquet", "items.npy", "users.npy", "items.ids.json", "users.ids.json"):
        assert (one / "embeddings" / name).read_bytes() == (two / "embeddings" / name).read_bytes(), name
    manifests = [json.loads((run / "embeddings" / "manifest.json").read_text()) for run in (one, two)]
    assert _without_times(manifests[0]) == _without_times(manifests[1])
    ids, vectors, _ = read_embeddings(two / "embeddings", "users")
    assert len(ids) == 300 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    indexes = [ItemIndex.load(run / "index") for run in (one, two)]
    assert np.array_equal(indexes[0].vectors(np.arange(len(indexes[0]))), indexes[1].vectors(np.arange(len(indexes[1]))))
    assert indexes[0].metadata["recall_at_10"] == indexes[1].metadata["recall_at_10"]
    assert json.loads((one / "metrics.json").read_text()) == json.loads((two / "metrics.json").read_text())
    # Process 0 alone prints: one "indexed ..." line and one metrics table, as on one process.
    assert printed[2].count("indexed ") == 1 and printed[2].count("recall@10") == printed[1].count("recall@10") > 0
