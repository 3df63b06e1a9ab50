"""The command line on bad input: a user's mistake is one line on stderr naming the culprit and exit 2,
nothing half-written; a bug keeps its traceback; usage errors are argparse's (exit 2 too)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from tandemrec.cli import main

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

TINY = [arg for override in TINY_OVERRIDES for arg in ("--set", override)]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *culprits: str) -> str:
    """Run the CLI, expect exit 2 and one stderr line saying which verb failed and naming every culprit."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err  # one line: no traceback, no log noise
    assert lines[0].startswith(f"tandemrec {argv[0]}: error: "), lines[0]
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("shop"))
    return copy


@pytest.mark.parametrize(
    ("override", "culprits"),
    [
        ("train.lr=-0.01", ["train.lr", "-0.01"]),
        ("model.dim=0", ["model.dim", "0"]),
        ("train.epochs=abc", ["train.epochs", "abc"]),
        ("train.epochs=1.5", ["train.epochs", "1.5"]),
        ("model.temperature=-1", ["model.temperature", "-1"]),
        ("train.batch_size=true", ["train.batch_size", "True"]),
        ("model.item.fusion=sum", ["model.item.fusion", "sum"]),
        ("model.item.modality_dropout=1.5", ["model.item.modality_dropout", "1.5"]),
        ("train.nothing=1", ["train.nothing"]),
        ("nosection.key=1", ["nosection"]),
        ("train.epochs", ["train.epochs", "section.key=value"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_override_is_refused_before_anything_is_written(override, culprits, tmp_path, capsys):
    refused(["train", "demo", "--run", str(tmp_path / "run"), "--set", override], capsys, *culprits)
    assert not (tmp_path / "run").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    refused(["train", str(tmp_path / "nope.toml"), "--run", str(tmp_path / "run")], capsys, "nope.toml")


def test_a_config_file_that_is_not_toml_is_named(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("[train\nepochs = 2\n")
    refused(["train", str(tmp_path / "bad.toml"), "--run", str(tmp_path / "run")], capsys, "bad.toml", "TOML")


def test_a_run_folder_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    refused(["train", "demo", "--run", str(target), *TINY], capsys, str(target), "is a file")
    assert target.read_text() == "mine"


def test_demo_into_a_file_is_refused_and_the_file_kept(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    refused(["demo", "--run", str(target), *TINY], capsys, str(target), "is a file")
    assert target.read_text() == "mine"


def test_demo_on_missing_data_names_the_path(tmp_path, capsys):
    missing = tmp_path / "no-movielens"
    refused(["demo", "--data", "movielens", str(missing), "--run", str(tmp_path / "run")], capsys, str(missing))


def test_resume_of_an_empty_folder_names_the_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    refused(["train", "demo", "--run", str(tmp_path / "run"), "--resume", *TINY], capsys, "cannot resume", str(tmp_path / "run"))


def test_init_from_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    refused(
        ["train", "demo", "--run", str(tmp_path / "run"), "--init-from", str(tmp_path / "empty"), *TINY],
        capsys, "--init-from", "not a trained run folder",
    )


@pytest.mark.parametrize("verb", ["index", "export", "evaluate", "behaviour", "profile"])
def test_a_job_on_a_missing_run_names_it(verb, tmp_path, capsys):
    refused([verb, str(tmp_path / "no-run")], capsys, "no-run")


@pytest.mark.parametrize("verb", [["recommend", "u1"], ["similar", "i1"], ["search", "lamp"]])
def test_a_query_on_a_missing_run_names_it(verb, tmp_path, capsys):
    refused([verb[0], str(tmp_path / "no-run"), *verb[1:]], capsys, "no-run", "does not exist")


def test_a_query_on_a_run_that_was_never_indexed_says_what_to_run(run_copy, capsys):
    shutil.rmtree(run_copy / "index")
    refused(["recommend", str(run_copy), "u1"], capsys, "index/", "index the run")


def test_export_of_unknown_formats_is_refused(run_copy, capsys):
    refused(["export", str(run_copy), "--format", "csv"], capsys, "csv")
    assert not (run_copy / "embeddings" / "items.csv").exists()


def test_evaluate_a_part_that_does_not_exist_is_a_usage_error(run_copy, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", str(run_copy), "--part", "train"])
    assert exit.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["recommend", "RUN", "u1", "-k", "ten"], "invalid int value: 'ten'"),
        (["index", "RUN", "--kind", "lsh"], "invalid choice: 'lsh'"),
        (["index", "RUN", "--min-recall", "high"], "invalid float value: 'high'"),
        (["data", "import", "csvfile", "src", "dest"], "invalid choice: 'csvfile'"),
        (["ablate", "--seeds", "2"], "the following arguments are required: --out"),
    ],
    ids=["k-not-int", "unknown-index-kind", "recall-not-float", "unknown-format", "missing-out"],
)
def test_malformed_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_ablation_of_an_unknown_variant_is_refused(tmp_path, capsys):
    refused(["ablate", "--out", str(tmp_path / "out"), "--variants", "default,bogus"], capsys, "bogus")
    assert not (tmp_path / "out").exists()


def test_ablation_with_no_seed_is_refused(tmp_path, capsys):
    refused(["ablate", "--out", str(tmp_path / "out"), "--seeds", "0"], capsys, "at least one variant and one seed")


def test_import_of_a_missing_source_names_it(tmp_path, capsys):
    refused(["data", "import", "movielens", str(tmp_path / "nowhere"), str(tmp_path / "ds")], capsys, "nowhere")
    assert not (tmp_path / "ds").exists()


def test_posters_apply_to_movielens_only(tmp_path, capsys):
    refused(
        ["data", "import", "hm", str(tmp_path), str(tmp_path / "ds"), "--posters", str(tmp_path)],
        capsys, "--posters", "movielens",
    )


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    import tandemrec.jobs

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug, not the user's")

    monkeypatch.setattr(tandemrec.jobs, "evaluate_run", broken)
    with pytest.raises(ZeroDivisionError, match="a bug, not the user's"):
        main(["evaluate", str(tmp_path)])


def test_ctrl_c_is_a_quiet_exit_130(monkeypatch, tmp_path, capsys):
    import tandemrec.export_job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tandemrec.export_job, "export_run", interrupted)
    assert main(["export", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "tandemrec export: interrupted"
