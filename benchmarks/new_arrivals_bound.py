"""How far the new-arrivals shelf can go: the model against orderings known in hindsight on the same shelf.

The shelf ranks only the cold items (no training events) for each user with a cold target. When the shelf
is short (about 100 new movies on MovieLens 100K's temporal split), its random reference is already high,
so a ratio to random is bounded. Two orderings that read the evaluated part itself (neither is a system:
both look at the answers) say how far one ordering for everybody gets:
- `hindsight_popularity`: the cold items by how many users want them in the evaluated part, the user's own
  targets counted: about the best that any single ordering, the same for every user, can do;
- `others_demand`: the same, the user's own targets left out: what the period's popularity is worth as a
  signal, when most new items are wanted by one user only.
Next to them: the model, the content-kNN and random references, as `tandemrec evaluate` wrote them to
each run's metrics, mean ± std over the runs (seeds of one split).

    .venv/bin/python benchmarks/new_arrivals_bound.py runs/ft/frozen-s0 runs/ft/frozen-s1 runs/ft/frozen-s2
"""
from __future__ import annotations

import argparse
import json
import statistics
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tandemrec.io.atomic import atomic_write_text
from tandemrec.io.run_folder import RunFolder
from tandemrec.retrieval.cold_start import cold_rows
from tandemrec.retrieval.evaluate import unseen_targets
from tandemrec.retrieval.metrics import ranking_metrics
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run import Run

K = 10
SYSTEMS = ("tandemrec", "content_knn", "random")
ORACLES = ("hindsight_popularity", "others_demand")


def hindsight_recall(
    seen: list[np.ndarray], cold_targets: list[np.ndarray], cold: np.ndarray, own: bool
) -> tuple[float, int, float]:
    """Recall@K of ranking the cold items (less the user's seen ones) by their demand in the evaluated part,
    the user's own targets counted (`own`) or not; the number of users with a cold target; and the share
    of cold targets that no other user wants."""
    demand = np.zeros(int(cold.max()) + 1 if len(cold) else 0)
    for targets in cold_targets:
        demand[targets] += 1
    users = [i for i, t in enumerate(cold_targets) if len(t)]
    tops = np.full((len(users), K), -1, dtype=np.int64)
    for row, i in enumerate(users):
        scores = demand[cold] - (0 if own else np.isin(cold, cold_targets[i]))
        order = cold[np.argsort(-scores, kind="stable")]
        order = order[~np.isin(order, seen[i])][:K]
        tops[row, : len(order)] = order
    wanted = np.concatenate([cold_targets[i] for i in users])
    alone = float(np.mean(demand[wanted] == 1))
    return ranking_metrics(tops, [cold_targets[i] for i in users], [K], None)[f"recall@{K}"], len(users), alone


def measure(run_dir: Path, part: str) -> dict:
    """The run's shelf figures as evaluated, and the oracle's on the same queries."""
    folder = RunFolder(run_dir)
    path = folder.metrics if part == "test" else folder.metrics_valid
    shelf = json.loads(path.read_text())["new_arrivals"]
    run = Run(run_dir)
    cold = cold_rows(run.data.item_frequencies()[1:])
    seen, targets = unseen_targets(Retriever.load(run), run.data.test if part == "test" else run.data.valid)
    cold_targets = [np.intersect1d(t, cold) for t in targets]
    hindsight, users, alone = hindsight_recall(seen, cold_targets, cold, own=True)
    others = hindsight_recall(seen, cold_targets, cold, own=False)[0]
    figures = {name: shelf[name][f"recall@{K}"] for name in SYSTEMS}
    return {**figures, **{name: value for name, value in zip(ORACLES, (hindsight, others))},
            "users": users, "items": shelf["items"], "alone": alone}


def table(rows: list[dict], part: str, runs: list[Path]) -> str:
    names = [*SYSTEMS, *ORACLES]
    stats = {n: [r[n] for r in rows] for n in names}
    random = statistics.fmean(stats["random"])
    knn = statistics.fmean(stats["content_knn"])
    lines = [
        f"New-arrivals shelf, {part} part: {rows[0]['items']} cold items, {rows[0]['users']} users with a cold "
        f"target, {rows[0]['alone']:.0%} of their cold targets wanted by no other user; {len(rows)} runs "
        f"({', '.join(str(r) for r in runs)}); "
        f"{datetime.now(timezone.utc).isoformat(timespec='minutes')}",
        "",
        f"| system | recall@{K} | vs random | vs content-kNN |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        values = stats[name]
        mean = statistics.fmean(values)
        spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
        lines.append(f"| {name} | {mean:.4f}{spread} | {mean / random:.2f}x | {mean / knn:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluated run folders (seeds of one split)")
    parser.add_argument("--part", choices=("test", "valid"), default="test")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    text = table([measure(run, args.part) for run in args.runs], args.part, args.runs)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
