"""The `tandemrec` command line: one verb per job, each saying what it reads and writes (its arguments: cli_parser.py)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from tandemrec.errors import ArgumentError, TandemrecError
from tandemrec.quiet import install as install_quiet
from tandemrec.cli_parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tandemrec").setLevel(logging.INFO)
    install_quiet(args.verbose)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return HANDLERS[args.handler](args) or 0
    except TandemrecError as err:  # the user's to fix: one line, no traceback
        print(f"tandemrec {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk's: full, read-only, no permission (what was being written is not left half-done)
        print(f"tandemrec {args.verb}: error: {_disk_problem(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tandemrec {args.verb}: interrupted", file=sys.stderr)
        return 130


def _disk_problem(err: OSError) -> str:
    """`strerror: 'path'`, the way the shell says it, from an OSError of any origin."""
    if err.filename is None:
        return str(err)
    target = f"'{err.filename}'" + (f" -> '{err.filename2}'" if err.filename2 else "")
    return f"{err.strerror or type(err).__name__}: {target}"


def _demo(args: argparse.Namespace) -> int:
    from tandemrec.config import load_config
    from tandemrec.demo import run_demo

    overrides = list(args.overrides)
    if args.data:
        source, path = args.data
        overrides += [f'data.source="{source}"', f'data.path="{Path(path).resolve()}"']
    run_demo(load_config(None, overrides), Path(args.run), show=print)
    return 0


def _train(args: argparse.Namespace) -> int:
    from tandemrec.config import load_config
    from tandemrec.jobs import train

    overrides = list(args.overrides)
    if args.init_from:
        overrides.append(f'train.init_from="{Path(args.init_from).resolve()}"')
    result = train(load_config(args.config, overrides), Path(args.run), resume=args.resume)
    print(f"best epoch {result.best_epoch}: validation recall {result.best_recall:.4f} ({result.seconds:.0f} s)")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from tandemrec.ablation import ablation_table, run_ablation, select_variants

    variants = select_variants(args.set_name, _names(args.variants) if args.variants else None)
    print(ablation_table(run_ablation(args.config, Path(args.out), variants, list(args.overrides), args.seeds)))
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from tandemrec.benchmark import Tuning, benchmark_table, run_benchmark

    protocols = _names(args.protocols) if args.protocols else None
    tune = [Tuning.parse(t) for t in args.tune or ()]
    rows = run_benchmark(args.config, Path(args.out), protocols, args.seeds, list(args.overrides), tune)
    print(benchmark_table(rows))
    return 0


def _index(args: argparse.Namespace) -> int:
    import dataclasses

    from tandemrec.jobs import build_index
    from tandemrec.run import Run

    given = {
        "kind": args.kind, "nprobe": args.nprobe, "ef_search": args.ef_search,
        "min_recall": args.min_recall, "on_low_recall": args.on_low_recall,
    }
    config = Run(args.run_dir).config.index
    index = build_index(
        args.run_dir, dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None}), progress=True
    )
    if index is None:  # a process of a torchrun job other than 0: process 0 built it and says so
        return 0
    meta = index.metadata
    print(
        f"indexed {len(index)} items (dim {index.dim}) in {Path(args.run_dir) / 'index'}: kind {meta['kind']} "
        f"({index.factory}, {index.search_params or 'exact'}), recall@10 {meta['recall_at_10']:.4f} "
        f"against exact search on {meta['recall_queries']} user queries"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from tandemrec.export_job import export_run

    for path in export_run(args.run_dir, _names(args.what), _names(args.formats), progress=True, shard_rows=args.shard_rows):
        print(path)
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _evaluate(args: argparse.Namespace) -> int:
    from tandemrec.demo import metrics_table
    from tandemrec.jobs import evaluate_run

    metrics = evaluate_run(args.run_dir, part=args.part, progress=True)
    if metrics:  # empty on a process of a torchrun job other than 0, which measures nothing
        print(metrics_table(metrics))
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from tandemrec.display import results_table
    from tandemrec.retrieval.retriever import Retriever

    retriever = Retriever.load(args.run_dir)
    if args.user not in retriever.vocabs.users:  # a typo here should not quietly print popularity
        raise ArgumentError(f"unknown user id '{args.user}': not in this run's data")
    found = retriever.recommend(args.user, args.k, exclude_seen=not args.include_seen, rerank=args.rerank)
    print(results_table(found, retriever.catalogue, args.ids))
    return 0


def _search(args: argparse.Namespace) -> int:
    from tandemrec.display import results_table
    from tandemrec.retrieval.retriever import Retriever

    retriever = Retriever.load(args.run_dir)
    print(results_table(retriever.search(args.text, args.k, user=args.user), retriever.catalogue, args.ids))
    return 0


def _similar(args: argparse.Namespace) -> int:
    from tandemrec.display import results_table
    from tandemrec.retrieval.retriever import Retriever

    retriever = Retriever.load(args.run_dir)
    print(results_table(retriever.similar_items(args.item, args.k), retriever.catalogue, args.ids))
    return 0


def _behaviour(args: argparse.Namespace) -> int:
    from tandemrec.config import override_section
    from tandemrec.jobs import train_behaviour
    from tandemrec.run import Run

    config = Run(args.run_dir).config.behaviour
    head = train_behaviour(args.run_dir, override_section(config, "behaviour", args.overrides), progress=True)
    summary = head.config.summary
    print(
        f"behaviour head for {head.outputs}: {summary['train_pairs']} training pairs "
        f"({summary['train_observed']} observed), best epoch {summary['best_epoch']}, "
        f"{summary['loss_on']} loss {summary['best_loss']:.4f} ({summary['seconds']:.0f} s); "
        f"wrote {Path(args.run_dir) / 'behaviour'}"
    )
    evaluation = Path(args.run_dir) / "behaviour" / "evaluation.json"
    if evaluation.is_file():
        print(_outcome_line(json.loads(evaluation.read_text())))
    return 0


def _outcome_line(evaluation: dict) -> str:
    """The outcome model's test result in one line: what it predicts, next to the bias baseline."""
    chosen, bias = evaluation["conditional"]["chosen"], evaluation["conditional"]["bias baseline"]
    return (
        f"outcome model for P({evaluation['outcome']} | interaction) ({evaluation['chosen']['conditional']}): "
        f"test conditional AUC {chosen['conditional_auc']:.3f} (bias baseline {bias['conditional_auc']:.3f}), "
        f"calibration error {chosen['ece']:.3f}; plots/calibration.png"
    )


