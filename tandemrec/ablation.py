"""`tandemrec ablate`: train variants of one config side by side on the same split and compare them.

Every variant is the base config plus overrides, trained once per seed (`train.seed` = 0..N-1; the data
split keeps its own seed, so every run sees the same split) into `OUT/<variant>/seed<S>`, indexed and
evaluated the same way, on the validation part (the columns to choose a setting on) and on the test part
(to report, once chosen). One run says little: two seeds of one variant can differ by more than two
variants do. So the table gives mean ± standard deviation over seeds and calls a difference to the
reference variant noise unless it clears twice the larger of the two standard deviations.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tandemrec.config import RunConfig, load_config
from tandemrec.io.atomic import atomic_write_json, atomic_write_text
from tandemrec.errors import ArgumentError
from tandemrec.io.run_folder import RunFolder
from tandemrec.jobs import evaluate_run
from tandemrec.study_run import train_and_index
from tandemrec.plots import grouped_bars
from tandemrec.seed_stats import UNTESTED, Stat, cell as _cell, difference, fmt as _fmt, stat_of


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: list[str] = field(default_factory=list)
    init_from: str | None = None  # another variant's name: seed S starts from that variant's seed S model


VARIANT_SETS: dict[str, list[Variant]] = {
    # What each item-content signal is worth on one domain.
    "content": [
        Variant("default"),
        Variant("image_random", ["model.item.image.random_init=true"]),
        Variant("no_image", ["model.item.image=false"]),
        Variant("text_random", ["model.item.text.pretrained=false"]),
        Variant("id_dropout", ["model.item.id_dropout=0.1"]),  # DropoutNet-style: a tenth of training items without their id
        Variant("content_only_new_items", ["train.new_item_exposure=0.0"]),  # new items left unplaced
        Variant("content_loss", ["train.content_loss_weight=3.0", "train.new_item_exposure=0.0"]),  # the previous default
    ],
    # Fine-tuning the text encoder's top layers (rates: train.backbone_lr, train.backbone_lr_decay) against frozen.
    "text": [
        Variant("text_frozen", ["model.item.text.trainable_layers=0"]),
        Variant("text_top1", ["model.item.text.trainable_layers=1"]),
    ],
    # Transfer learning from the source domain to the target domain.
    "transfer": [
        Variant("target_only", ['train.domains="target"']),
        Variant("joint", ['train.domains="joint"']),
        Variant("source_stage", ['train.domains="source"']),
        Variant("staged", ['train.domains="target"'], init_from="source_stage"),
        Variant("joint_random_text", ['train.domains="joint"', "model.item.text.pretrained=false"]),
        Variant("joint_no_image", ['train.domains="joint"', "model.item.image=false"]),
        Variant("joint_gated_fusion", ['train.domains="joint"', 'model.item.fusion="gated"']),
    ],
}
DEFAULT_SET = "content"
SYSTEM = "{system}"  # stands for "tandemrec" or a reference in a metric's path
REFERENCES = ("popularity", "content_knn", "item_knn", "ease", "random")  # the same split for every run: shown once


@dataclass(frozen=True)
class Column:
    key: str  # in the rows of ablation.json
    label: str  # in the table and the plot
    digits: int
    path: tuple[str, ...] | None = None  # where the metrics hold it; None: a training figure, not compared
    part: str = "test"  # the held-out part measured: metrics.json, or metrics_valid.json for "valid"


VALIDATION = (
    Column("valid/recall@10", "valid recall@10", 4, (SYSTEM, "recall@10"), "valid"),
    Column("valid/ndcg@10", "valid ndcg@10", 4, (SYSTEM, "ndcg@10"), "valid"),
    Column("valid/new_arrivals/recall@10", "valid new-arrivals recall@10", 4, ("new_arrivals", SYSTEM, "recall@10"), "valid"),
)
METRICS = VALIDATION + (
    Column("recall@10", "recall@10", 4, (SYSTEM, "recall@10")),
    Column("ndcg@10", "ndcg@10", 4, (SYSTEM, "ndcg@10")),
    Column("warm/recall@10", "warm recall@10", 4, ("warm", SYSTEM, "recall@10")),
    Column("warm/ndcg@10", "warm ndcg@10", 4, ("warm", SYSTEM, "ndcg@10")),
    Column("cold/recall@10", "cold recall@10", 4, ("cold", SYSTEM, "recall@10")),
    Column("new_arrivals/recall@10", "new-arrivals recall@10", 4, ("new_arrivals", SYSTEM, "recall@10")),
    Column("cold_exposure", "cold exposure", 4, ("cold_exposure", SYSTEM)),
)
TRAINING = (Column("best_epoch", "best epoch", 1), Column("train_seconds", "train s", 1))
COLUMNS = METRICS + TRAINING
RULE = (
    "Each cell is the mean ± sample standard deviation over seeds. In brackets, the difference of the "
    "variant's mean to the reference `{reference}` (the first variant): \"noise\" when "
    "|mean - reference mean| < 2 × the larger of the two standard deviations, else the signed difference. "
    "The `valid` columns are measured on the validation part: choose on them, then read the test columns once."
)
ONE_SEED = f"With one seed there is no standard deviation ('-'), so every difference is \"{UNTESTED}\"."


def select_variants(set_name: str | None = None, names: Sequence[str] | None = None) -> list[Variant]:
    """The variants of `set_name` (None: DEFAULT_SET), or those called `names` (in that order) from any set."""
    if names is None:
        if (set_name or DEFAULT_SET) not in VARIANT_SETS:
            raise ArgumentError(f"unknown variant set {set_name!r}; known: {sorted(VARIANT_SETS)}")
        return list(VARIANT_SETS[set_name or DEFAULT_SET])
    known = {v.name: v for variants in VARIANT_SETS.values() for v in variants}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ArgumentError(f"unknown variant(s) {unknown}; known: {sorted(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def run_ablation(
    config_path: str | None,
    out: Path,
    variants: Sequence[Variant],
    base_overrides: Sequence[str] = (),
    seeds: int = 3,
) -> list[dict]:
    """Train, index and evaluate each variant with seeds 0..seeds-1 into out/<variant>/seed<S>; write
    out/ablation.{json,md,png}.

    Runs whose folder already has metrics.json are read, not retrained, so calling this again after a
    crash picks up where the first call stopped; ablation.json is rewritten after every run.
    """
    _check_order(variants)
    if not variants or seeds < 1:
        raise ArgumentError(f"an ablation needs at least one variant and one seed, got {len(variants)} and {seeds}")
    rows = []
    for variant in variants:
        for seed in range(seeds):
            run_dir = run_path(out, variant.name, seed)
            run = RunFolder(run_dir)
            if not run.metrics.exists():
                _train_and_evaluate(_variant_config(config_path, variant, base_overrides, seed, out), run_dir)
            elif not run.metrics_valid.exists():  # a run evaluated before validation was measured too
                evaluate_run(run_dir, part="valid")
            rows.append(read_row(variant.name, seed, run_dir))
            atomic_write_json(out / "ablation.json", rows)
    atomic_write_text(out / "ablation.md", ablation_table(rows))
    plot_ablation(rows, out / "ablation.png")
    return rows


def run_path(out: Path, variant: str, seed: int) -> Path:
    """Where a variant's seed trains; a staged variant's seed S starts from its first stage's seed S here."""
    return out / variant / f"seed{seed}"


