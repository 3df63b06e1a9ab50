"""`tandemrec benchmark` on tiny real runs: its numbers are what evaluate wrote, and it resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from tandemrec import benchmark
from tandemrec.benchmark import (
    BASELINES, METRICS, PROTOCOLS, SYSTEM, Tuning, candidates, default_protocols, run_benchmark,
)
from tandemrec.cli import main
from tandemrec.config import load_config
from tandemrec.data.split import split_by
from tandemrec.errors import ArgumentError, ConfigError
from tandemrec.io.run_folder import RunFolder
from tandemrec.jobs import load_dataset
from tandemrec.seed_stats import cell, stat_of

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

BASE = [*TINY_OVERRIDES, "train.epochs=1", "behaviour.enabled=false", "data.split.min_train=2"]


def test_benchmark_reports_what_evaluate_wrote_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["benchmark", "--out", str(tmp_path), "--protocols", "temporal", "--seeds", "2",
                 *(a for o in BASE for a in ("--set", o))]) == 0
    rows = json.loads((tmp_path / "benchmark.json").read_text())["rows"]
    assert [(r["protocol"], r["seed"]) for r in rows] == [("temporal", 0), ("temporal", 1)]
    metrics = [json.loads((tmp_path / "temporal" / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    for row, written in zip(rows, metrics):
        for system in (SYSTEM, *BASELINES):
            assert row["systems"][system] == {m: written[system][m] for m in METRICS}
        assert set(written["baseline_settings"]) == {"ease", "item_knn"}
    for seed in (0, 1):  # a measured run is never resumed: its checkpoints are gone, its model is not
        folder = RunFolder(tmp_path / "temporal" / f"seed{seed}")
        assert not folder.checkpoints.exists() and (folder.model / "model.safetensors").is_file()
    assert metrics[0]["ease"] == metrics[1]["ease"]  # the split, and so every baseline, is the seeds' own

    table = (tmp_path / "benchmark.md").read_text()
    line = next(l for l in table.splitlines() if f"| {SYSTEM} |" in l)
    for m in METRICS:
        mean_std = cell(stat_of(w[SYSTEM][m] for w in metrics), None, 4)
        best = max(metrics[0][b][m] for b in BASELINES)
        ratio = stat_of(w[SYSTEM][m] for w in metrics).mean / best
        assert f"**{mean_std}** ({ratio:.2f}x" in line
    assert (tmp_path / "benchmark.png").stat().st_size > 0

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(benchmark, "train_and_index", no_training)
    assert run_benchmark(None, tmp_path, ["temporal"], 2, BASE) == rows


def test_tuning_chooses_on_validation_and_only_the_chosen_runs_see_the_test(tmp_path: Path) -> None:
    tune = [Tuning.parse("train.embedding_lr=0.0001, 0.05")]
    rows = run_benchmark(None, tmp_path, ["temporal"], 1, BASE, tune)
    names = ("train.embedding_lr=0.0001", "train.embedding_lr=0.05")
    folders = {n: tmp_path / "temporal" / n / "seed0" for n in names}
    valid = {n: json.loads(RunFolder(f).metrics_valid.read_text())[SYSTEM]["ndcg@10"] for n, f in folders.items()}
    chosen = max(valid, key=valid.get)
    assert rows[0]["tuned"] == {"chosen": chosen, "valid_ndcg@10": valid}
    assert rows[0]["run"] == str(folders[chosen])
    assert [n for n, f in folders.items() if RunFolder(f).metrics.exists()] == [chosen]
    assert not (tmp_path / "temporal" / "seed0").exists()
    table = (tmp_path / "benchmark.md").read_text()
    assert f"temporal: {chosen} ({names[0]}: {valid[names[0]]:.4f}, {names[1]}: {valid[names[1]]:.4f})" in table


def test_several_tunings_try_every_combination() -> None:
    tunings = [Tuning.parse("train.target_weight=0,1"), Tuning.parse("model.user.history_encoder=mean,attention")]
    assert candidates(tunings) == [
        "train.target_weight=0,model.user.history_encoder=mean",
        "train.target_weight=0,model.user.history_encoder=attention",
        "train.target_weight=1,model.user.history_encoder=mean",
        "train.target_weight=1,model.user.history_encoder=attention",
    ]
    assert candidates(tunings[:1]) == ["train.target_weight=0", "train.target_weight=1"]


def test_tuning_is_checked_before_anything_trains(tmp_path: Path) -> None:
    for bad in ("train.target_weight", "train.target_weight=1", "=0,1", "train.target_weight=0,,1"):
        with pytest.raises(ArgumentError, match=r"--tune takes KEY=V1,V2\[,...\]"):
            Tuning.parse(bad)
    with pytest.raises(ConfigError, match="train.epochs"):
        run_benchmark(None, tmp_path, ["temporal"], 1, tune=[Tuning.parse("train.epochs=1,zero")])
    assert not any(tmp_path.iterdir())
    target_weight = Tuning.parse("train.target_weight=0,1")
    assert not target_weight.applies(load_config(None))  # one domain: every value would train the same model
    assert target_weight.applies(load_config("configs/movielens-benchmark.toml"))
    assert Tuning.parse("train.lr=0.001,0.002").applies(load_config(None))


def test_protocols_follow_the_config() -> None:
    assert default_protocols(load_config(None)) == ["temporal", "leave_last_out", "global_cut"]
    transfer = load_config("configs/movielens-benchmark.toml")
    assert default_protocols(transfer) == ["temporal", "target", "target_sparse"]
    with pytest.raises(ArgumentError, match="target domain"):
        run_benchmark(None, Path("unused"), ["target"], 1)
    with pytest.raises(ArgumentError, match="given split"):
        run_benchmark(None, Path("unused"), ["given"], 1)


def test_global_cut_holds_out_the_last_fifth_of_the_events_in_time(tmp_path: Path) -> None:
    base = load_config(None, TINY_OVERRIDES)
    config = load_config(None, [*TINY_OVERRIDES, *PROTOCOLS["global_cut"].overrides(base, tmp_path)])
    events = load_dataset(config.data, RunFolder(tmp_path / "again")).interactions
    split = split_by(events, config.data.split)
    shares = [len(part) / len(events) for part in (split.train, split.valid, split.test)]
    assert shares == pytest.approx([0.7, 0.1, 0.2], abs=0.01)
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
