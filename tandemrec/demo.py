"""`tandemrec demo`: the whole path in one go, with a table a person can read at the end."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from tandemrec.config import RunConfig
from tandemrec.jobs import build_index, evaluate_run, train
from tandemrec.retrieval.retriever import Retriever


def metrics_table(metrics: dict) -> str:
    names = list(metrics["tandemrec"])
    lines = [f"{'metric':<14}{'tandemrec':>11}{'popularity':>12}{'ratio':>8}"]
    for name in names:
        ours, pop = metrics["tandemrec"][name], metrics["popularity"][name]
        ratio = f"{ours / pop:.1f}x" if pop > 0 else "-"
        lines.append(f"{name:<14}{ours:>11.4f}{pop:>12.4f}{ratio:>8}")
    users = metrics["users"]
    lines.append(
        f"({users['evaluated']} test users, full ranking over the catalogue, seen items excluded; "
        f"{users['skipped']} users whose test items were all seen before are skipped)"
    )
    return "\n".join(lines)


def run_demo(config: RunConfig, run_dir: Path) -> dict:
    """Train, export, index and evaluate into a fresh run folder; print metrics and examples."""
    start = time.perf_counter()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = train(config, run_dir)
    print(f"trained {result.epochs_run} epochs, best epoch {result.best_epoch} "
          f"(validation recall@{config.train.eval_k} {result.best_recall:.4f})")
    build_index(run_dir)
    metrics = evaluate_run(run_dir)
    print()
    print(metrics_table(metrics))
    retriever = Retriever.load(run_dir)
    titles = dict(zip(retriever.catalogue["item_id"].to_list(), retriever.catalogue["title"].to_list()))
    users = retriever.vocabs.users.ids[1 : 1 + config.eval.examples]
    for user, recs in zip(users, retriever.recommend_batch(users, k=5)):
        history = retriever.features.log.items_before(retriever.vocabs.users.encode([user]), None)[0][-3:]
        print(f"\nuser {user}: recently {[titles[i] for i in retriever.vocabs.items.decode(history)]}")
        for item, score in zip(recs.ids, recs.scores):
            print(f"  {score:+.3f}  {titles[item]}")
    seconds = time.perf_counter() - start
    print(f"\nrun folder: {run_dir} ({seconds:.0f} s in all)")
    metrics["seconds"] = seconds
    return metrics
