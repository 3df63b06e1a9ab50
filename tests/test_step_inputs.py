"""A training step's inputs built ahead by DataLoader workers are the ones the step builds itself: the same
model comes out, hard negatives re-mined between epochs included."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config

# Every kind of input the workers build: mixed and hard negatives (mined after epoch 1), content-only rows.
SETTINGS = ("train.mixed_negatives=16", "train.hard_negatives=8", "train.content_loss_weight=0.5")


def _train(run: Path, workers: int) -> tuple[dict[str, torch.Tensor], list[dict]]:
    from tandemrec.jobs import train

    train(tiny_config(*SETTINGS, f"train.loader_workers={workers}", "behaviour.enabled=false"), run, progress=False)
    history = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    return load_file(run / "model" / "model.safetensors"), history


@pytest.mark.slow  # two trainings
def test_two_loader_workers_train_the_model_the_training_process_trains_alone(tmp_path: Path) -> None:
    alone, alone_history = _train(tmp_path / "alone", 0)
    ahead, ahead_history = _train(tmp_path / "ahead", 2)
    assert alone.keys() == ahead.keys()
    for name, tensor in alone.items():
        assert torch.equal(tensor, ahead[name]), name
    assert [r["train_loss"] for r in alone_history] == [r["train_loss"] for r in ahead_history]
    for row in alone_history + ahead_history:
        assert 0 <= row["input_wait_share"] < 1 and row["samples_per_second"] > 0
