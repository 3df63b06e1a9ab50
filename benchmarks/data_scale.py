"""The data layer at scale: import + validation, then features, for 1M / 10M / 50M synthetic interactions.

For each size it writes a synthetic shop log as Parquet in 1M-row chunks (text ids, millisecond
timestamps, views, carts and purchases, one row in 10,000 with a null user id), then, each stage in its
own process so that its peak RSS is its own:

  import    `import_dataset("generic", ...)`: scan, parse, validate with accounting, stream to Parquet
  features  `prepare(Dataset.scan(...))`: vocabularies, encoded events, per-user split, source/target
            domains, the event log, training examples, eval queries, and 100,000 user-feature batches rows

and prints seconds, rows/s and peak RSS per stage and size, with ratios against the smallest size (the
reference measured in the same run). A watchdog kills a stage whose RSS passes --max-rss-gb.

    .venv/bin/python benchmarks/data_scale.py --sizes 1000000 10000000 50000000 --out benchmarks/results/data_scale.md
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHUNK = 1_000_000
EVENTS_PER_USER = 50
EVENTS_PER_ITEM = 200
MAPPING = {
    "interactions": {
        "file": "events",
        "user_id": "visitor",
        "item_id": "sku",
        "timestamp": "ts_ms",
        "timestamp_unit": "ms",
        "event": "kind",
    },
    "items": {"file": "items.parquet", "item_id": "sku", "title": "name", "category": "cat"},
}


def generate(folder: Path, n: int, seed: int = 0) -> None:
    """A shop log of `n` events in 1M-row Parquet chunks, and its items table."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // EVENTS_PER_USER, 1), max(n // EVENTS_PER_ITEM, 1)
    (folder / "events").mkdir(parents=True)
    start_ms = 1_672_531_200_000  # 2023-01-01
    for part, begin in enumerate(range(0, n, CHUNK)):
        size = min(CHUNK, n - begin)
        users = rng.integers(0, n_users, size)
        items = np.minimum(rng.zipf(1.3, size) - 1, n_items - 1)
        visitor = pl.Series(users).cast(pl.String).str.zfill(9)
        visitor = pl.select(pl.when(pl.Series(rng.random(size)) >= 1e-4).then("u" + visitor)).to_series()
        pl.DataFrame(
            {
                "visitor": visitor,
                "sku": "sku-" + pl.Series(items).cast(pl.String).str.zfill(8),
                "ts_ms": start_ms + rng.integers(0, 365 * 86_400_000, size),
                "kind": pl.Series(rng.choice(np.array(["view", "cart", "purchase"]), size, p=[0.85, 0.1, 0.05])),
            }
        ).write_parquet(folder / "events" / f"part-{part:04d}.parquet")
    ids = "sku-" + pl.Series(np.arange(n_items)).cast(pl.String).str.zfill(8)
    categories = (pl.Series(np.arange(n_items)) % 50).cast(pl.String)
    pl.DataFrame({"sku": ids, "name": "product " + ids, "cat": categories}).write_parquet(folder / "items.parquet")


def stage_import(src: Path, dest: Path) -> dict:
    from tandemrec.data.importer import import_dataset

    _, report = import_dataset("generic", src, dest, mapping=MAPPING)
    return {"rows": report.rows_in["interactions"], "refused": report.refused["interactions"], "balanced": report.balanced()}


def stage_features(dest: Path) -> dict:
    import numpy as np

    from tandemrec.data.dataset import Dataset
    from tandemrec.data.domains import DomainConfig
    from tandemrec.data.prepared import prepare
    from tandemrec.data.split import SplitConfig

    domains = DomainConfig(source=["view", "cart"], target=["purchase"])
    data = prepare(Dataset.scan(dest), SplitConfig(), history_len=50, domains=domains)
    batch = 1024
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(data.train), 100_000)
    for start in range(0, len(picks), batch):
        rows = picks[start : start + batch]
        data.features.batch(data.train.users[rows], data.train.times[rows])
    return {
        "rows": len(data.log),
        "train_examples": len(data.train),
        "target_examples": int(data.train.target.sum()),
        "test_queries": len(data.test),
        "users": len(data.vocabs.users) - 1,
    }


def run_stage(args: list[str], max_rss_gb: float) -> dict:
    """Run one stage in a child process, watching its RSS; returns its result with seconds and peak RSS."""
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    killed: list[float] = []

    def watch() -> None:
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            try:
                lines = status.read_text().splitlines()
                rss_kb = next(int(line.split()[1]) for line in lines if line.startswith("VmRSS"))
            except (OSError, StopIteration):
                return
            if rss_kb / 2**20 > max_rss_gb:
                killed.append(rss_kb / 2**20)
                child.kill()
                return
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    out, _ = child.communicate()
    if killed:
        raise SystemExit(f"stage {args[0]} killed at {killed[0]:.1f} GiB RSS (limit {max_rss_gb} GiB)")
    if child.returncode:
        raise SystemExit(f"stage {args[0]} failed with exit code {child.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def child_main(argv: list[str]) -> None:
    stage, *paths = argv
    # Imports are not the stage's cost (torch alone takes ~3 s and 0.6 GiB); each stage loads its own.
    importlib.import_module("tandemrec.data.importer" if stage == "import" else "tandemrec.data.prepared")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    if stage == "import":
        result = stage_import(Path(paths[0]), Path(paths[1]))
    else:
        result = stage_features(Path(paths[0]))
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["rss_after_imports_gb"] = baseline
    print(json.dumps(result))


def table(results: list[dict]) -> str:
    """Time and memory per stage and size. Linear cost shows as rows/s holding steady while the size
    grows; "RSS added" is the peak above the process's libraries (~0.2 GiB; ~0.7 GiB with torch)."""
    first = {r["stage"]: r for r in results if r["size"] == results[0]["size"]}
    lines = [
        "| interactions | stage | seconds | rows/s | size vs 1st | time vs 1st | peak RSS (GiB) | RSS added (GiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ref = first[r["stage"]]
        lines.append(
            f"| {r['size']:,} | {r['stage']} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
            f"{r['size'] / ref['size']:.0f}x | {r['seconds'] / ref['seconds']:.1f}x | {r['peak_rss_gb']:.2f} | "
            f"{r['peak_rss_gb'] - r['rss_after_imports_gb']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--max-rss-gb", type=float, default=14.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="data_scale-")) if args.work is None else args.work
    results = []
    try:
        for size in args.sizes:
            src, dest = work / f"src-{size}", work / f"ds-{size}"
            shutil.rmtree(src, ignore_errors=True)
            began = time.perf_counter()
            generate(src, size)
            print(f"{size:,}: generated in {time.perf_counter() - began:.0f} s", flush=True)
            for stage, stage_args in (("import", [str(src), str(dest)]), ("features", [str(dest)])):
                result = run_stage([stage, *stage_args], args.max_rss_gb)
                results.append({"size": size, "stage": stage, **result})
                print(json.dumps(results[-1]), flush=True)
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(dest, ignore_errors=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = table(results)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        details = [
            f"- {r['size']:,} {r['stage']}: {json.dumps({k: v for k, v in r.items() if k not in ('size', 'stage')})}"
            for r in results
        ]
        args.out.write_text(f"{text}\n\n" + "\n".join(details) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("import", "features"):
        child_main(sys.argv[1:])
    else:
        main()
