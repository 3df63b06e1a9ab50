"""Behaviour head and user segments of evaluated runs, as the markdown tables of benchmarks/results/behaviour.md.

Reads each RUN's metrics.json (`tandemrec evaluate RUN`, with a behaviour head: `tandemrec train` makes
one, `tandemrec behaviour RUN` remakes it) and, when present, RUN/profiles/summary.json
(`tandemrec profile RUN`). Per run: AUC, log-loss and conditional AUC per output on the test pairs, and
Recall@10 / NDCG@10 of the plain dot product next to the same candidates re-ordered by each output.

    .venv/bin/python benchmarks/behaviour.py runs/demo runs/ml-behaviour
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run_tables(run: Path) -> str:
    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{metrics_path} does not exist: run `tandemrec evaluate {run}` first")
    behaviour = json.loads(metrics_path.read_text()).get("behaviour")
    if behaviour is None:
        raise SystemExit(f"{metrics_path} has no behaviour block: the run has no head (`tandemrec behaviour {run}`)")
    pairs = behaviour["test_pairs"]
    lines = [
        f"### {run.name}",
        "",
        f"Test pairs: {pairs['observed']} observed, {pairs['sampled']} sampled items.",
        "",
        "| output | AUC | log-loss | positives | negatives | conditional AUC (observed pairs) | cond. pos / neg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in behaviour["outputs"].items():
        lines.append(
            f"| {name} | {_number(m['auc'])} | {m['log_loss']:.4f} | {m['positives']} | {m['negatives']} | "
            f"{_number(m['conditional_auc'])} | {m['conditional_positives']} / {m['conditional_negatives']} |"
        )
    rerank = behaviour["rerank"]
    lines += [
        "",
        f"Reranking ({rerank['users']} test users, top {rerank['candidates']} candidates of the dot product):",
        "",
        "| ranking | Recall@10 | NDCG@10 |",
        "| --- | ---: | ---: |",
    ]
    for name, m in rerank.items():
        if isinstance(m, dict):
            lines.append(f"| {name} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} |")
    summary = run / "profiles" / "summary.json"
    if summary.is_file():
        profile = json.loads(summary.read_text())
        ari = profile.get("ari_main_class")
        lines += ["", f"Segments: {profile['n_segments']} over {profile['users']} users"
                  + ("" if ari is None else f"; adjusted Rand index vs planted tastes {ari:.3f}") + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    args = parser.parse_args()
    print("\n".join(run_tables(run) for run in args.runs))


if __name__ == "__main__":
    main()
