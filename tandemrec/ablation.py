"""`tandemrec ablate`: train variants of one config side by side on the same split and compare them.

Every variant is the base config plus overrides, trained into its own run folder, indexed and
evaluated the same way; the table and the bar plot put the numbers next to each other.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from tandemrec.config import RunConfig, load_config
from tandemrec.data.atomic import atomic_write_json, atomic_write_text
from tandemrec.jobs import build_index, evaluate_run, train
from tandemrec.plots import grouped_bars


@dataclass
class Variant:
    name: str
    overrides: list[str] = field(default_factory=list)
    init_from: str | None = None  # another variant's name: staged training starts from its model


DEFAULT_VARIANTS = [
    Variant("target_only", ['train.domains="target"']),
    Variant("joint", ['train.domains="joint"']),
    Variant("source_stage", ['train.domains="source"']),
    Variant("staged", ['train.domains="target"'], init_from="source_stage"),
    Variant("joint_random_text", ['train.domains="joint"', "model.item.text.pretrained=false"]),
    Variant("joint_no_image", ['train.domains="joint"', "model.item.image=false"]),
    Variant("joint_gated_fusion", ['train.domains="joint"', 'model.item.fusion="gated"']),
]

METRICS = ("recall@10", "ndcg@10")


def run_ablation(config_path: str | None, out: Path, names: list[str] | None, base_overrides: list[str]) -> list[dict]:
    """Train, index and evaluate each variant into out/<name>; write out/ablation.{json,md,png}."""
    variants = [v for v in DEFAULT_VARIANTS if names is None or v.name in names]
    missing_stage = {v.init_from for v in variants if v.init_from} - {v.name for v in variants}
    if missing_stage:
        raise ValueError(f"variant(s) {sorted(missing_stage)} must run too: later variants start from them")
    unknown = set(names or []) - {v.name for v in DEFAULT_VARIANTS}
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; known: {[v.name for v in DEFAULT_VARIANTS]}")
    rows = []
    for variant in variants:
        config = load_config(config_path, [*base_overrides, *variant.overrides])
        if variant.init_from:
            config = dataclasses.replace(
                config, train=dataclasses.replace(config.train, init_from=str(out / variant.init_from))
            )
        rows.append(_run_variant(variant.name, config, out / variant.name))
        atomic_write_json(out / "ablation.json", rows)
    atomic_write_text(out / "ablation.md", ablation_table(rows))
    plot_ablation(rows, out / "ablation.png")
    return rows


def _run_variant(name: str, config: RunConfig, run_dir: Path) -> dict:
    result = train(config, run_dir, progress=False)
    build_index(run_dir)
    metrics = evaluate_run(run_dir)
    row = {"variant": name, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)}
    for part in ("all", "cold"):
        block = metrics if part == "all" else metrics.get("cold", {})
        for metric in METRICS:
            for system in ("tandemrec", "popularity"):
                row[f"{part}/{system}/{metric}"] = block.get(system, {}).get(metric)
    return row


def ablation_table(rows: list[dict]) -> str:
    header = ["variant", *(f"{m}" for m in METRICS), *(f"cold {m}" for m in METRICS), "best epoch", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [row["variant"]]
        cells += [_fmt(row[f"all/tandemrec/{m}"]) for m in METRICS]
        cells += [_fmt(row[f"cold/tandemrec/{m}"]) for m in METRICS]
        cells += [str(row["best_epoch"]), str(row["seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    popularity = rows[0] if rows else None
    if popularity:
        cells = ["popularity"] + [_fmt(popularity[f"all/popularity/{m}"]) for m in METRICS]
        cells += [_fmt(popularity[f"cold/popularity/{m}"]) for m in METRICS] + ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def plot_ablation(rows: list[dict], path: Path) -> None:
    keys = [f"{part}/tandemrec/{m}" for part in ("all", "cold") for m in METRICS]
    grouped_bars(
        [k.replace("/tandemrec/", " ") for k in keys],
        {row["variant"]: [row[k] or 0.0 for k in keys] for row in rows},
        "ablation: test split, seen items excluded",
        path,
    )
