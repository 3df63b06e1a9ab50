"""What a DataLoader worker saves a training process: the milliseconds to build a step's inputs in the
process (`train.loader_workers = 0`) against those to take them from a worker that already has them ready
(1 worker, the process pausing between steps so that the worker is always ahead).

The demo's model and synthetic shop (8,000 users by default), frozen backbones' outputs cached, one thread;
the median over the steps, both ways in the same run, and their ratio.

    .venv/bin/python benchmarks/step_inputs_handover.py            # about 2 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from tandemrec.config import load_config
from tandemrec.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def taking_ms(loader, steps: int, pause: float) -> float:
    """Median milliseconds of `next()` over `steps` steps, pausing `pause` seconds before each."""
    pending = iter(loader)
    next(pending)  # workers start, the first batch is built
    times = []
    for _ in range(steps):
        time.sleep(pause)
        began = time.perf_counter()
        next(pending)
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def main() -> None:
    from tandemrec.io.run_folder import RunFolder
    from tandemrec.jobs import load_dataset, sized
    from tandemrec.run import Run, item_content
    from tandemrec.towers.text_encoder import load_tokenizer
    from tandemrec.towers.two_tower import TwoTower
    from tandemrec.training.frozen_features import cache_frozen_backbones
    from tandemrec.training.step_inputs import EpochSteps, StepInputBuilder, step_loader

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "step_inputs_handover.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(None, [f"data.synthetic.n_users={args.users}", "data.synthetic.events_per_user=12",
                                f"train.batch_size={args.batch}"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = RunFolder(Path(tmp))
        load_dataset(config.data, folder).save(folder.dataset)
        data = Run(tmp, config).data
        config = sized(config, data.vocabs)
        model = TwoTower(config.model)
        content = item_content(model, data, load_tokenizer(config.model.item.text.name_or_path))
        cache_frozen_backbones(model.item_tower, content, config.train.encode_batch_size, torch.device("cpu"))
        pool = np.flatnonzero(data.item_frequencies() > 0)
        builder = StepInputBuilder(config.train, data.train, None, None, data.features, content, pool, None)
        order = np.random.default_rng(0).permutation(len(data.train))
        steps = EpochSteps(builder, order, 1, 0, min(args.steps + 1, len(data.train) // args.batch), 0, 1)
        measured = {w: taking_ms(step_loader(steps, w, torch.device("cpu")), len(steps) - 1, 0.05) for w in (0, 1)}
    lines = [
        "# A step's inputs: built in the training process, or taken from a loader worker",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%dT%H:%MZ} on {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, one thread; the demo model (frozen backbones' outputs cached) on a synthetic shop of "
        f"{args.users} users, batch {args.batch}; median of {len(steps) - 1} steps. Rerun: "
        f"`.venv/bin/python benchmarks/step_inputs_handover.py --users {args.users} --batch {args.batch}`.",
        "",
        "| a step's inputs | ms | vs built in the process |",
        "| --- | ---: | ---: |",
        f"| built in the training process (0 workers) | {measured[0]:.2f} | 1.00x |",
        f"| taken from 1 worker that has them ready | {measured[1]:.2f} | {measured[1] / measured[0]:.2f}x |",
    ]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
