"""Shared fixtures: a tiny synthetic shop and a tiny trained run, built once per test session."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from tandemrec.config import RunConfig, load_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SHARED = Path(__file__).resolve().parents[2] / "shared"
MOVIELENS_100K = SHARED / "datasets" / "movielens-100k"

# Subprocesses of the torchrun tests: one thread each, as torchrun gives its processes on a shared host.
TORCHRUN_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def torchrun(n: int, *args: str) -> list[str]:
    """The command that launches `args` on n processes with torchrun, as a user's `torchrun` does."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]


def run_ok(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `command` in TORCHRUN_ENV; it must succeed."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=TORCHRUN_ENV)
    assert done.returncode == 0, f"{' '.join(command[1:])}: exit {done.returncode}:\n{done.stderr[-3000:]}"
    return done


TINY_OVERRIDES = [
    "data.synthetic.n_users=300",
    "data.synthetic.n_items=120",
    "data.synthetic.n_classes=6",
    "data.synthetic.events_per_user=15",
    "model.dim=32",
    "model.user.embedding_dim=16",
    "model.user.hidden=[32]",
    "model.item.embedding_dim=16",
    "model.item.fusion_hidden=32",
    'model.item.image={model_name="tandemrec-tiny-vit", trainable_blocks=-1}',
    "model.item.text.pretrained=false",
    "model.item.text.trainable_layers=-1",
    "model.item.text.max_length=16",
    'model.item.text.model_config={model_type="bert", vocab_size=30522, hidden_size=32, '
    "num_hidden_layers=1, num_attention_heads=2, intermediate_size=64}",
    "train.epochs=2",
    "train.batch_size=128",
]


@contextmanager
def benchmark_script(name: str, module: str | None = None) -> Iterator[ModuleType]:
    """benchmarks/<name>.py imported as a module (`module`, default `name`): the scripts are not a package.
    It is registered in sys.modules while in use, where dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(module or name, BENCHMARKS / f"{name}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    try:
        spec.loader.exec_module(loaded)
        yield loaded
    finally:
        del sys.modules[spec.name]


BAD_INPUT_TIMEOUT = 180  # seconds: every bad-input or fault case ends well before, or it hung


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every case of tests/bad_inputs/ runs under a timeout: a hang is a failure, never a stalled run."""
    for item in items:
        if "bad_inputs" in item.path.parts:
            item.add_marker(pytest.mark.timeout(BAD_INPUT_TIMEOUT))


@pytest.fixture(scope="session", autouse=True)
def frozen_feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' own cache of frozen-backbone outputs (never the user's), shared by the session."""
    root = tmp_path_factory.mktemp("tandemrec-cache")
    os.environ["TANDEMREC_CACHE"] = str(root)
    return root


def tiny_config(*extra: str) -> RunConfig:
    """The demo config shrunk to seconds: tiny shop, tiny random BERT (MiniLM's tokenizer), tiny ViT."""
    return load_config(None, [*TINY_OVERRIDES, *extra])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained, exported and indexed run folder (read-only for tests: copy it to change it)."""
    from tandemrec.jobs import build_index, train

    run = tmp_path_factory.mktemp("run") / "tiny"
    train(tiny_config(), run, progress=False)
    build_index(run)
    return run
