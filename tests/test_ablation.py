"""`tandemrec ablate`: seeds per variant, mean ± std, the noise rule, variant sets, resuming."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from tandemrec import ablation
from tandemrec.ablation import (
    COLUMNS,
    METRICS,
    UNTESTED,
    VARIANT_SETS,
    Stat,
    Variant,
    ablation_table,
    difference,
    run_ablation,
    select_variants,
    summarise,
)
from tandemrec.cli import main

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds


def _row(variant: str, seed: int, recall: float, ndcg: float | None = None) -> dict:
    """A hand-made row of ablation.json; every metric but recall@10 (and ndcg@10 when given) absent."""
    row = {c.key: None for c in COLUMNS} | {"variant": variant, "seed": seed, "recall@10": recall, "ndcg@10": ndcg}
    return row | {"best_epoch": seed + 1, "train_seconds": 10.0 + seed}


def _table_cells(table: str, variant: str) -> dict[str, str]:
    """The cells of `variant`'s line of a markdown table, by header."""
    lines = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0]]
    line = next(cells for cells in lines if cells[0].strip() == variant)
    return dict(zip(header, (cell.strip() for cell in line)))


def test_summarise_takes_mean_and_sample_std_per_variant_in_order() -> None:
    rows = [_row("b", 0, 0.30), _row("a", 0, 0.50), _row("b", 1, 0.40), _row("b", 2, 0.20), _row("a", 1, 0.70)]
    b, a = summarise(rows)
    assert (b.variant, b.seeds, a.variant, a.seeds) == ("b", 3, "a", 2)
    assert b.stats["recall@10"].mean == pytest.approx(0.30)
    assert b.stats["recall@10"].std == pytest.approx(0.10)  # ddof=1: sqrt((0.01 + 0.01 + 0) / 2)
    assert a.stats["recall@10"].std == pytest.approx(0.1414214)
    assert a.stats["ndcg@10"] == Stat(None, None)
    assert a.stats["train_seconds"] == Stat(10.5, pytest.approx(0.7071068))


def test_summarise_leaves_one_seed_without_std() -> None:
    (only,) = summarise([_row("a", 0, 0.5)])
    assert only.stats["recall@10"] == Stat(0.5, None)


def test_difference_is_noise_within_twice_the_larger_std() -> None:
    reference = Stat(0.50, 0.01)
    assert difference(Stat(0.53, 0.02), reference) == "noise"  # 0.03 < 2 * 0.02
    assert difference(Stat(0.46, 0.01), reference) == "-0.0400"  # 0.04 >= 2 * 0.01
    assert difference(Stat(0.55, 0.001), reference) == "+0.0500"
    assert difference(Stat(0.55, 0.0), Stat(0.50, 0.0)) == "+0.0500"
    assert difference(Stat(0.55, None), reference) == UNTESTED
    assert difference(Stat(0.55, 0.01), Stat(0.50, None)) == UNTESTED
    assert difference(Stat(None, None), reference) == "-"


def test_table_shows_mean_std_and_marks_differences_to_the_first_variant() -> None:
    rows = [
        _row("ref", 0, 0.50, 0.30), _row("ref", 1, 0.52, 0.30),
        _row("close", 0, 0.51, 0.40), _row("close", 1, 0.53, 0.42),
    ]
    table = ablation_table(rows)
    ref, close = _table_cells(table, "ref"), _table_cells(table, "close")
    assert ref["recall@10"] == "0.5100 ± 0.0141"
    assert ref["ndcg@10"] == "0.3000 ± 0.0000"
    assert ref["cold recall@10"] == "-"
    assert ref["seeds"] == "2"
    assert close["recall@10"] == "0.5200 ± 0.0141 (noise)"
    assert close["ndcg@10"] == "0.4100 ± 0.0141 (+0.1100)"
    assert close["best epoch"] == "1.5 ± 0.7"  # training figures are not compared
    assert "`ref` (the first variant)" in table and "2 × the larger of the two standard deviations" in table
    assert UNTESTED not in table


def test_table_with_one_seed_leaves_std_out_and_tests_nothing() -> None:
    table = ablation_table([_row("ref", 0, 0.50, 0.30), _row("other", 0, 0.90, 0.10)])
    assert _table_cells(table, "ref")["recall@10"] == "0.5000 ± -"
    assert _table_cells(table, "other")["recall@10"] == f"0.9000 ± - ({UNTESTED})"
    assert _table_cells(table, "other")["ndcg@10"] == f"0.1000 ± - ({UNTESTED})"
    assert "With one seed" in table


