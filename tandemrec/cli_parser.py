"""The `tandemrec` command line's arguments: the global options and one `_add_<verb>` per verb, so that a
verb's arguments read in one place (what each verb does is in cli.py)."""
from __future__ import annotations

import argparse

from tandemrec.retrieval.config import KINDS as INDEX_KINDS
from tandemrec.retrieval.config import LOW_RECALL_ACTIONS
from tandemrec.sources import IMPORT_FORMATS

DESCRIPTION = "The `tandemrec` command line: one verb per job, each saying what it reads and writes."


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the global options, then one subparser per verb, each added by its own
    `_add_<verb>` below, so that a verb's arguments read in one place."""
    parser = argparse.ArgumentParser(
        prog="tandemrec",
        description=DESCRIPTION,
        epilog="Exit status: 0 done; 2 bad input or usage (one line naming the culprit); 1 the disk refused a "
        "write (one line naming the file; nothing half-written); 130 interrupted; a traceback is a bug.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="also show other libraries' warnings (deprecations, advice to developers), hidden by default",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for add in (
        _add_demo, _add_train, _add_ablate, _add_benchmark, _add_index, _add_export, _add_evaluate,
        _add_recommend, _add_similar, _add_search, _add_behaviour, _add_profile, _add_doctor, _add_data,
    ):
        add(verbs)
    return parser


def _verb(verbs: argparse._SubParsersAction, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """Add verb `name` (run by the CLI's handler of that name): `help` is its line in the verb list,
    `description` says what it reads and writes."""
    parser = verbs.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=name)
    return parser


def _add_demo(verbs: argparse._SubParsersAction) -> None:
    demo = _verb(
        verbs, "demo",
        help="the whole path on an embedded default: data, train, export, index, evaluate, recommend",
        description="Reads: the embedded demo config (or --data movielens PATH). Writes: a complete run folder "
        "at --run (config.json, vocab/, dataset/, model/, embeddings/, index/, train_metrics.jsonl, "
        "metrics.json, plots/). Prints a metrics table (tandemrec vs popularity, item-kNN, EASE, content-kNN and random; "
        "warm, cold and new-arrivals rows where the split has them) and example recommendations.",
    )
    demo.add_argument("--data", nargs=2, metavar=("SOURCE", "PATH"), help="e.g. movielens ../shared/datasets/movielens-100k")
    demo.add_argument("--run", default="runs/demo", help="run folder to write (default: runs/demo)")
    _add_overrides(demo)


