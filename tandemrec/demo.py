"""`tandemrec demo`: the whole path in one go, with a table a person can read at the end."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from tandemrec.config import RunConfig
from tandemrec.jobs import build_index, evaluate_run, train
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run_lock import clear_run, writes_run

log = logging.getLogger(__name__)

SYSTEMS = ("tandemrec", "popularity", "item_knn", "ease", "content_knn", "random")
_NAMES = ("tandemrec", "popularity", "item-kNN", "EASE", "content-kNN", "random")
_WIDTHS = (11, 11, 10, 9, 12, 9)
_HEADER = f"{'':<26}" + "".join(f"{n:>{w}}" for n, w in zip(_NAMES, _WIDTHS)) + f"{'ratio':>8}"


def metrics_table(metrics: dict) -> str:
    """The evaluation as a table of at most 100 columns: all test targets (every metric), then recall and
    nDCG on warm targets, on cold targets (items without training events) over the full catalogue and on
    the new-arrivals shelf (only the cold items ranked), then cold exposure, then product search. `ratio`
    is tandemrec over the best reference (EASE and item-kNN tuned on validation among them); '-' marks a
    number the run does not have."""
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
    if metrics.get("search"):
        lines += _search_rows(metrics["search"])
    lines.append(f"(full ranking, seen items excluded; {users['skipped']} users with only seen test items skipped;")
    lines.append(" cold: items without training events; random: exact expectation of a random ranking)")
    return "\n".join(lines)


def _search_rows(search: dict) -> list[str]:
    """Product search on the metadata test queries: search, then its references (text-encoder kNN, BM25)."""
    lines = [f"{'product search':<26}{'search':>11}{'encoder-kNN':>12}{'BM25':>8}{'ratio':>8}"]
    for metric in ("precision@10", "ndcg@10"):
        values = [search[s]["all"][metric] for s in ("search", "text_encoder_knn", "bm25")]
        best = max(values[1:])
        quotient = f"{values[0] / best:.2f}x" if best > 0 else "-"
        lines.append(f"  {metric:<24}{values[0]:>11.4f}{values[1]:>12.4f}{values[2]:>8.4f}{quotient:>8}")
    personal = search.get("personalised")
    if personal and personal["ndcg_ratio"] is not None:
        lines.append(
            f"  personalised ndcg@10 of the user's next item: {personal['ndcg@10_personalised']:.4f} vs "
            f"{personal['ndcg@10_query_only']:.4f} for the query alone ({personal['ndcg_ratio']:.1f}x)"
        )
    return lines


def _rows(block: dict, names: list[str]) -> list[str]:
    return [_row(name, [block.get(s, {}).get(name) for s in SYSTEMS]) for name in names]


def _row(name: str, values: list[float | None], ratio: bool = True) -> str:
    """One line: the name, one column per system ('-': none), and tandemrec over the best reference."""
    cells = "".join(f"{'-' if v is None else f'{v:.4f}':>{w}}" for v, w in zip(values, _WIDTHS))
    best = max((v for v in values[1:] if v is not None), default=0.0)
    quotient = f"{values[0] / best:.2f}x" if ratio and values[0] is not None and best > 0 else "-"
    return f"  {name:<24}{cells}{quotient:>8}"


def _log_text(text: str) -> None:
    log.info("%s", text.strip("\n"))


@writes_run
def run_demo(
    config: RunConfig, run_dir: Path, show: Callable[[str], None] = _log_text, progress: bool = True
) -> dict:
    """Train, export, index and evaluate into a fresh run folder; its metrics, with the seconds it took.

    The report (the training outcome, the metrics table, example recommendations, the run folder) goes to
    `show` one block at a time, as each is ready: logged at INFO by default, printed by `tandemrec demo`.
    `progress` shows the bars of training, embedding, indexing and evaluating."""
    start = time.perf_counter()
    clear_run(run_dir)
    result = train(config, run_dir, progress=progress)
    show(f"trained {result.epochs_run} epochs, best epoch {result.best_epoch} "
         f"(validation recall@{config.train.eval_k} {result.best_recall:.4f})")
    build_index(run_dir, progress=progress)
    metrics = evaluate_run(run_dir, progress=progress)
    show("\n" + metrics_table(metrics))
    retriever = Retriever.load(run_dir)
    titles = dict(zip(retriever.catalogue["item_id"].to_list(), retriever.catalogue["title"].to_list()))
    users = retriever.vocabs.users.ids[1 : 1 + config.eval.examples]
    for user, recs in zip(users, retriever.recommend_batch(users, k=5)):
        history = retriever.features.log.items_before(retriever.vocabs.users.encode([user]), None)[0][-3:]
        lines = [f"\nuser {user}: recently {[titles[i] for i in retriever.vocabs.items.decode(history)]}"]
        lines += [f"  {score:+.3f}  {titles[item]}" for item, score in zip(recs.ids, recs.scores)]
        show("\n".join(lines))
    seconds = time.perf_counter() - start
    show(f"\nrun folder: {run_dir} ({seconds:.0f} s in all)")
    metrics["seconds"] = seconds
    return metrics