def _profile(args: argparse.Namespace) -> int:
    from tandemrec.profile_job import profile_run
    from tandemrec.retrieval.profiles import segments_markdown

    result = profile_run(args.run_dir, args.segments, args.seed, progress=True)
    ari = result.get("ari_main_class")
    print(segments_markdown(result["table"], "" if ari is None else f"adjusted Rand index vs planted tastes: {ari:.3f}"))
    print(f"wrote {Path(args.run_dir) / 'profiles'} and {Path(args.run_dir) / 'plots' / 'user_map.png'}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from tandemrec.doctor.diagnosis import diagnose

    report = diagnose()
    print(report.text(), flush=True)
    summary = report.summary()
    if summary is None:
        return 0
    print(summary, file=sys.stderr)
    return 1


def _synth(args: argparse.Namespace) -> int:
    from tandemrec.data.synthetic import SyntheticShopConfig, make_synthetic_shop

    dataset = make_synthetic_shop(args.dest, SyntheticShopConfig(n_users=args.users, n_items=args.items, seed=args.seed))
    print(f"wrote {dataset.interactions.height} interactions, {dataset.items.height} items to {args.dest}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from tandemrec.data.importer import import_dataset

    options = {}
    for flag, key, format in (("map", "mapping", "generic"), ("posters", "posters", "movielens")):
        if getattr(args, flag) is not None:
            if args.format != format:
                raise ArgumentError(f"--{flag} applies to the {format} format only")
            options[key] = getattr(args, flag)
    dest, report = import_dataset(args.format, args.src, args.dest, strict=args.strict, **options)
    print(report.summary())
    print(f"wrote {dest} (report: {dest / 'report.json'})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from tandemrec.data.dataset import Dataset
    from tandemrec.data.validate import validate

    _, report = validate(Dataset.load(args.path), strict=args.strict)
    print(report.summary())
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "train": _train,
    "ablate": _ablate,
    "benchmark": _benchmark,
    "index": _index,
    "export": _export,
    "evaluate": _evaluate,
    "recommend": _recommend,
    "search": _search,
    "similar": _similar,
    "behaviour": _behaviour,
    "profile": _profile,
    "doctor": _doctor,
    "synth": _synth,
    "import": _import,
    "validate": _validate,
}


if __name__ == "__main__":
    sys.exit(main())
