"""Training throughput: samples/s on 1 and 2 processes, frozen-backbone caching on and off, and the item
tower's share of a training step.

Each configuration is a real `tandemrec train` under torchrun (gloo on CPU) for one epoch of a small
synthetic shop with the demo's model (the ImageNet EfficientNet-Lite0 and the pretrained MiniLM text
encoder, both frozen); samples/s is what the trainer writes for the epoch (global examples over the seconds of the
training steps, validation and checkpoints left out). The whole machine is given to each configuration:
one process with all cores' threads, or one thread per process. The item tower's share is measured in
one process on the same batches: the item tower's forward and backward alone, over the time of a whole
step at that configuration's speed. Ratios are against the 1-process run with the same cache setting, in
the same session.

    .venv/bin/python benchmarks/train_throughput.py                 # ~10 min on 2 cores
    .venv/bin/python benchmarks/train_throughput.py --users 200 --out /tmp/t.md
    .venv/bin/python benchmarks/train_throughput.py --users 8000 --batch 512 --cache on --repeats 3  # ~5 min
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


def overrides(users: int, batch: int, cache: bool) -> list[str]:
    return [
        f"data.synthetic.n_users={users}",
        "data.synthetic.events_per_user=12",
        "train.epochs=1",
        f"train.batch_size={batch}",
        f"train.cache_frozen_backbones={'true' if cache else 'false'}",
    ]


def train_samples_per_second(processes: int, settings: list[str], run: Path) -> float:
    threads = max(1, (os.cpu_count() or 1) // processes)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "tandemrec.cli", "train", "demo", "--run-dir", str(run)]
    command += [arg for s in settings for arg in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"training on {processes} process(es) failed:\n{done.stderr[-3000:]}")
    row = json.loads((run / "train_metrics.jsonl").read_text().splitlines()[0])
    return float(row["samples_per_second"])


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
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration (median; 1 and 2 "
                        "processes alternate, so that both see the same load)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cache in {"both": (True, False), "on": (True,), "off": (False,)}[args.cache]:
            settings = overrides(args.users, args.batch, cache)
            speeds: dict[int, list[float]] = {1: [], 2: []}
            for repeat in range(args.repeats):
                for processes in (1, 2) if repeat % 2 == 0 else (2, 1):
                    run = Path(tmp) / f"cache-{cache}-{processes}-{repeat}"
                    speeds[processes].append(train_samples_per_second(processes, settings, run))
            for processes in (1, 2):
                speed = statistics.median(speeds[processes])
                first = Path(tmp) / f"cache-{cache}-1-0"
                share = item_tower_seconds(settings, args.batch, first) / (args.batch / speed) if processes == 1 else None
                rows.append({"cache": cache, "processes": processes, "samples_per_second": speed, "item_share": share,
                             "runs": [round(v) for v in speeds[processes]]})
                print(json.dumps(rows[-1]), flush=True)
    one = {r["cache"]: r["samples_per_second"] for r in rows if r["processes"] == 1}
    lines = [
        "# Training throughput (CPU)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, gloo; synthetic shop of {args.users} users, global batch {args.batch}, the demo "
        f"model (EfficientNet-Lite0 and MiniLM frozen); samples/s: the median of {args.repeats} run(s). Rerun: "
        f"`.venv/bin/python benchmarks/train_throughput.py --users {args.users} --batch {args.batch} --cache {args.cache} "
        f"--repeats {args.repeats}`.",
        "",
        "| frozen-backbone cache | processes | samples/s | vs 1 process, same cache | item tower share of a step | runs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        share = f"{r['item_share']:.0%}" if r["item_share"] is not None else "-"
        lines.append(
            f"| {'on' if r['cache'] else 'off'} | {r['processes']} | {r['samples_per_second']:.0f} | "
            f"{r['samples_per_second'] / one[r['cache']]:.2f}x | {share} | {', '.join(map(str, r['runs']))} |"
        )
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