def _add_train(verbs: argparse._SubParsersAction) -> None:
    train = _verb(
        verbs, "train",
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


def _add_ablate(verbs: argparse._SubParsersAction) -> None:
    ablate = _verb(
        verbs, "ablate",
        help="train variants of a config side by side and compare them",
        description="Reads: CONFIG (TOML; omitted: the embedded demo config) and its data. Trains every variant "
        "once per seed (train.seed=0..N-1, the same data split) and evaluates it on the validation part (choose on "
        "it) and the test part. Writes into --out: VARIANT/seedS/ (a run folder "
        "each), ablation.json (one row per variant and seed, rewritten after every run), ablation.md (mean ± std "
        "over seeds, differences to the first variant or 'noise') and ablation.png (bars with ±1 std). Runs that "
        "already have metrics.json are not retrained: run it again to continue after a crash.",
    )
    _add_seeded_runs(ablate, "variant")
    chosen = ablate.add_mutually_exclusive_group()
    chosen.add_argument(
        "--set-name", metavar="SET",
        help="variant set: content (the default: default, image_random, no_image, text_random, id_dropout, content_only_new_items, content_loss) or "
        "transfer (target_only, joint, source_stage, staged, joint_random_text, joint_no_image, joint_gated_fusion) or "
        "text (text_frozen, text_top1)",
    )
    chosen.add_argument(
        "--variants", help="comma-separated variants by name, from any set; the first is the reference"
    )


def _add_benchmark(verbs: argparse._SubParsersAction) -> None:
    benchmark = _verb(
        verbs, "benchmark",
        help="the model against EASE, item-kNN, popularity and content-kNN on several protocols",
        description="Reads: CONFIG (TOML; omitted: the embedded demo config) and its data. Trains the model once "
        "per protocol and seed (train.seed=0..N-1) and scores it and the baselines (EASE and item-kNN tuned on the "
        "same validation part) with the same metric code. Writes into --out: PROTOCOL/seedS/ (a run folder each), "
        "benchmark.json (rewritten after every run), benchmark.md (mean ± std over seeds, each model cell also as "
        "its ratio to the best baseline) and benchmark.png. Runs whose metrics hold the baselines are not "
        "retrained: run it again to continue after a crash.",
    )
    _add_seeded_runs(benchmark, "protocol")
    benchmark.add_argument(
        "--protocols",
        help="comma-separated, from temporal, leave_last_out, global_cut, target, target_sparse, given (default: "
        "the config's given split; else temporal, target, target_sparse with a target domain; else the first three)",
    )
    benchmark.add_argument(
        "--tune",
        metavar="KEY=V1,V2,...",
        action="append",
        help="choose this config key's value per protocol on validation nDCG@10 (seed 0 trained with each value; "
        "the chosen value's runs are the ones measured on test), e.g. train.target_weight=0,0.3,1; repeatable: "
        "every combination is tried; a target-domain key is not tuned on a protocol without a target domain",
    )


def _add_seeded_runs(parser: argparse.ArgumentParser, per: str) -> None:
    """The arguments of a verb that trains one run per `per` (variant, protocol) and seed and compares them:
    the config, the output folder, the number of seeds and the config overrides."""
    parser.add_argument("config", nargs="?", help="TOML config file (default: the embedded demo config)")
    parser.add_argument("--out", required=True, help=f"folder for the {per}s' runs and the results")
    parser.add_argument(
        "--seeds", type=int, default=3, help=f"training seeds per {per}: train.seed=0..N-1 (default: 3)"
    )
    _add_overrides(parser)


def _add_index(verbs: argparse._SubParsersAction) -> None:
    index = _verb(
        verbs, "index",
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


def _add_export(verbs: argparse._SubParsersAction) -> None:
    export = _verb(
        verbs, "export",
        help="export item and/or user embeddings for downstream systems",
        description="Reads: RUN/model, RUN/dataset, RUN/vocab. Writes into RUN/embeddings/: <what>.parquet (id + "
        "float32 list), <what>.npy + <what>.ids.json, <what>.safetensors + <what>.ids.json, and manifest.json "
        "(one entry per format: model hash, dim, metric, normalisation, created, row count, its files in order, "
        "checksums). With --shard-rows N, each format is cut into files of at most N rows: "
        "<what>-00000-of-00004.parquet, ... Under torchrun the processes embed together; process 0 writes.",
    )
    export.add_argument("run_dir", metavar="RUN")
    export.add_argument("--what", default="items,users", help="comma-separated: items, users (default: both)")
    export.add_argument(
        "--format", dest="formats", default="parquet", help="comma-separated: parquet, npy, safetensors (default: parquet)"
    )
    export.add_argument(
        "--shard-rows", type=int, default=0, metavar="N", help="at most N rows per file (default 0: one file each)"
    )


def _add_evaluate(verbs: argparse._SubParsersAction) -> None:
    evaluate = _verb(
        verbs, "evaluate",
        help="test-split metrics of a run next to its references (popularity, content-kNN, random)",
        description="Reads: an indexed RUN. Writes: RUN/metrics.json and RUN/plots/metrics.png; with --part valid, "
        "RUN/metrics_valid.json (the part to choose settings on).",
    )
    evaluate.add_argument("run_dir", metavar="RUN")
    evaluate.add_argument("--part", choices=("test", "valid"), default="test", help="which held-out part to measure")


def _add_recommend(verbs: argparse._SubParsersAction) -> None:
    recommend = _verb(
        verbs, "recommend",
        help="top-k items for a user",
        description="Reads: an indexed RUN. Writes nothing; prints a table: rank, title, category, score.",
    )
    _add_ranked_query(recommend, "user", "USER")
    recommend.add_argument("--include-seen", action="store_true", help="also return items the user already had")
    recommend.add_argument(
        "--rerank", metavar="EVENT", help="re-order a deeper candidate list by the behaviour head's P(EVENT), e.g. purchase"
    )


def _add_similar(verbs: argparse._SubParsersAction) -> None:
    similar = _verb(
        verbs, "similar",
        help="items nearest to an item",
        description="Reads: an indexed RUN. Writes nothing; prints a table: rank, title, category, score.",
    )
    _add_ranked_query(similar, "item", "ITEM")


def _add_search(verbs: argparse._SubParsersAction) -> None:
    search = _verb(
        verbs, "search",
        help="product search: the items that best match a text query",
        description="Reads: an indexed RUN (model, tokenizer, index, search/: item text features and score "
        "weights). Writes nothing; prints a table: rank, title, category, score.",
    )
    _add_ranked_query(search, "text", "TEXT")
    search.add_argument("--user", metavar="USER", help="re-order the query's best matches for this user")


def _add_ranked_query(parser: argparse.ArgumentParser, query: str, metavar: str) -> None:
    """The arguments of a verb that prints the top-k items for one query (a user, an item, a text) of a run."""
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument(query, metavar=metavar)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--ids", action="store_true", help="also print each item's id")


def _add_behaviour(verbs: argparse._SubParsersAction) -> None:
    behaviour = _verb(
        verbs, "behaviour",
        help="(re)train the behaviour head of a trained run on its frozen towers",
        description="Reads: RUN/model, RUN/dataset, RUN/config.json ([behaviour], the split and [data.domains]). "
        "Writes: RUN/behaviour/head.safetensors and head.json (outputs: the event types of the training part, "
        "and 'target' when a target domain is configured; towers' model hash; training summary). "
        "Prints the validation loss; `tandemrec evaluate RUN` then reports AUC, log-loss and reranking.",
    )
    behaviour.add_argument("run_dir", metavar="RUN")
    _add_overrides(behaviour)


def _add_profile(verbs: argparse._SubParsersAction) -> None:
    profile = _verb(
        verbs, "profile",
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


def _add_doctor(verbs: argparse._SubParsersAction) -> None:
    _verb(
        verbs, "doctor",
        help="check the install: versions, kernels, offline encoders, and what to fix",
        description="Reads: the installed packages (torch, torchrec, fbgemm, faiss, transformers, open_clip, polars, "
        "numpy), runs tiny fbgemm and FAISS checks, and finds the packaged encoders and the hub cache. Writes "
        "nothing; prints versions, kernels, encoders and one line per problem with the command that fixes it. "
        "Exit status: 0 a good install; 1 problems found (named on the last line).",
    )


def _add_data(verbs: argparse._SubParsersAction) -> None:
    """`data` and its own actions: synth, import, validate."""
    actions = verbs.add_parser("data", help="make, import and validate datasets").add_subparsers(
        dest="data_verb", metavar="ACTION"
    )
    synth = _verb(
        actions, "synth",
        help="generate the synthetic shop",
        description="Writes: a dataset folder DEST (Parquet tables, images/, truth.parquet).",
    )
    synth.add_argument("dest", metavar="DEST")
    synth.add_argument("--users", type=int, default=2000)
    synth.add_argument("--items", type=int, default=1000)
    synth.add_argument("--seed", type=int, default=0)
    imp = _verb(
        actions, "import",
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
    check = _verb(
        actions, "validate",
        help="check a dataset folder",
        description="Reads: a dataset folder. Writes nothing; prints the report.",
    )
    check.add_argument("path")
    check.add_argument("--strict", action="store_true")


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE`, repeatable, for every verb that reads a config."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (repeatable)",
    )
