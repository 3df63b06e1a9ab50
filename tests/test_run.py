"""`Run`: a run folder opened once. Its parts are read once and shared, jobs do not read or build them
twice, and no other module of the package opens a run on its own."""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import tandemrec
import tandemrec.run as run_module
from conftest import tiny_config
from tandemrec import jobs
from tandemrec.config import read_run_config
from tandemrec.data.dataset import Dataset
from tandemrec.data.prepared import PreparedData
from tandemrec.errors import MissingFileError
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run import Run
from tandemrec.towers.serialization import model_hash
from tandemrec.towers.two_tower import TwoTower

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("tandemrec", "data", "towers", "training", "retrieval", "benchmarks")
# How a run used to be opened by hand: its saved config, its vocabularies, its dataset copy, its model.
OPENING_A_RUN = re.compile(
    r"read_run_config\(|Vocabularies\.load\(|Dataset\.load\([^)]*(run|dataset\")|load_model\(|load_head\(|"
    r"/ TOKENIZER_DIR"
)
# The one place that opens runs, and the modules that define what it calls.
ALLOWED = {"tandemrec/run.py", "tandemrec/config.py", "data/vocabularies.py", "data/dataset.py"}


@pytest.mark.slow  # the trained run
def test_parts_are_read_once_and_match_the_folder(trained_run: Path) -> None:
    run = Run(trained_run)
    assert run.model is run.model and run.data is run.data and run.content is run.content
    assert run.config == read_run_config(trained_run / "config.json")
    assert isinstance(run.model, TwoTower) and not run.model.training
    assert run.model_hash == model_hash(trained_run / "model")
    assert run.data.dataset is run.dataset  # prepared from the dataset the run holds, not a second read
    assert run.data.vocabs.items.ids == run.vocabs.items.ids and run.data.vocabs.users.ids == run.vocabs.users.ids
    assert run.tokenizer is not None and run.tokenizer(["a lamp"])["input_ids"]
    assert run.content.item_index.shape[0] == len(run.vocabs.items) - 1


def test_a_given_config_stands_in_for_the_saved_one(tmp_path: Path) -> None:
    config = tiny_config()
    run = Run(tmp_path / "not-yet", config)
    assert run.config is config
    with pytest.raises(MissingFileError, match="config.json' does not exist"):
        _ = Run(tmp_path / "not-yet").config


@pytest.mark.slow  # the trained run
def test_retriever_shares_an_opened_runs_parts(trained_run: Path) -> None:
    run = Run(trained_run)
    shared = Retriever.load(run)
    assert shared.model is run.model and shared.vocabs is run.vocabs
    fresh = Retriever.load(trained_run)
    user = run.vocabs.users.ids[1]
    assert shared.recommend(user, k=5).ids == fresh.recommend(user, k=5).ids
    np.testing.assert_allclose(shared.popularity, fresh.popularity)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts of the costly steps of opening a run: model loads, dataset reads, preparations, content builds."""
    calls: Counter = Counter()

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(TwoTower, "from_pretrained", staticmethod(counting("model", TwoTower.from_pretrained)))
    monkeypatch.setattr(Dataset, "load", staticmethod(counting("dataset", Dataset.load)))
    monkeypatch.setattr(run_module, "prepare", counting("prepare", run_module.prepare))
    monkeypatch.setattr(PreparedData, "content", counting("content", PreparedData.content))
    return calls


@pytest.mark.slow  # the trained run
def test_index_and_evaluate_open_the_run_once(trained_run: Path, tmp_path: Path, counted: Counter) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("shop"))
    jobs.build_index(run_dir)  # embeds, exports, indexes, then writes the search state from the same Run
    assert counted == {"model": 1, "dataset": 1, "prepare": 1, "content": 1}
    counted.clear()
    jobs.evaluate_run(run_dir)  # the retriever, the references and the search block from the same Run
    assert counted == {"model": 1, "dataset": 1, "prepare": 1, "content": 1}


def test_no_module_opens_a_run_but_run_py() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in PACKAGE_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in ALLOWED
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OPENING_A_RUN.search(line)
    ]
    assert not found, "open runs through tandemrec.run.Run:\n" + "\n".join(found)


def test_the_jobs_are_exported_for_python_users() -> None:
    assert tandemrec.train is jobs.train
    assert tandemrec.index is jobs.build_index
    assert tandemrec.evaluate is jobs.evaluate_run
    assert tandemrec.Run is Run
    assert {"train", "index", "evaluate", "Run"} <= set(tandemrec.__all__)
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        _ = tandemrec.fit
