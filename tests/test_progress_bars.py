"""Every job longer than a few seconds shows a bar with a rate and a time left: on the command line
(progress=True), never from the library's defaults (tests and Python callers stay quiet)."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tandemrec.cli import main
from tandemrec.jobs import build_index, evaluate_run
from tandemrec.retrieval.config import IndexConfig
from tandemrec.retrieval.index_build import build_tuned_index

# tqdm's "desc:  50%|" line, as tests/bad_inputs/test_faults.py tells bars from error lines
BAR = r"(?m)(^|\r){}: +\d+%\|"


def bars(err: str, *descs: str) -> list[str]:
    """The descriptions among `descs` that no bar line on stderr shows."""
    return [desc for desc in descs if not re.search(BAR.format(re.escape(desc)), err)]


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def test_the_index_build_shows_its_stages_and_tuning_only_when_asked(capsys) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 8)).astype(np.float32)
    ids, queries = [f"item{i}" for i in range(len(vectors))], vectors[:100]
    config = IndexConfig(kind="ivf", min_recall=1.0, on_low_recall="warn")  # tuning widens nprobe
    quiet = build_tuned_index(vectors, ids, queries, config)
    assert "%|" not in capsys.readouterr().err
    shown = build_tuned_index(vectors, ids, queries, config, progress=True)
    assert bars(capsys.readouterr().err, "index build", "index tuning") == []
    assert shown.search_params == quiet.search_params and shown.metadata == quiet.metadata


@pytest.mark.slow
def test_evaluate_on_the_command_line_shows_its_embedding_and_ranking_bars(
    run_copy: Path, capsys, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TANDEMREC_CACHE", str(tmp_path / "cache"))  # an empty cache: the baselines are tuned
    assert main(["evaluate", str(run_copy)]) == 0
    err = capsys.readouterr().err
    assert bars(err, "evaluated users", "popularity", "content knn", "ease", "item_knn", "ease tuning") == [], err


@pytest.mark.slow
def test_evaluate_and_index_from_python_are_quiet_by_default_and_show_bars_when_asked(run_copy: Path, capsys) -> None:
    quiet = evaluate_run(run_copy)
    build_index(run_copy)
    assert "%|" not in capsys.readouterr().err
    shown = evaluate_run(run_copy, progress=True)
    build_index(run_copy, progress=True)
    err = capsys.readouterr().err
    assert bars(err, "evaluated users", "popularity", "items", "users", "index build") == [], err
    assert shown["tandemrec"] == quiet["tandemrec"] and shown["popularity"] == quiet["popularity"]