def test_variant_sets_content_is_default_and_names_pick_across_sets() -> None:
    assert [v.name for v in select_variants()] == [
        "default", "image_random", "no_image", "text_random", "id_dropout", "content_only_new_items", "content_loss"
    ]
    assert select_variants()[1].overrides == ["model.item.image.random_init=true"]
    assert select_variants("transfer") == VARIANT_SETS["transfer"]
    assert [(v.name, v.overrides) for v in select_variants("text")] == [
        ("text_frozen", ["model.item.text.trainable_layers=0"]), ("text_top1", ["model.item.text.trainable_layers=1"])
    ]
    assert [v.name for v in select_variants(names=["joint", "no_image"])] == ["joint", "no_image"]
    with pytest.raises(ValueError, match="unknown variant"):
        select_variants(names=["nope"])
    with pytest.raises(ValueError, match="unknown variant set"):
        select_variants("nope")


def test_staged_variant_must_follow_its_first_stage(tmp_path: Path) -> None:
    staged = next(v for v in VARIANT_SETS["transfer"] if v.init_from)
    with pytest.raises(ValueError, match="must run before"):
        run_ablation(None, tmp_path, [staged], TINY_OVERRIDES)


class FakeJobs:
    """Stands in for training, indexing and evaluating: records each training's config and writes what a
    run leaves."""

    def __init__(self) -> None:
        self.trained: list[tuple[Path, int, int, str | None]] = []
        self.evaluated: list[tuple[str, str]] = []  # (run folder name, part)

    def train_and_index(self, config, run_dir: Path) -> None:
        self.trained.append((Path(run_dir), config.train.seed, config.data.split.seed, config.train.init_from))
        Path(run_dir).mkdir(parents=True, exist_ok=True)  # like the real one: a crashed run's folder may be there
        lines = [{"epoch": e, "valid_recall@10": r, "seconds": 2.0 * e} for e, r in [(1, 0.2), (2, 0.4), (3, 0.4)]]
        (Path(run_dir) / "train_metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    def evaluate_run(self, run_dir: Path, part: str = "test") -> dict:
        self.evaluated.append((f"{Path(run_dir).parent.name}/{Path(run_dir).name}", part))
        seed = int(Path(run_dir).name.removeprefix("seed"))
        if part == "valid":  # validation: other values, in the file the real job writes
            metrics = {"tandemrec": {"recall@10": 0.5 + 0.1 * seed}, "new_arrivals": {"tandemrec": {"recall@10": 0.3}}}
            (Path(run_dir) / "metrics_valid.json").write_text(json.dumps(metrics))
            return metrics
        metrics = {"tandemrec": {"recall@10": 0.1 * seed}, "cold_exposure": {"tandemrec": 0.25}}
        (Path(run_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics


@pytest.fixture
def fake_jobs(monkeypatch: pytest.MonkeyPatch) -> FakeJobs:
    jobs = FakeJobs()
    monkeypatch.setattr(ablation, "train_and_index", jobs.train_and_index)
    monkeypatch.setattr(ablation, "evaluate_run", jobs.evaluate_run)
    return jobs


def test_seeds_vary_training_not_the_split_and_staged_seed_starts_from_same_seed(
    tmp_path: Path, fake_jobs: FakeJobs
) -> None:
    variants = [Variant("first"), Variant("second", ["train.epochs=3"], init_from="first")]
    rows = run_ablation(None, tmp_path, variants, TINY_OVERRIDES, seeds=2)
    split_seed = fake_jobs.trained[0][2]
    assert fake_jobs.trained == [
        (tmp_path / "first" / "seed0", 0, split_seed, None),
        (tmp_path / "first" / "seed1", 1, split_seed, None),
        (tmp_path / "second" / "seed0", 0, split_seed, str(tmp_path / "first" / "seed0")),
        (tmp_path / "second" / "seed1", 1, split_seed, str(tmp_path / "first" / "seed1")),
    ]
    assert [(r["variant"], r["seed"]) for r in rows] == [("first", 0), ("first", 1), ("second", 0), ("second", 1)]
    assert rows[1]["recall@10"] == pytest.approx(0.1) and rows[1]["cold_exposure"] == 0.25
    assert rows[1]["valid/recall@10"] == pytest.approx(0.6) and rows[1]["valid/new_arrivals/recall@10"] == 0.3
    assert rows[1]["valid/ndcg@10"] is None and rows[1]["new_arrivals/recall@10"] is None
    assert fake_jobs.evaluated[:2] == [("first/seed0", "valid"), ("first/seed0", "test")]
    assert rows[1]["warm/recall@10"] is None and rows[1]["popularity"]["recall@10"] is None
    assert (rows[1]["best_epoch"], rows[1]["train_seconds"]) == (2, 6.0)  # the first epoch with the best recall
    assert _table_cells((tmp_path / "ablation.md").read_text(), "first")["cold exposure"] == "0.2500 ± 0.0000"


def test_a_second_call_continues_where_the_first_stopped(tmp_path: Path, fake_jobs: FakeJobs) -> None:
    variants = [Variant("first"), Variant("second")]
    run_ablation(None, tmp_path, variants[:1], TINY_OVERRIDES, seeds=2)
    (tmp_path / "first" / "seed1" / "metrics.json").unlink()  # as if it crashed before evaluating
    fake_jobs.trained.clear()
    rows = run_ablation(None, tmp_path, variants, TINY_OVERRIDES, seeds=2)
    assert [(t[0].parent.name, t[1]) for t in fake_jobs.trained] == [("first", 1), ("second", 0), ("second", 1)]
    assert json.loads((tmp_path / "ablation.json").read_text()) == rows and len(rows) == 4


def test_a_run_without_validation_metrics_is_evaluated_on_validation_not_retrained(
    tmp_path: Path, fake_jobs: FakeJobs
) -> None:
    run_ablation(None, tmp_path, [Variant("first")], TINY_OVERRIDES, seeds=1)
    (tmp_path / "first" / "seed0" / "metrics_valid.json").unlink()  # evaluated before validation was
    fake_jobs.trained.clear()
    fake_jobs.evaluated.clear()
    (row,) = run_ablation(None, tmp_path, [Variant("first")], TINY_OVERRIDES, seeds=1)
    assert fake_jobs.trained == [] and fake_jobs.evaluated == [("first/seed0", "valid")]
    assert row["valid/recall@10"] == pytest.approx(0.5)


def test_ablation_trains_seeds_tabulates_plots_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real tiny runs: two variants x two seeds, then a second call that must not train anything."""
    base = [*TINY_OVERRIDES, "train.epochs=1", "behaviour.enabled=false"]
    variants = [Variant("default"), Variant("no_image", ["model.item.image=false"])]
    rows = run_ablation(None, tmp_path, variants, base, seeds=2)

    assert json.loads((tmp_path / "ablation.json").read_text()) == rows
    assert [(r["variant"], r["seed"]) for r in rows] == [("default", 0), ("default", 1), ("no_image", 0), ("no_image", 1)]
    assert rows[0]["recall@10"] != rows[1]["recall@10"] or rows[0]["ndcg@10"] != rows[1]["ndcg@10"]
    table = (tmp_path / "ablation.md").read_text()
    for variant in ("default", "no_image"):
        mine = [r for r in rows if r["variant"] == variant]
        cells = _table_cells(table, variant)
        for column in METRICS:
            values = [r[column.key] for r in mine]
            if None in values:
                assert cells[column.label] == "-"
                continue
            mean, std = statistics.fmean(values), statistics.stdev(values)
            assert cells[column.label].startswith(f"{mean:.4f} ± {std:.4f}")
    ref = [r["recall@10"] for r in rows[:2]]
    other = [r["recall@10"] for r in rows[2:]]
    delta = statistics.fmean(other) - statistics.fmean(ref)
    noise = abs(delta) < 2 * max(statistics.stdev(ref), statistics.stdev(other))
    assert _table_cells(table, "no_image")["recall@10"].endswith("(noise)" if noise else f"({delta:+.4f})")
    assert (tmp_path / "ablation.png").stat().st_size > 0

    models = sorted((tmp_path).glob("*/seed*/model/*"))
    assert len({m.parent.parent for m in models}) == 4
    mtimes = [m.stat().st_mtime_ns for m in models]
    monkeypatch.setattr(ablation, "train_and_index", pytest.fail)
    assert run_ablation(None, tmp_path, variants, base, seeds=2) == rows
    assert [m.stat().st_mtime_ns for m in models] == mtimes


def test_cli_ablate_help_lists_seeds_and_sets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    text = capsys.readouterr().out
    assert "--seeds" in text and "--set-name" in text and "--variants" in text
    for name, variants in VARIANT_SETS.items():
        assert name in text and all(v.name in text for v in variants)
