"""The whole path on the demo's own config: the planted structure of the synthetic shop is learned."""
from __future__ import annotations

from pathlib import Path

import pytest

from tandemrec.config import load_config
from tandemrec.demo import run_demo
from tandemrec.io.run_folder import RunFolder
from tandemrec.retrieval.embeddings import read_embeddings
from tandemrec.retrieval.retriever import Retriever

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds


def test_demo_recall_is_at_least_3x_popularity_and_leaves_a_complete_run(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "demo")
    # The embedded demo config as shipped, two epochs instead of eight to keep CI short: the
    # validation recall peaks in the first epochs on this shop.
    shown: list[str] = []
    metrics = run_demo(load_config(None, ["train.epochs=2"]), run.root, show=shown.append, progress=False)

    ours, popularity = metrics["tandemrec"]["recall@10"], metrics["popularity"]["recall@10"]
    assert ours >= 3 * popularity, (ours, popularity)
    assert ours > 0.2
    assert metrics["users"]["evaluated"] > 500

    for path in (run.config, run.vocab / "items.json", run.model / "model.safetensors", run.model / "config.json",
                 run.model / "tokenizer", run.embeddings / "manifest.json", run.index / "index.faiss",
                 run.train_metrics, run.metrics, run.plots / "metrics.png", run.dataset / "manifest.json"):
        assert path.exists(), path
    report = "\n".join(shown)
    assert "recall@10" in report and "popularity" in report

    retriever = Retriever.load(run.root)
    ids, vectors, manifest = read_embeddings(run.embeddings, "items")
    assert manifest["count"] == len(retriever.index) == len(ids) == 1000
    assert manifest["normalized"]
