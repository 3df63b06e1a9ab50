"""`tandemrec benchmark`: the model against the classical baselines, on several evaluation protocols.

Each protocol is the config plus split (and domain) overrides; the model trains once per seed into
`OUT/<protocol>/seed<S>` and `evaluate_run` scores it next to popularity, content-kNN, item-kNN and EASE
(the last two tuned on the same validation part, see retrieval/baseline_split.py) with the same metric
code, seen items excluded. The table gives mean ± std over seeds and each cell's ratio to the best
baseline of that cell. With `--tune KEY=V1,V2,...` (repeatable: every combination) the model's settings
are chosen per protocol on the validation part too (`Tuning`), and only the chosen runs are measured on
test. Runs whose metrics
hold the baselines are read, not retrained, so a second call continues where the first stopped.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tandemrec.config import RunConfig, load_config
from tandemrec.io.atomic import atomic_write_json, atomic_write_text
from tandemrec.errors import ArgumentError
from tandemrec.io.run_folder import RunFolder
from tandemrec.jobs import evaluate_run, load_dataset
from tandemrec.study_run import train_and_index
from tandemrec.plots import grouped_bars
from tandemrec.seed_stats import Stat, cell, difference, stat_of

SYSTEM = "tandemrec"
BASELINES = ("popularity", "content_knn", "item_knn", "ease")
METRICS = ("recall@10", "ndcg@10")
TARGET_RATIO = 1.10  # the bar: the model at least 10% ahead of the best baseline in every cell
SHARES = ["data.split.test_fraction=0.2", "data.split.valid_fraction=0.1"]
ONE_DOMAIN = ["data.domains.target=[]"]  # every event is evaluated
# Every protocol: no item held out (the baselines cannot rank an item without events), and no behaviour
# head (it does not change the ranking, and would double the time of each run).
COMMON = ["data.split.cold_items=0.0", "behaviour.enabled=false"]
CUT_QUANTILES = (0.7, 0.8)  # the global cut: validation from the 70th time percentile, test from the 80th
TUNE_METRIC = "ndcg@10"  # the validation metric a tuned setting is chosen by, as the baselines' are
# Keys that mean nothing without a target domain: a protocol without one is not tuned on them (every value
# would train the same model) and runs with the config's own value.
TARGET_KEYS = ("train.target_weight", "train.domains")


@dataclass(frozen=True)
class Protocol:
    name: str
    about: str
    overrides: Callable[[RunConfig, Path], list[str]]  # (base config, benchmark folder) -> overrides
    needs_target: bool = False  # the target protocols need a target domain in the config


@dataclass(frozen=True)
class Tuning:
    """One config key whose value the benchmark chooses per protocol on the validation part, as it chooses
    the baselines' settings: seed 0 trains with each value, the best by validation TUNE_METRIC (the first
    on ties) is kept, and only its runs are measured on test. `KEY=V1,V2,...` on the command line."""

    key: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Tuning:
        key, sep, values = text.partition("=")
        grid = tuple(v.strip() for v in values.split(","))
        if not sep or not key.strip() or len(grid) < 2 or not all(grid):
            raise ArgumentError(
                f"--tune takes KEY=V1,V2[,...] with two or more values, e.g. train.target_weight=0,0.3,1; got '{text}'"
            )
        return cls(key.strip(), grid)

    def override(self, value: str) -> str:
        return f"{self.key}={value}"

    def applies(self, config: RunConfig) -> bool:
        return config.data.domains.has_target or self.key not in TARGET_KEYS


def candidates(tunings: Sequence[Tuning]) -> list[str]:
    """Every combination of the tunings' values, each as its comma-joined overrides ("k=v,k2=v2"): the
    name of its folder and of its score. Values hold no comma (`Tuning.parse` splits on them)."""
    return [",".join(c) for c in itertools.product(*([t.override(v) for v in t.values] for t in tunings))]


def _global_cut(config: RunConfig, out: Path) -> list[str]:
    """Cut times at the CUT_QUANTILES of the dataset's event times, so the protocol fits any dataset."""
    times = load_dataset(config.data, RunFolder(out / "cut-data")).interactions["timestamp"].sort()
    valid_from, cut_at = (times[int(q * (len(times) - 1))].isoformat() for q in CUT_QUANTILES)
    return [*ONE_DOMAIN, f'data.split.cut_at="{cut_at}"', f'data.split.valid_from="{valid_from}"']


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol(
            "temporal", "per user by time: last 20% test, last 10% of the rest validation", lambda c, o: [*SHARES, *ONE_DOMAIN]
        ),
        Protocol(
            "leave_last_out",
            "per user: the last event test, the one before it validation",
            lambda c, o: [*ONE_DOMAIN, "data.split.test_fraction=0.0", "data.split.valid_fraction=0.0",
                          "data.split.test_last=1", "data.split.valid_last=1"],
        ),
        Protocol("global_cut", "every event after the 80th time percentile test, 70th-80th validation", _global_cut),
        Protocol(
            "target",
            "temporal split; only target events (e.g. ratings >= 4) are test and validation items",
            lambda c, o: [*SHARES, "data.domains.train_target_fraction=1.0"],
            needs_target=True,
        ),
        Protocol(
            "target_sparse",
            "as target, with the config's share of each user's training target events kept",
            lambda c, o: SHARES,
            needs_target=True,
        ),
        Protocol("given", "the config's own split, as it is (a given split: data.split.column or files)", lambda c, o: []),
    )
}


