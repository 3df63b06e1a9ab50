"""Training throughput: samples/s on 1 and 2 processes, frozen-backbone caching on and off, with and
without DataLoader workers building the steps' inputs ahead, with and without the next step's table inputs
sent to their shards during a step, and the item tower's share of a training step.

Each configuration is a real `tandemrec train` under torchrun (gloo on CPU) for one epoch of a small
synthetic shop with the demo's model (the ImageNet EfficientNet-Lite0 and the pretrained MiniLM text
encoder, both frozen); samples/s is what the trainer writes for the epoch (global examples over the seconds of the
training steps, validation and checkpoints left out). The whole machine is given to each configuration:
one process with all cores' threads, or one thread per process. The item tower's share is measured in
one process on the same batches: the item tower's forward and backward alone, over the time of a whole
step at that configuration's speed. Ratios are against the 1-process run with the same cache setting and
the first `--loader-workers` and `--prefetch` values, in the same session.

    .venv/bin/python benchmarks/train_throughput.py                 # ~10 min on 2 cores
    .venv/bin/python benchmarks/train_throughput.py --users 200 --out /tmp/t.md
    .venv/bin/python benchmarks/train_throughput.py --users 8000 --batch 512 --cache on --repeats 3  # ~5 min
    .venv/bin/python benchmarks/train_throughput.py --users 8000 --batch 512 --cache on --loader-workers 0,1 --repeats 3
    .venv/bin/python benchmarks/train_throughput.py --users 8000 --batch 512 --cache on --prefetch off,on --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from tandemrec.config import load_config
from tandemrec.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def overrides(users: int, batch: int, cache: bool, workers: int = 0, prefetch: bool = False) -> list[str]:
    return [
        f"data.synthetic.n_users={users}",
        "data.synthetic.events_per_user=12",
        "train.epochs=1",
        f"train.batch_size={batch}",
        f"train.cache_frozen_backbones={'true' if cache else 'false'}",
        f"train.loader_workers={workers}",
        f"train.prefetch_table_inputs={'true' if prefetch else 'false'}",
    ]


def train_epoch(processes: int, settings: list[str], run: Path) -> dict:
    """The epoch's row of train_metrics.jsonl (samples/s, the input wait share) of one training run."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "tandemrec.cli", "train", "demo", "--run-dir", str(run)]
    command += [arg for s in settings for arg in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"training on {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads((run / "train_metrics.jsonl").read_text().splitlines()[0])


def item_tower_seconds(settings: list[str], batch: int, run: Path, repeats: int = 10, warmup: int = 2) -> float:
    """Mean seconds of the item tower's forward and backward on `batch` training items, in one process."""
    from tandemrec.jobs import sized
    from tandemrec.run import Run, item_content
    from tandemrec.towers.text_encoder import load_tokenizer
    from tandemrec.towers.two_tower import TwoTower
    from tandemrec.training.frozen_features import cache_frozen_backbones

    torch.set_num_threads(os.cpu_count() or 1)
    config = load_config(None, settings)
    data = Run(run, config).data
    config = sized(config, data.vocabs)
    model = TwoTower(config.model)
    content = item_content(model, data, load_tokenizer(config.model.item.text.name_or_path))
    if config.train.cache_frozen_backbones:
        cache_frozen_backbones(model.item_tower, content, config.train.encode_batch_size, torch.device("cpu"))
    tower = model.item_tower.train()
    rng = np.random.default_rng(0)
    times = []
    for attempt in range(warmup + repeats):
        rows = torch.from_numpy(data.train.items[rng.integers(0, len(data.train), batch)] - 1)
        began = time.perf_counter()
        tower(content.batch(rows)).sum().backward()
        model.zero_grad()
        if attempt >= warmup:
            times.append(time.perf_counter() - began)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=400, help="synthetic shop users (12 events each on average)")
    parser.add_argument("--batch", type=int, default=128, help="global batch size")
    parser.add_argument("--cache", choices=("both", "on", "off"), default="both", help="frozen-backbone cache")
    parser.add_argument("--loader-workers", default="0", help="comma-separated train.loader_workers values to "
                        "compare (the first is the reference)")
    parser.add_argument("--prefetch", default="off", help="comma-separated train.prefetch_table_inputs values "
                        "(on, off) to compare (the first is the reference)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration (median; the "
                        "configurations alternate, so that all see the same load)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.md"))
    args = parser.parse_args()
    workers = [int(w) for w in args.loader_workers.split(",")]
    prefetches = [{"on": True, "off": False}[p] for p in args.prefetch.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cache in {"both": (True, False), "on": (True,), "off": (False,)}[args.cache]:
            configurations = [(processes, w, p) for processes in (1, 2) for w in workers for p in prefetches]
            epochs: dict[tuple[int, int, bool], list[dict]] = {c: [] for c in configurations}
            for repeat in range(args.repeats):
                for processes, w, p in configurations if repeat % 2 == 0 else configurations[::-1]:
                    run = Path(tmp) / f"cache-{cache}-{processes}-{w}-{p}-{repeat}"
                    epochs[processes, w, p].append(train_epoch(processes, overrides(args.users, args.batch, cache, w, p), run))
            for processes, w, p in configurations:
                speeds = [e["samples_per_second"] for e in epochs[processes, w, p]]
                speed = statistics.median(speeds)
                share = None
                if (processes, w, p) == (1, workers[0], prefetches[0]):
                    first = Path(tmp) / f"cache-{cache}-1-{w}-{p}-0"
                    share = item_tower_seconds(overrides(args.users, args.batch, cache), args.batch, first) / (args.batch / speed)
                rows.append({
                    "cache": cache, "processes": processes, "workers": w, "prefetch": p, "samples_per_second": speed,
                    "item_share": share, "runs": [round(v) for v in speeds],
                    "input_wait": statistics.median(e["input_wait_share"] for e in epochs[processes, w, p]),
                })
                print(json.dumps(rows[-1]), flush=True)
    reference = {
        r["cache"]: r["samples_per_second"]
        for r in rows if (r["processes"], r["workers"], r["prefetch"]) == (1, workers[0], prefetches[0])
    }
    lines = [
        "# Training throughput (CPU)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, gloo; synthetic shop of {args.users} users, global batch {args.batch}, the demo "
        f"model (EfficientNet-Lite0 and MiniLM frozen); samples/s: the median of {args.repeats} run(s); input wait: "
        f"the share of process 0's step time spent waiting for (or, without loader workers, building) its inputs, "
        f"and sending the next step's table inputs when prefetched. "
        f"Rerun: `.venv/bin/python benchmarks/train_throughput.py --users {args.users} --batch {args.batch} "
        f"--cache {args.cache} --loader-workers {args.loader_workers} --prefetch {args.prefetch} --repeats {args.repeats}`.",
        "",
        f"| frozen-backbone cache | processes | loader workers | table-input prefetch | samples/s | vs 1 process, "
        f"{workers[0]} workers, prefetch {args.prefetch.split(',')[0]}, same cache | input wait | item tower share of a step | runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        share = f"{r['item_share']:.0%}" if r["item_share"] is not None else "-"
        lines.append(
            f"| {'on' if r['cache'] else 'off'} | {r['processes']} | {r['workers']} | {'on' if r['prefetch'] else 'off'} | "
            f"{r['samples_per_second']:.0f} | "
            f"{r['samples_per_second'] / reference[r['cache']]:.2f}x | {r['input_wait']:.1%} | {share} | "
            f"{', '.join(map(str, r['runs']))} |"
        )
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
