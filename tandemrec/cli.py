"""The `tandemrec` command line: one verb per job, each saying what it reads and writes."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tandemrec.config import load_config
from tandemrec.errors import ArgumentError, TandemrecError
from tandemrec.retrieval.config import KINDS as INDEX_KINDS
from tandemrec.retrieval.config import LOW_RECALL_ACTIONS


# The formats of tandemrec.data.readers.READERS (named here so that `--help` need not import polars).
IMPORT_FORMATS = ("movielens", "amazon", "hm", "retailrocket", "generic")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tandemrec").setLevel(logging.INFO)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandemrec",
        description=__doc__,
        epilog="Exit status: 0 done; 2 bad input or usage (one line naming the culprit); 1 the disk refused a "
        "write (one line naming the file; nothing half-written); 130 interrupted; a traceback is a bug.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    demo = verbs.add_parser(
        "demo",
        help="the whole path on an embedded default: data, train, export, index, evaluate, recommend",
        description="Reads: the embedded demo config (or --data movielens PATH). Writes: a complete run folder "
        "at --run (config.json, vocab/, dataset/, model/, embeddings/, index/, train_metrics.jsonl, "
        "metrics.json, plots/). Prints a metrics table (tandemrec vs popularity) and example recommendations.",
    )
    demo.add_argument("--data", nargs=2, metavar=("SOURCE", "PATH"), help="e.g. movielens ../shared/datasets/movielens-100k")
    demo.add_argument("--run", default="runs/demo", help="run folder to write (default: runs/demo)")
    _add_overrides(demo)
    demo.set_defaults(handler=_demo)

    train = verbs.add_parser(
        "train",
        help="train a model from a TOML config",
        description="Reads: CONFIG (TOML, or 'demo' for the embedded default) and the data it names. Writes into --run: "
        "config.json, vocab/, dataset/, model/ (safetensors + config, the best epoch by validation recall), "
        "train_metrics.jsonl, sharding_plan.json, checkpoints/ (resumable, DCP). Runs on N processes under "
        "`torchrun --nproc_per_node=N -m tandemrec.cli train ...` (train.batch_size is the global batch).",
    )
    train.add_argument("config", help="TOML config file, or 'demo'")
    train.add_argument("--run", "--run-dir", dest="run", required=True, help="run folder to write (--run-dir under torchrun, whose own --run-path swallows --run)")
    train.add_argument("--init-from", metavar="RUN", help="start from this run's towers (ids remapped by vocabulary)")
    train.add_argument(
        "--resume", action="store_true",
        help="continue from the run's latest checkpoint (same config; any number of processes)",
    )
    _add_overrides(train)
    train.set_defaults(handler=_train)

    ablate = verbs.add_parser(
        "ablate",
        help="train variants of a config side by side and compare them",
        description="Reads: CONFIG (TOML; omitted: the embedded demo config) and its data. Trains every variant "
        "once per seed (train.seed=0..N-1, the same data split). Writes into --out: VARIANT/seedS/ (a run folder "
        "each), ablation.json (one row per variant and seed, rewritten after every run), ablation.md (mean ± std "
        "over seeds, differences to the first variant or 'noise') and ablation.png (bars with ±1 std). Runs that "
        "already have metrics.json are not retrained: run it again to continue after a crash.",
    )
    ablate.add_argument("config", nargs="?", help="TOML config file (default: the embedded demo config)")
    ablate.add_argument("--out", required=True, help="folder for the variants' runs and the results")
    ablate.add_argument("--seeds", type=int, default=3, help="training seeds per variant: train.seed=0..N-1 (default: 3)")
    chosen = ablate.add_mutually_exclusive_group()
    chosen.add_argument(
        "--set-name", metavar="SET",
        help="variant set: content (the default: default, image_random, no_image, text_random, no_cold_training) or "
        "transfer (target_only, joint, source_stage, staged, joint_random_text, joint_no_image, joint_gated_fusion)",
    )
    chosen.add_argument(
        "--variants", help="comma-separated variants by name, from any set; the first is the reference"
    )
    _add_overrides(ablate)
    ablate.set_defaults(handler=_ablate)

    benchmark = verbs.add_parser(
        "benchmark",
        help="the model against EASE, item-kNN, popularity and content-kNN on several protocols",
        description="Reads: CONFIG (TOML; omitted: the embedded demo config) and its data. Trains the model once "
        "per protocol and seed (train.seed=0..N-1) and scores it and the baselines (EASE and item-kNN tuned on the "
        "same validation part) with the same metric code. Writes into --out: PROTOCOL/seedS/ (a run folder each), "
        "benchmark.json (rewritten after every run), benchmark.md (mean ± std over seeds, each model cell also as "
        "its ratio to the best baseline) and benchmark.png. Runs whose metrics hold the baselines are not "
        "retrained: run it again to continue after a crash.",
    )
    benchmark.add_argument("config", nargs="?", help="TOML config file (default: the embedded demo config)")
    benchmark.add_argument("--out", required=True, help="folder for the runs and the results")
    benchmark.add_argument("--seeds", type=int, default=3, help="training seeds per protocol (default: 3)")
    benchmark.add_argument(
        "--protocols",
        help="comma-separated, from temporal, leave_last_out, global_cut, target, target_sparse, given (default: "
        "the config's given split; else temporal, target, target_sparse with a target domain; else the first three)",
    )
    _add_overrides(benchmark)
    benchmark.set_defaults(handler=_benchmark)

    index = verbs.add_parser(
        "index",
        help="export item/user embeddings and build the FAISS index of a trained run",
        description="Reads: RUN/model, RUN/dataset, RUN/vocab, RUN/config.json ([index]). Writes: RUN/embeddings/ "
        "(items.parquet, users.parquet, manifest.json) and RUN/index/ (index.faiss, ids.json, manifest.json with "
        "the kind, search parameters and the recall@10 against exact search measured on the users' embeddings). "
        "Fails (or warns, --on-low-recall warn) when that recall is below --min-recall.",
    )
    index.add_argument("run_dir", metavar="RUN")
    index.add_argument("--kind", choices=INDEX_KINDS, help="index kind (default: the run config's index.kind, auto)")
    index.add_argument("--nprobe", type=int, help="IVF lists searched per query (default: tuned to --min-recall)")
    index.add_argument("--ef-search", type=int, help="HNSW candidate list per query (default: tuned to --min-recall)")
    index.add_argument("--min-recall", type=float, help="recall@10 the index must reach against exact search")
    index.add_argument("--on-low-recall", choices=LOW_RECALL_ACTIONS, help="below --min-recall: error or warn")
    index.set_defaults(handler=_index)

    export = verbs.add_parser(
        "export",
        help="export item and/or user embeddings for downstream systems",
        description="Reads: RUN/model, RUN/dataset, RUN/vocab. Writes into RUN/embeddings/: <what>.parquet (id + "
        "float32 list), <what>.npy + <what>.ids.json, <what>.safetensors + <what>.ids.json, and manifest.json "
        "(one entry per file: model hash, dim, metric, normalisation, created, row count, checksums).",
    )
    export.add_argument("run_dir", metavar="RUN")
    export.add_argument("--what", default="items,users", help="comma-separated: items, users (default: both)")
    export.add_argument(
        "--format", dest="formats", default="parquet", help="comma-separated: parquet, npy, safetensors (default: parquet)"
    )
    export.set_defaults(handler=_export)

    evaluate = verbs.add_parser(
        "evaluate",
        help="test-split metrics of a run next to its references (popularity, content-kNN, random)",
        description="Reads: an indexed RUN. Writes: RUN/metrics.json and RUN/plots/metrics.png; with --part valid, "
        "RUN/metrics_valid.json (the part to choose settings on).",
    )
    evaluate.add_argument("run_dir", metavar="RUN")
    evaluate.add_argument("--part", choices=("test", "valid"), default="test", help="which held-out part to measure")
    evaluate.set_defaults(handler=_evaluate)

    recommend = verbs.add_parser(
        "recommend",
        help="top-k items for a user",
        description="Reads: an indexed RUN. Writes nothing; prints a table: rank, title, category, score.",
    )
    recommend.add_argument("run_dir", metavar="RUN")
    recommend.add_argument("user", metavar="USER")
    recommend.add_argument("-k", type=int, default=10)
    recommend.add_argument("--include-seen", action="store_true", help="also return items the user already had")
    recommend.add_argument(
        "--rerank", metavar="EVENT", help="re-order a deeper candidate list by the behaviour head's P(EVENT), e.g. purchase"
    )
    recommend.add_argument("--ids", action="store_true", help="also print each item's id")
    recommend.set_defaults(handler=_recommend)

    similar = verbs.add_parser(
        "similar",
        help="items nearest to an item",
        description="Reads: an indexed RUN. Writes nothing; prints a table: rank, title, category, score.",
    )
    similar.add_argument("run_dir", metavar="RUN")
    similar.add_argument("item", metavar="ITEM")
    similar.add_argument("-k", type=int, default=10)
    similar.add_argument("--ids", action="store_true", help="also print each item's id")
    similar.set_defaults(handler=_similar)

    search = verbs.add_parser(
        "search",
        help="product search: the items that best match a text query",
        description="Reads: an indexed RUN (model, tokenizer, index, search/: item text features and score "
        "weights). Writes nothing; prints a table: rank, title, category, score.",
    )
    search.add_argument("run_dir", metavar="RUN")
    search.add_argument("text", metavar="TEXT")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--user", metavar="USER", help="re-order the query's best matches for this user")
    search.add_argument("--ids", action="store_true", help="also print each item's id")
    search.set_defaults(handler=_search)

    behaviour = verbs.add_parser(
        "behaviour",
        help="(re)train the behaviour head of a trained run on its frozen towers",
        description="Reads: RUN/model, RUN/dataset, RUN/config.json ([behaviour], the split and [data.domains]). "
        "Writes: RUN/behaviour/head.safetensors and head.json (outputs: the event types of the training part, "
        "and 'target' when a target domain is configured; towers' model hash; training summary). "
        "Prints the validation loss; `tandemrec evaluate RUN` then reports AUC, log-loss and reranking.",
    )
    behaviour.add_argument("run_dir", metavar="RUN")
    _add_overrides(behaviour)
    behaviour.set_defaults(handler=_behaviour)

    profile = verbs.add_parser(
        "profile",
        help="cluster the users into segments named by their categories; a 2-D map of them",
        description="Reads: RUN/model, RUN/dataset. Writes: RUN/profiles/ (centroids.safetensors, segments.json, "
        "segments.parquet and segments.md: segment, name, size, top categories by lift, example items; "
        "users.parquet: user_id, segment; summary.json, with the adjusted Rand index against the planted tastes "
        "on the synthetic shop) and RUN/plots/user_map.png (PCA of the user vectors, coloured by segment). "
        "Prints the table. `Retriever.profile(user)` and the user export then report each user's segment.",
    )
    profile.add_argument("run_dir", metavar="RUN")
    profile.add_argument("--segments", type=int, default=10, help="number of segments (default: 10)")
    profile.add_argument("--seed", type=int, default=0, help="k-means seed (default: 0)")
    profile.set_defaults(handler=_profile)

    data = verbs.add_parser("data", help="make, import and validate datasets").add_subparsers(dest="data_verb", metavar="ACTION")
    synth = data.add_parser(
        "synth", help="generate the synthetic shop", description="Writes: a dataset folder DEST (Parquet tables, images/, truth.parquet)."
    )
    synth.add_argument("dest", metavar="DEST")
    synth.add_argument("--users", type=int, default=2000)
    synth.add_argument("--items", type=int, default=1000)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=_synth)
    imp = data.add_parser(
        "import",
        help="read a public format into a dataset folder",
        description="Reads: SRC in FORMAT. movielens: a folder of the 100K u.* files, 1M/10M .dat or "
        "ratings.csv/movies.csv (+ posters/); amazon: Amazon Reviews 2023 <Category>.jsonl + meta_<Category>.jsonl "
        "(+ images/); hm: H&M articles.csv, customers.csv, transactions_train.csv, images/; retailrocket: "
        "events.csv, item_properties_part*.csv, category_tree.csv; generic: CSV/Parquet/JSONL files described by "
        "--map. Writes: a validated dataset folder DEST (Parquet tables, images/, manifest.json) and "
        "DEST/report.json: rows in, kept, refused and repaired by reason, per table (also printed).",
    )
    imp.add_argument("format", choices=IMPORT_FORMATS)
    imp.add_argument("src", metavar="SRC")
    imp.add_argument("dest", metavar="DEST")
    imp.add_argument("--strict", action="store_true", help="fail on the first refused row, naming file, row and column")
    imp.add_argument("--map", metavar="TOML", help="generic: the column mapping (see data/readers/mapping.py)")
    imp.add_argument("--posters", metavar="DIR", help="movielens: a folder of <movie id>.jpg (default: SRC/posters)")
    imp.set_defaults(handler=_import)
    check = data.add_parser(
        "validate", help="check a dataset folder", description="Reads: a dataset folder. Writes nothing; prints the report."
    )
    check.add_argument("path")
    check.add_argument("--strict", action="store_true")
    check.set_defaults(handler=_validate)
    return parser


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (repeatable)",
    )


def _demo(args: argparse.Namespace) -> int:
    from tandemrec.demo import run_demo

    overrides = list(args.overrides)
    if args.data:
        source, path = args.data
        overrides += [f'data.source="{source}"', f'data.path="{Path(path).resolve()}"']
    run_demo(load_config(None, overrides), Path(args.run))
    return 0


def _train(args: argparse.Namespace) -> int:
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
    from tandemrec.benchmark import benchmark_table, run_benchmark

    protocols = _names(args.protocols) if args.protocols else None
    print(benchmark_table(run_benchmark(args.config, Path(args.out), protocols, args.seeds, list(args.overrides))))
    return 0


def _index(args: argparse.Namespace) -> int:
    import dataclasses

    from tandemrec.config import read_run_config
    from tandemrec.jobs import build_index

    given = {
        "kind": args.kind, "nprobe": args.nprobe, "ef_search": args.ef_search,
        "min_recall": args.min_recall, "on_low_recall": args.on_low_recall,
    }
    config = read_run_config(Path(args.run_dir) / "config.json").index
    index = build_index(args.run_dir, dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None}))
    meta = index.metadata
    print(
        f"indexed {len(index)} items (dim {index.dim}) in {Path(args.run_dir) / 'index'}: kind {meta['kind']} "
        f"({index.factory}, {index.search_params or 'exact'}), recall@10 {meta['recall_at_10']:.4f} "
        f"against exact search on {meta['recall_queries']} user queries"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from tandemrec.jobs import export_run

    for path in export_run(args.run_dir, _names(args.what), _names(args.formats)):
        print(path)
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _evaluate(args: argparse.Namespace) -> int:
    from tandemrec.demo import metrics_table
    from tandemrec.jobs import evaluate_run

    print(metrics_table(evaluate_run(args.run_dir, part=args.part)))
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
    from tandemrec.config import override_section, read_run_config
    from tandemrec.jobs import train_behaviour

    config = read_run_config(Path(args.run_dir) / "config.json").behaviour
    head = train_behaviour(args.run_dir, override_section(config, "behaviour", args.overrides))
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

    result = profile_run(args.run_dir, args.segments, args.seed)
    ari = result.get("ari_main_class")
    print(segments_markdown(result["table"], "" if ari is None else f"adjusted Rand index vs planted tastes: {ari:.3f}"))
    print(f"wrote {Path(args.run_dir) / 'profiles'} and {Path(args.run_dir) / 'plots' / 'user_map.png'}")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
