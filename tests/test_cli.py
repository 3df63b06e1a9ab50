"""The command line: every verb's help says what it reads and writes; verbs on a run and a dataset."""

import subprocess
import sys

import pytest

from tandemrec.cli import main
from tandemrec.data.dataset import Dataset
from tandemrec.retrieval.retriever import Retriever

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

VERBS = {
    ("demo",): ("Reads", "Writes"),
    ("train",): ("Reads", "Writes"),
    ("ablate",): ("Reads", "Writes"),
    ("benchmark",): ("Reads", "Writes"),
    ("index",): ("Reads", "Writes"),
    ("export",): ("Reads", "Writes"),
    ("evaluate",): ("Reads", "Writes"),
    ("recommend",): ("Reads", "Writes nothing"),
    ("similar",): ("Reads", "Writes nothing"),
    ("search",): ("Reads", "Writes nothing"),
    ("behaviour",): ("Reads", "Writes"),
    ("profile",): ("Reads", "Writes"),
    ("doctor",): ("Reads", "Writes nothing"),
    ("data", "synth"): ("Writes",),
    ("data", "import"): ("Reads", "Writes"),
    ("data", "validate"): ("Reads", "Writes nothing"),
}


@pytest.mark.parametrize("verb", list(VERBS), ids=" ".join)
def test_every_verb_has_help_saying_what_it_reads_and_writes(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tandemrec " + " ".join(verb))
    for word in VERBS[verb]:
        assert word in out


def test_top_level_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for verb in {verb[0] for verb in VERBS}:
        assert f"    {verb} " in out


def test_help_of_every_verb_starts_without_polars_or_torch():
    """`--help` stays instant: the CLI imports the data and model libraries only in the verb that runs."""
    code = (
        "import contextlib, io, sys\n"
        "from tandemrec.cli import main\n"
        f"for verb in {[list(verb) for verb in [(), *VERBS]]}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([*verb, '--help'])\n"
        "        except SystemExit as exit_:\n"
        "            assert exit_.code == 0, (verb, exit_.code)\n"
        "print(sorted(name for name in ('polars', 'torch', 'numpy') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [[], ["data"]], ids=["nothing", "data-alone"])
def test_no_verb_prints_help_and_fails(argv, capsys):
    assert main(argv) == 2
    assert "usage: tandemrec" in capsys.readouterr().out


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fly"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def table_item_ids(out: str, expected: list[str]) -> list[str]:
    """The expected ids in the order they appear in the printed table (each must appear)."""
    positions = {item: out.find(item) for item in expected}
    assert all(p >= 0 for p in positions.values()), positions
    return sorted(expected, key=positions.get)


@pytest.fixture(scope="module")
def retriever(trained_run):
    return Retriever.load(trained_run)


def test_recommend_prints_the_recommendations(trained_run, retriever, capsys):
    user = retriever.vocabs.users.ids[5]
    assert main(["recommend", str(trained_run), user, "-k", "4", "--ids"]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "item_id" in out and "title" in out and "category" in out and "score" in out
    expected = retriever.recommend(user, k=4).ids
    assert table_item_ids(out, expected) == expected


def test_recommend_include_seen(trained_run, retriever, capsys):
    user = retriever.vocabs.users.ids[5]
    assert main(["recommend", str(trained_run), user, "-k", "3", "--include-seen", "--ids"]) == 0
    expected = retriever.recommend(user, k=3, exclude_seen=False).ids
    assert table_item_ids(capsys.readouterr().out, expected) == expected


def test_recommend_reranked_by_the_behaviour_head(trained_run, retriever, capsys):
    user = retriever.vocabs.users.ids[5]
    assert main(["recommend", str(trained_run), user, "-k", "3", "--rerank", "purchase", "--ids"]) == 0
    expected = retriever.recommend(user, k=3, rerank="purchase").ids
    assert table_item_ids(capsys.readouterr().out, expected) == expected
    assert main(["recommend", str(trained_run), user, "--rerank", "refund"]) == 2
    assert "refund" in capsys.readouterr().err


def test_similar_prints_the_neighbours(trained_run, retriever, capsys):
    item = retriever.index.ids[2]
    assert main(["similar", str(trained_run), item, "-k", "3", "--ids"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 5  # header, rule and 3 rows
    expected = retriever.similar_items(item, k=3).ids
    assert table_item_ids(out, expected) == expected


def test_recommend_unknown_user_fails_with_a_message(trained_run, capsys):
    assert main(["recommend", str(trained_run), "nobody-at-all"]) == 2
    captured = capsys.readouterr()
    assert "tandemrec recommend: error:" in captured.err
    assert "nobody-at-all" in captured.err
    assert captured.out == ""


def test_similar_unknown_item_fails_with_a_message(trained_run, capsys):
    assert main(["similar", str(trained_run), "no-such-item"]) == 2
    assert "no-such-item" in capsys.readouterr().err


def test_recommend_bad_k_fails_with_a_message(trained_run, retriever, capsys):
    assert main(["recommend", str(trained_run), retriever.vocabs.users.ids[1], "-k", "0"]) == 2
    assert "k must be a positive integer" in capsys.readouterr().err


def test_recommend_on_a_missing_run(tmp_path, capsys):
    assert main(["recommend", str(tmp_path / "no-run"), "u1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_synth_then_validate(tmp_path, capsys):
    dest = tmp_path / "shop"
    assert main(["data", "synth", str(dest), "--users", "12", "--items", "25", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    dataset = Dataset.load(dest)
    assert dataset.items.height == 25
    assert dataset.users.height == 12
    assert f"wrote {dataset.interactions.height} interactions, 25 items" in out
    assert (dest / "images").is_dir() and (dest / "truth.parquet").is_file()

    assert main(["data", "validate", str(dest)]) == 0
    summary = capsys.readouterr().out
    n = dataset.interactions.height
    assert f"interactions: {n} rows in, {n} kept" in summary
    assert "items: 25 rows in, 25 kept" in summary


def test_data_synth_bad_size_fails_with_a_message(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "shop"), "--items", "3"]) == 2
    assert "config key 'n_items' must be >= n_classes (20), got 3" in capsys.readouterr().err
    assert not (tmp_path / "shop").exists()


def test_data_validate_missing_folder(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path / "nothing")]) == 2
    assert "tandemrec data: error:" in capsys.readouterr().err
