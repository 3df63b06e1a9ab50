"""How far any recommender can go on the synthetic shop: the systems of benchmark runs against the
Bayes-optimal ranking of the same queries.

The shop's events are drawn from a known distribution (data/synthetic_truth.py), so the best
possible ranking of each evaluated user's unseen items can be computed: `posterior` infers the user's
classes from their earlier items and attributes, as a system could, and ranks by the generator's true
probabilities (the Bayes-optimal ranking: no system's expected recall is above it); `known_classes` is told
the user's true classes (an upper bound beyond any system). Both are scored by the metric code `evaluate`
uses, on the queries it used (seen items excluded); the systems' figures are read from each run's metrics.
A bar set as a multiple of the best baseline is then also a share of the Bayes-optimal ranking, and the
table says which.

    .venv/bin/python benchmarks/synthetic_bound.py runs/benchmark-long-tail/temporal/seed{0,1,2} \
        --out benchmarks/results/synthetic_bound-long-tail.md
    .venv/bin/python benchmarks/synthetic_bound.py runs/demo --out benchmarks/results/synthetic_bound-demo.md
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from tandemrec.data.synthetic import SyntheticShopConfig
from tandemrec.data.synthetic_truth import ShopTruth
from tandemrec.io.atomic import atomic_write_text
from tandemrec.io.run_folder import RunFolder
from tandemrec.retrieval.evaluate import unseen_targets
from tandemrec.retrieval.metrics import ranking_metrics
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run import Run
from tandemrec.seed_stats import cell, fmt, stat_of

K = 10
METRICS = (f"recall@{K}", f"ndcg@{K}")
SYSTEMS = ("tandemrec", "ease", "item_knn", "popularity")
BASELINES = ("ease", "item_knn", "popularity")
BOUNDS = ("posterior", "known_classes")
BAR = 1.10  # the bar: this multiple of the best baseline
CHUNK = 512  # users scored at once (a users x items matrix of float64)


def bound_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """Each bound's metrics on the run's test queries, and each system's as `evaluate` wrote them."""
    run = Run(run_dir)
    truth = ShopTruth.of(SyntheticShopConfig(**run.config.data.synthetic))
    retriever = Retriever.load(run)
    queries = run.data.test
    seen, targets = unseen_targets(retriever, queries)
    # Index row r of the run is item vocabulary index r + 1; both sides are mapped to the generator's order.
    position = {item: i for i, item in enumerate(truth.item_ids)}
    row_item = np.array([position[i] for i in run.vocabs.items.ids[1:]])
    user_position = {user: u for u, user in enumerate(truth.user_ids)}
    users = np.array([user_position[run.vocabs.users.ids[u]] for u in queries.users])
    histories = [row_item[items - 1] for items in retriever.features.log.items_before(queries.users, queries.times)]
    kept = [q for q, t in enumerate(targets) if len(t)]
    results = {}
    for bound in BOUNDS:
        tops = np.empty((len(kept), K), dtype=np.int64)
        for start in range(0, len(kept), CHUNK):
            chunk = kept[start : start + CHUNK]
            if bound == "posterior":
                shares = truth.posterior(users[chunk], [histories[q] for q in chunk])
            else:
                shares = truth.known_classes(users[chunk])
            scores = truth.probabilities(*shares)[:, row_item]
            for row, q in enumerate(chunk):
                scores[row, seen[q]] = -np.inf
            tops[start : start + len(chunk)] = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        results[bound] = ranking_metrics(tops, [targets[q] for q in kept], [K])
    written = json.loads(RunFolder(run_dir).metrics.read_text())
    for system in SYSTEMS:
        results[system] = written[system]
    return results


def table(rows: list[dict[str, dict[str, float]]], runs: list[Path]) -> str:
    stats = {name: {m: stat_of(r[name][m] for r in rows) for m in METRICS} for name in (*SYSTEMS, *BOUNDS)}
    bayes = stats["posterior"]
    best = {m: max(BASELINES, key=lambda b: stats[b][m].mean) for m in METRICS}
    lines = [
        f"Synthetic shop, test part, {len(rows)} runs ({', '.join(str(r) for r in runs)}); "
        f"{datetime.now(timezone.utc).isoformat(timespec='minutes')}. Share of Bayes = the figure over the "
        "Bayes-optimal ranking's (`posterior`); the difference in brackets is to tandemrec ('noise': under twice "
        "the larger standard deviation).",
        "",
        "| system | " + " | ".join(f"{m} | share of Bayes" for m in METRICS) + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in METRICS) + " |",
    ]
    for name in (*BOUNDS, *SYSTEMS):
        cells = []
        for m in METRICS:
            reference = None if name == "tandemrec" else stats["tandemrec"][m]
            figure = cell(stats[name][m], reference, 4) if len(rows) > 1 else fmt(stats[name][m].mean, 4)
            cells += [figure, f"{stats[name][m].mean / bayes[m].mean:.1%}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in METRICS:
        bar = BAR * stats[best[m]][m].mean
        verdict = "above" if bar > bayes[m].mean else "below"
        lines.append(
            f"- {m}: {BAR:.2f}x the best baseline ({best[m]}, {stats[best[m]][m].mean:.4f}) is {bar:.4f}, "
            f"{bar / bayes[m].mean:.1%} of the Bayes-optimal ranking's {bayes[m].mean:.4f}: {verdict} it; "
            f"tandemrec is at {stats['tandemrec'][m].mean / stats[best[m]][m].mean:.2f}x the baseline."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluated run folders on one synthetic shop")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    text = table([bound_metrics(run) for run in args.runs], args.runs)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
