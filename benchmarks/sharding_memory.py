"""Peak memory per process of training with a table too large for one process: 1 process against 2
processes row-wise, and the planner's refusal under `train.max_memory_per_process`.

Each configuration is a real `tandemrec train demo` under torchrun (gloo on CPU, one thread per process),
one epoch of the demo's shop and model, with the user-id table sized to `--rows` rows (`model.sizes.users`:
20M x 64 fp32 is 4.8 GiB), row-wise sharded. Peak RSS per rank is the largest resident set of any process
of the job (`getrusage(RUSAGE_CHILDREN)` of a fresh launcher per configuration, which also counts the
launcher, far smaller). Rows past the shop's users are never trained, so they must keep their seeded
first values: the benchmark compares the last rows of the two saved models (read as slices, not whole),
which checks that 1 and 2 processes drew the same initial table. Then `tandemrec index`, `export` and
`evaluate` of the 2-process run, alone (whole model) and under torchrun (tables sharded).

    .venv/bin/python benchmarks/sharding_memory.py                       # ~13 min on 2 cores, ~11 GB disk
    .venv/bin/python benchmarks/sharding_memory.py --rows 2000000 --cap 0.4GiB --out /tmp/m.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import safe_open

from tandemrec.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
TABLE = "user_tower.ebc.embedding_bags.user_id.weight"
UNTRAINED_ROWS = 1000  # the last rows of the table, never trained


def settings(rows: int) -> list[str]:
    return [
        f"model.sizes.users={rows}",
        "train.sharding=row_wise",
        "train.epochs=1",
        "train.keep_checkpoints=1",
        "behaviour.enabled=false",
    ]


def launch(processes: int, job: list[str]) -> dict:
    """Run `tandemrec JOB...` under torchrun on `processes` processes (0: alone, without torchrun) in a
    fresh launcher that reports its children's peak RSS."""
    command = [sys.executable]
    if processes:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "tandemrec.cli", *job]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    wrapper = [sys.executable, __file__, "--measure", json.dumps(command)]
    done = subprocess.run(wrapper, capture_output=True, text=True, env=env, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(command: list[str]) -> None:
    """The launcher: run `command`, print its exit code, seconds, peak RSS of its largest process and stderr's tail."""
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    tail = [line for line in done.stderr.splitlines() if "ShardingError" in line or "cannot shard" in line][-1:]
    print(json.dumps({
        "rc": done.returncode, "seconds": round(time.perf_counter() - began, 1), "peak_bytes": peak,
        "refusal": tail[0] if tail else None, "stderr_tail": done.stderr[-2000:] if done.returncode else "",
    }))


def last_rows(run: Path, rows: int) -> torch.Tensor:
    with safe_open(str(run / "model" / "model.safetensors"), "pt") as f:
        return f.get_slice(TABLE)[rows - UNTRAINED_ROWS : rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the user-id table (64 dims)")
    parser.add_argument("--cap", default="4GiB", help="train.max_memory_per_process of the capped runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sharding_memory.md"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(json.loads(args.measure))
        return
    base = settings(args.rows)
    capped = base + [f"train.max_memory_per_process={args.cap}"]
    results, later, tails = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, processes, overrides in (
            ("1 process", 1, base),
            (f"2 processes, cap {args.cap}", 2, capped),
            (f"1 process, cap {args.cap}", 1, capped),
        ):
            run = Path(tmp) / str(len(results))
            results[name] = launch(processes, ["train", "demo", "--run-dir", str(run), *sets(overrides)])
            print(name, json.dumps(results[name]), flush=True)
            if results[name]["rc"] == 0:
                tails[name] = last_rows(run, args.rows)
            if processes == 2 and results[name]["rc"] == 0:  # its config holds the cap: the jobs after training
                later = after_training(run, args.cap)
            shutil.rmtree(run, ignore_errors=True)  # 10 GB at 20M rows (checkpoint and model): keep the disk free
    same_start = len(tails) == 2 and torch.equal(*tails.values())
    write(args, results, later, same_start)


def sets(overrides: list[str]) -> list[str]:
    return [arg for s in overrides for arg in ("--set", s)]


def after_training(run: Path, cap: str) -> dict[str, dict]:
    """`tandemrec index`, `export` and `evaluate` of the trained run: each alone (the whole model loaded, as
    every process of a job after training loaded it before its tables were sharded) and on 2 processes;
    then export on 1 process under torchrun, which must refuse the run's `train.max_memory_per_process` as
    training does."""
    export = ["export", str(run), "--what", "items,users", "--format", "npy"]
    results = {}
    for job in (["index", str(run)], export, ["evaluate", str(run)]):
        for name, processes in ((f"{job[0]} alone (whole model)", 0), (f"{job[0]}, 2 processes", 2)):
            results[name] = launch(processes, job)
            print(name, json.dumps(results[name]), flush=True)
    name = f"export, 1 process under torchrun, cap {cap}"
    results[name] = launch(1, export)
    print(name, json.dumps(results[name]), flush=True)
    return results


def write(args: argparse.Namespace, results: dict[str, dict], later: dict[str, dict], same_start: bool) -> None:
    names = list(results)
    single, sharded, refused = (results[n] for n in names)
    gib = args.rows * 64 * 4 / 2**30
    lines = [
        "# Sharding memory (CPU)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%dT%H:%M}Z on {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, gloo, one thread per process: `tandemrec train demo` for one epoch with the "
        f"user-id table at {args.rows:,} rows x 64 dims ({gib:.2f} GiB fp32), row-wise sharded; peak RSS is the "
        "largest process of each job. Rerun: `.venv/bin/python benchmarks/sharding_memory.py`.",
        "",
        "| job | exit | seconds | peak RSS per process, GiB | vs 1 process |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        r = results[name]
        lines.append(
            f"| {name} | {r['rc']} | {r['seconds']:.0f} | {r['peak_bytes'] / 2**30:.2f} | "
            f"{r['peak_bytes'] / single['peak_bytes']:.3f}x |"
        )
    lines += [
        "",
        f"- 2 processes against 1: **{sharded['peak_bytes'] / single['peak_bytes']:.3f}x** the peak RSS per process "
        "(target <= 0.6x).",
        f"- Under `train.max_memory_per_process = \"{args.cap}\"`: 2 processes {'train' if sharded['rc'] == 0 else 'FAIL'}; "
        f"1 process is {'refused' if refused['rc'] != 0 and refused['refusal'] else 'NOT refused'} before any table is "
        f"allocated (its peak {refused['peak_bytes'] / 2**30:.2f} GiB), with:",
        "",
        f"  > {refused['refusal']}",
        "",
        f"- The last {UNTRAINED_ROWS} rows of the table (never trained) in the models of 1 and 2 processes: "
        + ("bitwise equal: the seeded rows do not depend on the process count." if same_start else "NOT equal (or not both trained)."),
    ]
    if later:
        lines += after_training_lines(later, args.cap)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


def after_training_lines(later: dict[str, dict], cap: str) -> list[str]:
    """The section after training: the same run (the 2-process one, its config holding the cap) indexed,
    exported and evaluated alone with the whole model, and under torchrun with the tables sharded."""
    jobs = ("index", "export", "evaluate")
    alone = {job: later[f"{job} alone (whole model)"]["peak_bytes"] for job in jobs}
    refused = later[f"export, 1 process under torchrun, cap {cap}"]
    lines = [
        "",
        "## After training: `tandemrec index`, `export` and `evaluate` of the 2-process run",
        "",
        "Alone (no torchrun) a job loads the whole model, as every process of a job after training did "
        "before their tables were sharded; under torchrun each process reads and holds only its shards "
        "(`training/sharded_model.py`), planned under the run's own `train.max_memory_per_process`.",
        "",
        "| job | exit | seconds | peak RSS per process, GiB | vs the same job alone |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in later.items():
        lines.append(
            f"| {name} | {r['rc']} | {r['seconds']:.0f} | {r['peak_bytes'] / 2**30:.2f} | "
            f"{r['peak_bytes'] / alone[name.split()[0].rstrip(',')]:.3f}x |"
        )
    ratios = ", ".join(f"{job} **{later[f'{job}, 2 processes']['peak_bytes'] / alone[job]:.3f}x**" for job in jobs)
    return lines + [
        "",
        f"- 2 processes against the whole model: {ratios} the peak RSS per process.",
        f"- Under the run's cap ({cap}), 1 process under torchrun is "
        f"{'refused' if refused['rc'] != 0 and refused['refusal'] else 'NOT refused'} before any table is allocated "
        f"(its peak {refused['peak_bytes'] / 2**30:.2f} GiB).",
    ]


if __name__ == "__main__":
    main()
