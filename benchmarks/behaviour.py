"""Behaviour prediction of evaluated runs, as the markdown tables of benchmarks/results/behaviour.md.

Head mode (default): reads each RUN's metrics.json (`tandemrec evaluate RUN`, with a behaviour head) and,
when present, RUN/profiles/summary.json (`tandemrec profile RUN`): AUC, log-loss and conditional AUC per
output of the MLP head, and the rerank by it.

Outcome mode (`--outcome`): the RUNs are seeds of one setting; reads each RUN/behaviour/evaluation.json
(written by `tandemrec behaviour RUN` on an indexed run) and prints mean ± std over them: conditional AUC,
log-loss and expected calibration error of every candidate (the chosen scorer, the other kind, the bias
baseline, the MLP head), ranking AUC against sampled items, and Recall@10 / NDCG@10 of the rerank. On the
synthetic shop (its `shop/truth.parquet` next to the run) the planted-class oracle's conditional AUC is
computed on the same test pairs.

    .venv/bin/python benchmarks/behaviour.py runs/demo runs/ml-behaviour
    .venv/bin/python benchmarks/behaviour.py --outcome runs/beh/ml-s0 runs/beh/ml-s1 runs/beh/ml-s2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.behaviour_job import CHOSEN
from tandemrec.retrieval.metrics import roc_auc
from tandemrec.run import Run


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


def _spread(values: list[float | None]) -> str:
    """mean ± sample standard deviation over seeds (one value: no spread)."""
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(known):
        return "-"
    spread = f" ± {known.std(ddof=1):.4f}" if len(known) > 1 else ""
    return f"{known.mean():.4f}{spread}"


def _cell(text: str) -> str:
    """`text` safe in a markdown table cell ("P(target | interaction)" has a bar)."""
    return text.replace("|", "\\|")


def _observed_test(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "behaviour" / "pairs.parquet").filter(
        (pl.col("part") == "test") & (pl.col("kind") == "observed")
    )


def as_of_bias(run: Path) -> float | None:
    """Conditional AUC of the bias baseline fed what the model is fed: the item's mean (rating, else
    outcome rate) and the user's offset from every event strictly before the pair, not the training part
    only (the model's features `item_value_mean` or `item_outcome_rate`, plus `user_offset`)."""
    pairs = _observed_test(run)
    item = "item_value_mean" if pairs["item_value_mean"].is_not_null().any() else "item_outcome_rate"
    return roc_auc((pairs[item] + pairs["user_offset"]).to_numpy(), pairs["outcome"].to_numpy())


def planted_oracle(run: Path) -> float | None:
    """Conditional AUC on the run's observed test pairs of the synthetic shop's planted-class oracle: a
    pair scores 1 when the item is in the user's main taste class (its only purchase signal), else 0."""
    truth_path = run / "shop" / "truth.parquet"
    if not truth_path.is_file():
        return None
    vocabs = Run(run).vocabs
    pairs = _observed_test(run)
    items = pl.read_parquet(run / "dataset" / "items.parquet").select("item_id", "category")
    table = pl.DataFrame({
        "user_id": vocabs.users.decode(pairs["user_id"].to_numpy()),
        "item_id": vocabs.items.decode(pairs["item_id"].to_numpy()),
        "outcome": pairs["outcome"].to_numpy(),
    }).join(pl.read_parquet(truth_path), on="user_id", how="left").join(items, on="item_id", how="left")
    in_class = (table["category"] == table["main_class"]).fill_null(False).to_numpy().astype(float)
    return roc_auc(in_class, table["outcome"].to_numpy())


def outcome_tables(runs: list[Path]) -> str:
    """Mean ± std over the seeds `runs` of their RUN/behaviour/evaluation.json."""
    evaluations = []
    for run in runs:
        path = run / "behaviour" / "evaluation.json"
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: run `tandemrec behaviour {run}` on the indexed run first")
        evaluation = json.loads(path.read_text())
        # The chosen scorer's row under its kind's name too, so that every kind has a row on every seed.
        evaluation["conditional"][evaluation["chosen"]["conditional"]] = evaluation["conditional"][CHOSEN]
        evaluations.append(evaluation)
    first = evaluations[0]
    outcome = first["outcome"]
    chosen = ", ".join(sorted({f"{e['chosen']['conditional']} / {e['chosen']['relevance']}" for e in evaluations}))
    cond = first["conditional"][CHOSEN]
    lines = [
        f"Seeds: {len(runs)} ({', '.join(r.name for r in runs)}). Outcome: {outcome}. Chosen on validation "
        f"(conditional / relevance scorer): {chosen}. Conditional test pairs: {cond['positives']} with the outcome, "
        f"{cond['negatives']} without (seed {runs[0].name}).",
        "",
        f"| P({outcome} given an interaction) | conditional AUC | log-loss | ECE |",
        "| --- | ---: | ---: | ---: |",
    ]
    names = [CHOSEN] + sorted({n for e in evaluations for n in e["conditional"]} - {CHOSEN})
    for name in names:
        rows = [e["conditional"].get(name, {}) for e in evaluations]
        lines.append(f"| {_cell(name)} | {_spread([r.get('conditional_auc') for r in rows])} | "
                     f"{_spread([r.get('log_loss') for r in rows])} | {_spread([r.get('ece') for r in rows])} |")
    lines.append(f"| bias as of each pair | {_spread([as_of_bias(run) for run in runs])} | | |")
    oracle = [planted_oracle(run) for run in runs]
    if any(o is not None for o in oracle):
        lines.append(f"| planted-class oracle | {_spread(oracle)} | | |")
    lines += ["", f"| P({outcome}) against sampled items | AUC |", "| --- | ---: |"]
    for name in first["ranking"]:
        lines.append(f"| {_cell(name)} | {_spread([e['ranking'][name]['auc'] for e in evaluations])} |")
    rerank = first["rerank"]
    lines += [
        "",
        f"Rerank of the top {rerank['candidates']} of the dot product ({rerank['users']} test users with an unseen "
        f"{outcome} item, seed {runs[0].name}); ratio: mean over seeds of reranked / plain.",
        "",
        "| ranking | Recall@10 | NDCG@10 | ratio Recall@10 | ratio NDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, m in rerank.items():
        if not isinstance(m, dict):
            continue
        recall = [e["rerank"][name]["recall@10"] for e in evaluations]
        ndcg = [e["rerank"][name]["ndcg@10"] for e in evaluations]
        plain_r = [e["rerank"]["plain"]["recall@10"] for e in evaluations]
        plain_n = [e["rerank"]["plain"]["ndcg@10"] for e in evaluations]
        lines.append(f"| {_cell(name)} | {_spread(recall)} | {_spread(ndcg)} | "
                     f"{_spread([a / b for a, b in zip(recall, plain_r)])} | "
                     f"{_spread([a / b for a, b in zip(ndcg, plain_n)])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    parser.add_argument("--outcome", action="store_true", help="the RUNs are seeds: aggregate their outcome models")
    args = parser.parse_args()
    if args.outcome:
        print(outcome_tables(args.runs))
    else:
        print("\n".join(run_tables(run) for run in args.runs))


if __name__ == "__main__":
    main()