def _check_order(variants: Sequence[Variant]) -> None:
    """A staged variant needs its first stage's models, so that variant must run, and run before it."""
    seen: set[str] = set()
    for v in variants:
        if v.init_from and v.init_from not in seen:
            raise ArgumentError(f"variant {v.init_from!r} must run before {v.name!r}, which starts from its models")
        seen.add(v.name)


def _variant_config(
    config_path: str | None, variant: Variant, base_overrides: Sequence[str], seed: int, out: Path
) -> RunConfig:
    """Base config, the variant's overrides, then the seed last so that it wins over a `--set train.seed`."""
    config = load_config(config_path, [*base_overrides, *variant.overrides, f"train.seed={seed}"])
    if not variant.init_from:
        return config
    start = str(run_path(out, variant.init_from, seed))
    return dataclasses.replace(config, train=dataclasses.replace(config.train, init_from=start))


def _train_and_evaluate(config: RunConfig, run_dir: Path) -> None:
    train_and_index(config, run_dir)
    evaluate_run(run_dir, part="valid")
    evaluate_run(run_dir)


def read_row(variant: str, seed: int, run_dir: Path) -> dict:
    """One row of ablation.json, read from a finished run folder (the same whether trained now or before)."""
    run = RunFolder(run_dir)
    metrics = {"test": json.loads(run.metrics.read_text())}
    metrics["valid"] = json.loads(run.metrics_valid.read_text()) if run.metrics_valid.exists() else {}
    history = [json.loads(line) for line in run.train_metrics.read_text().splitlines() if line.strip()]
    row: dict = {"variant": variant, "seed": seed, "run": str(run_dir), **_training_figures(history)}
    row.update({c.key: _lookup(metrics[c.part], c.path, "tandemrec") for c in METRICS})
    for reference in REFERENCES:
        row[reference] = {c.key: _lookup(metrics[c.part], c.path, reference) for c in METRICS}
    return row


