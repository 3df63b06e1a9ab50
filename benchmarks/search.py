"""Search benchmark: product search of indexed runs against its two references, on queries from metadata.

For each run folder: the test half of the metadata queries (category/genre names such as "Western movies",
title keywords; relevance from the metadata, see retrieval/search_eval.py) ranked by `Retriever.search`
with the run's stored weights, by the text encoder's nearest item texts alone and by BM25 over item text
alone: precision@10, NDCG@10, recall@10 per query kind and their mean over kinds. Then personalised
search on the run's test events (the held-out item's category as the query, the item as the target):
NDCG@10 with and without the user's vector, and the query's precision@10 kept. Several runs (seeds) give
mean and standard deviation. It is the `search` block that `tandemrec evaluate` writes into metrics.json.

    .venv/bin/python -m tandemrec.cli train configs/movielens-transfer.toml --run runs/s0 --set train.seed=0
    .venv/bin/python -m tandemrec.cli index runs/s0          # stores RUN/search/ (weights chosen on validation)
    .venv/bin/python benchmarks/search.py runs/s0 runs/s1 runs/s2 --out benchmarks/results/search.md
    .venv/bin/python benchmarks/search.py runs/s0 runs/s1 --stored   # the blocks `evaluate` already wrote
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tandemrec.io.atomic import atomic_write_text
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run import Run
from tandemrec.search_job import evaluate_search

SYSTEMS = ("search", "text_encoder_knn", "bm25")
METRICS = ("precision@10", "ndcg@10", "recall@10")
PERSONAL = ("ndcg@10_query_only", "ndcg@10_personalised", "ndcg_ratio", "precision@10_query_only",
            "precision@10_personalised", "personal_weight")


def run_block(run_dir: Path) -> dict:
    """The search block of one indexed run (as `tandemrec evaluate` computes it)."""
    run = Run(run_dir)
    return evaluate_search(Retriever.load(run), run.data, run.config)


def cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(blocks: list[dict]) -> str:
    kinds = [k for k in blocks[0]["search"] if k != "all"] + ["all"]
    lines = ["| queries | system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for kind in kinds:
        count = blocks[0]["search"][kind].get("queries")
        for system in SYSTEMS:
            values = [cell([b[system][kind][m] for b in blocks]) for m in METRICS]
            lines.append(f"| {kind}{f' ({count})' if count else ''} | {system} | " + " | ".join(values) + " |")
    personal = [b["personalised"] for b in blocks if "personalised" in b]
    if personal:
        lines += ["", "| personalised search (" + f"{personal[0]['events']} test events) | value |", "|---|---|"]
        lines += [f"| {name} | {cell([p[name] for p in personal if p[name] is not None])} |" for name in PERSONAL]
    weights = ", ".join(f"{b['weights']}" for b in blocks)
    return "\n".join([*lines, "", f"weights per run: {weights}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="indexed run folders (e.g. one per seed)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--stored", action="store_true", help="read RUN/metrics.json's search block, not measure")
    args = parser.parse_args()
    read = (lambda run: json.loads((run / "metrics.json").read_text())["search"]) if args.stored else run_block
    text = table([read(run) for run in args.runs])
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
