"""`tandemrec demo`: the whole path in one go, with a table a person can read at the end."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from tandemrec.config import RunConfig
from tandemrec.jobs import build_index, evaluate_run, train
from tandemrec.retrieval.retriever import Retriever


SYSTEMS = ("tandemrec", "popularity", "content_knn", "random")
_WIDTHS = (11, 12, 13, 10)
_HEADER = f"{'':<26}{'tandemrec':>11}{'popularity':>12}{'content-kNN':>13}{'random':>10}{'ratio':>8}"


def metrics_table(metrics: dict) -> str:
    """The evaluation as a table of at most 100 columns: all test targets (every metric), then recall and
    nDCG on warm targets, on cold targets (items without training events) over the full catalogue and on
    the new-arrivals shelf (only the cold items ranked), then cold exposure. `ratio` is tandemrec over the
    best reference; '-' marks a number the run does not have."""
    users = metrics["users"]
    lines = [_HEADER, f"all test targets ({users['evaluated']} users)", *_rows(metrics, list(metrics["tandemrec"]))]
    sections = {
        "warm": "warm targets",
        "cold": "cold targets, full catalogue",
        "new_arrivals": f"new-arrivals shelf: only the {metrics.get('new_arrivals', {}).get('items')} cold items",
    }
    for block, title in sections.items():
        if metrics.get(block, {}).get("users", {}).get("evaluated"):
            values = metrics[block]
            lines.append(f"{title} ({values['users']['evaluated']} users)")
            lines += _rows(values, [n for n in values["tandemrec"] if n.startswith(("recall@", "ndcg@"))])
    if "cold_exposure" in metrics:
        exposure = metrics["cold_exposure"]
        key, shown = next((k, v) for k, v in exposure.items() if k.startswith("cold_share_of_top"))
        slots = f"top-{key.removeprefix('cold_share_of_top')} slots"
        lines.append(f"cold exposure: {exposure['cold_share_of_targets']:.1%} of the targets are cold")
        lines.append(_row(f"share of {slots}", [shown.get(s) for s in SYSTEMS], ratio=False))
        lines.append(_row("shown/wanted (1 = fair)", [exposure.get(s) for s in SYSTEMS], ratio=False))
    lines.append(f"(full ranking, seen items excluded; {users['skipped']} users with only seen test items skipped;")
    lines.append(" cold: items without training events; random: exact expectation of a random ranking)")
    return "\n".join(lines)


def _rows(block: dict, names: list[str]) -> list[str]:
    return [_row(name, [block.get(s, {}).get(name) for s in SYSTEMS]) for name in names]


def _row(name: str, values: list[float | None], ratio: bool = True) -> str:
    """One line: the name, one column per system ('-': none), and tandemrec over the best reference."""
    cells = "".join(f"{'-' if v is None else f'{v:.4f}':>{w}}" for v, w in zip(values, _WIDTHS))
    best = max((v for v in values[1:] if v is not None), default=0.0)
    quotient = f"{values[0] / best:.1f}x" if ratio and values[0] is not None and best > 0 else "-"
    return f"  {name:<24}{cells}{quotient:>8}"


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