def _training_figures(history: list[dict]) -> dict:
    """The best epoch (first one with the highest validation recall, as the trainer keeps it) and the seconds
    training took (validation included), from train_metrics.jsonl."""
    recall = next(k for k in history[0] if k.startswith("valid_recall@"))
    best = max(history, key=lambda row: row[recall])
    return {"best_epoch": best["epoch"], "train_seconds": history[-1]["seconds"]}


def _lookup(metrics: dict, path: tuple[str, ...], system: str) -> float | None:
    """The value at `path` (SYSTEM replaced by `system`), None where any key is absent: older or newer
    evaluations hold different blocks, and a missing one must not stop the comparison."""
    value = metrics
    for key in (k.replace(SYSTEM, system) for k in path):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


@dataclass(frozen=True)
class Summary:
    variant: str
    seeds: int
    stats: dict[str, Stat]  # by column key


def summarise(rows: Sequence[dict]) -> list[Summary]:
    """Mean and sample standard deviation over seeds of every column, per variant in order of appearance."""
    by_variant: dict[str, list[dict]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    return [Summary(name, len(group), {c.key: _stat(group, c.key) for c in COLUMNS}) for name, group in by_variant.items()]


def _stat(rows: list[dict], key: str) -> Stat:
    return stat_of(row.get(key) for row in rows)


def ablation_table(rows: Sequence[dict]) -> str:
    """Markdown: one line per variant (mean ± std, difference to the first), the references (popularity,
    content-kNN, random: the same split for every run, so the first row's), and the rule under the table."""
    summaries = summarise(rows)
    header = ["variant", "seeds", *(c.label for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    reference = summaries[0]
    for summary in summaries:
        cells = [summary.variant, str(summary.seeds)]
        for c in COLUMNS:
            against = reference.stats[c.key] if _compared(c, summary, reference) else None
            cells.append(_cell(summary.stats[c.key], against, c.digits))
        lines.append("| " + " | ".join(cells) + " |")
    for name in REFERENCES:
        values = rows[0].get(name) or {}
        if any(v is not None for v in values.values()):
            cells = [name, "", *(_fmt(values.get(c.key), c.digits) for c in METRICS), *([""] * len(TRAINING))]
            lines.append("| " + " | ".join(cells) + " |")
    notes = [RULE.format(reference=reference.variant)]
    if any(s.seeds < 2 for s in summaries):
        notes.append(ONE_SEED)
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def _compared(column: Column, summary: Summary, reference: Summary) -> bool:
    """Metrics are compared to the reference; training figures (epochs, seconds) and the reference are not."""
    return column.path is not None and summary is not reference


def plot_ablation(rows: Sequence[dict], path: Path) -> None:
    """Bars of the means with ±1 std error bars, for the metrics that at least one variant has."""
    summaries = summarise(rows)
    shown = [c for c in METRICS if any(s.stats[c.key].mean is not None for s in summaries)]
    grouped_bars(
        [c.label for c in shown],
        {s.variant: [s.stats[c.key].mean or 0.0 for c in shown] for s in summaries},
        "ablation: validation (valid ...) and test parts, seen items excluded, mean ± std over seeds",
        path,
        errors={s.variant: [s.stats[c.key].std or 0.0 for c in shown] for s in summaries},
    )