def default_protocols(config: RunConfig) -> list[str]:
    """A given split is benchmarked as it is; otherwise the target protocols when the config has a
    target domain (with a sparse training share), else the three one-domain protocols."""
    if config.data.split.given:
        return ["given"]
    if config.data.domains.has_target and config.data.domains.train_target_fraction < 1.0:
        return ["temporal", "target", "target_sparse"]
    return ["temporal", "leave_last_out", "global_cut"]


def run_benchmark(
    config_path: str | None,
    out: Path,
    protocols: Sequence[str] | None = None,
    seeds: int = 3,
    base_overrides: Sequence[str] = (),
    tune: Sequence[Tuning] = (),
) -> list[dict]:
    """Train, index and evaluate the model per protocol and seed into out/<protocol>/seed<S>; write
    out/benchmark.{json,md,png}. benchmark.json is rewritten after every run. With `tune`, a protocol that
    some of the tunings apply to first trains seed 0 with each combination of their values into
    out/<protocol>/<k=v,...>/seed0, and its seeds are the chosen combination's runs in that folder."""
    base = load_config(config_path, list(base_overrides))
    names = list(protocols or default_protocols(base))
    _check(names, base, seeds)
    for t in tune:  # a bad value is refused before anything trains
        for value in t.values:
            load_config(config_path, [*base_overrides, t.override(value)])
    rows = []
    for name in names:
        overrides = [*COMMON, *base_overrides, *PROTOCOLS[name].overrides(base, out)]
        folder, tuned = out / name, None
        protocol = load_config(config_path, overrides)
        applying = [t for t in tune if t.applies(protocol)]
        if applying:
            tuned = _tune(config_path, overrides, applying, folder)
            folder = folder / tuned["chosen"]
            overrides += tuned["chosen"].split(",")
        for seed in range(seeds):
            run_dir = folder / f"seed{seed}"
            if not _scored(run_dir):
                _train_and_evaluate(load_config(config_path, [*overrides, f"train.seed={seed}"]), run_dir)
            rows.append(read_row(name, seed, run_dir) | ({"tuned": tuned} if tuned else {}))
            atomic_write_json(out / "benchmark.json", {"rows": rows, "summary": summarise(rows)})
    atomic_write_text(out / "benchmark.md", benchmark_table(rows))
    plot_benchmark(rows, out / "benchmark.png")
    return rows


def _check(names: list[str], base: RunConfig, seeds: int) -> None:
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown or not names or seeds < 1:
        raise ArgumentError(f"a benchmark needs protocols from {sorted(PROTOCOLS)} and seeds >= 1, got {names}, {seeds}")
    for name in names:
        if PROTOCOLS[name].needs_target and not base.data.domains.has_target:
            raise ArgumentError(f"protocol {name!r} needs a target domain ([data.domains] target) in the config")
        if (name == "given") != base.data.split.given:
            raise ArgumentError(f"protocol {name!r} {'needs' if name == 'given' else 'replaces'} a given split")


def _scored(run_dir: Path) -> bool:
    """Whether the run's metrics hold every system (an older evaluation lacks the baselines)."""
    metrics = RunFolder(run_dir).metrics
    return metrics.exists() and all(s in json.loads(metrics.read_text()) for s in (SYSTEM, *BASELINES))


def _tune(config_path: str | None, overrides: list[str], tunings: Sequence[Tuning], folder: Path) -> dict:
    """Seed 0 with each combination of the tunings' values, measured on validation (runs already measured
    are read): the chosen combination and each one's score."""
    scores = {}
    for candidate in candidates(tunings):
        run_dir = folder / candidate / "seed0"
        if not RunFolder(run_dir).metrics_valid.exists():
            config = load_config(config_path, [*overrides, *candidate.split(","), "train.seed=0"])
            _train_and_evaluate(config, run_dir, part="valid")
        scores[candidate] = json.loads(RunFolder(run_dir).metrics_valid.read_text())[SYSTEM][TUNE_METRIC]
    chosen = max(scores, key=scores.__getitem__)  # the first of equals
    return {"chosen": chosen, f"valid_{TUNE_METRIC}": scores}


def _train_and_evaluate(config: RunConfig, run_dir: Path, part: str = "test") -> None:
    """Train and index unless indexed (the index is built once training has finished), then evaluate
    the `part` ("test", or "valid" for tuning)."""
    if not RunFolder(run_dir).index.exists():
        train_and_index(config, run_dir)
    evaluate_run(run_dir, part=part)


def read_row(protocol: str, seed: int, run_dir: Path) -> dict:
    """One row of benchmark.json: each system's METRICS as evaluate_run wrote them to metrics.json."""
    metrics = json.loads(RunFolder(run_dir).metrics.read_text())
    systems = {s: {m: metrics[s][m] for m in METRICS} for s in (SYSTEM, *BASELINES) if s in metrics}
    return {
        "protocol": protocol,
        "seed": seed,
        "run": str(run_dir),
        "systems": systems,
        "baseline_settings": {k: v["chosen"] for k, v in metrics.get("baseline_settings", {}).items()},
        "users": metrics["users"]["evaluated"],
    }


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per protocol: mean and std over seeds of every system's metrics, the best baseline of each metric
    (by mean) and the model's ratio to it."""
    protocols: dict[str, list[dict]] = {}
    for row in rows:
        protocols.setdefault(row["protocol"], []).append(row)
    summary = []
    for name, group in protocols.items():
        stats = {
            system: {m: _stat_dict(stat_of(r["systems"].get(system, {}).get(m) for r in group)) for m in METRICS}
            for system in (SYSTEM, *BASELINES)
        }
        scored = {m: [b for b in BASELINES if stats[b][m]["mean"] is not None] for m in METRICS}
        best = {m: max(scored[m], key=lambda b: stats[b][m]["mean"]) for m in METRICS}
        ratio = {m: stats[SYSTEM][m]["mean"] / stats[best[m]][m]["mean"] for m in METRICS}
        summary.append({
            "protocol": name, "seeds": len(group), "stats": stats, "best_baseline": best, "ratio": ratio,
            "tuned": group[0].get("tuned"),
        })
    return summary


def _stat_dict(stat: Stat) -> dict:
    return {"mean": stat.mean, "std": stat.std}


def benchmark_table(rows: Sequence[dict]) -> str:
    """Markdown: per protocol, one line per system (mean ± std over seeds), the model's line also giving
    its ratio to the best baseline of each metric; under it, the ratios against TARGET_RATIO."""
    lines = ["| protocol | system | " + " | ".join(METRICS) + " |", "|" + " --- |" * (2 + len(METRICS))]
    for s in summarise(rows):
        for system in (SYSTEM, *BASELINES):
            cells = [cell(Stat(**s["stats"][system][m]), None, 4) for m in METRICS]
            if system == SYSTEM:
                cells = [f"**{c}** ({_against_best(s, m)})" for c, m in zip(cells, METRICS)]
            lines.append(f"| {s['protocol']} ({s['seeds']} seeds) | {system} | " + " | ".join(cells) + " |")
    verdicts = [
        f"{s['protocol']} {m}: {s['ratio'][m]:.2f}x ({'met' if s['ratio'][m] >= TARGET_RATIO else 'not met'})"
        for s in summarise(rows)
        for m in METRICS
    ]
    notes = (
        "Each cell is the mean ± sample standard deviation over seeds of the model (train.seed); the split "
        "and so the baselines are the same for every seed. In brackets, the model's mean over the best "
        "baseline's mean for that metric, which baseline, and the difference: \"noise\" when it is under twice "
        f"the model's standard deviation. Bar: {TARGET_RATIO:.2f}x in every cell. " + "; ".join(verdicts) + "."
    )
    return "\n".join(lines) + "\n\n" + notes + _tuning_notes(summarise(rows)) + "\n"


def _tuning_notes(summary: Sequence[dict]) -> str:
    """' Tuned on validation ...': per tuned protocol, the chosen settings and every candidate's score."""
    tuned = [
        f"{s['protocol']}: {t['chosen']} ("
        + ", ".join(f"{c}: {score:.4f}" for c, score in t[f"valid_{TUNE_METRIC}"].items()) + ")"
        for s in summary
        if (t := s["tuned"])
    ]
    if not tuned:
        return ""
    return f" Tuned on validation {TUNE_METRIC} (seed 0, each candidate's score in brackets): " + "; ".join(tuned) + "."


def _against_best(summary: dict, metric: str) -> str:
    """'1.23x ease, +0.0200': the ratio to the best baseline and the difference under the noise rule
    (seed_stats.difference; a baseline is the same for every seed, its std 0)."""
    best = summary["best_baseline"][metric]
    told = difference(Stat(**summary["stats"][SYSTEM][metric]), Stat(**summary["stats"][best][metric]))
    return f"{summary['ratio'][metric]:.2f}x {best}, {told}"


def plot_benchmark(rows: Sequence[dict], path: Path) -> None:
    """Bars of each system's mean per protocol and metric, ±1 std."""
    summary = summarise(rows)
    groups = [f"{s['protocol']} {m}" for s in summary for m in METRICS]
    series = {x: [s["stats"][x][m]["mean"] or 0.0 for s in summary for m in METRICS] for x in (SYSTEM, *BASELINES)}
    errors = {x: [s["stats"][x][m]["std"] or 0.0 for s in summary for m in METRICS] for x in (SYSTEM, *BASELINES)}
    grouped_bars(groups, series, "benchmark: test split, seen items excluded, mean ± std over seeds", path, errors=errors)
