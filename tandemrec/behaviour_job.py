"""Fit and measure the behaviour outcome model of a run (see towers/outcome_model.py).

Rows, per part of the split (`build_pairs`):
- observed pairs: each (user, item) with events in the part, at the user's state just before the first
  of them, labelled with whether any of them was the outcome (the conditional task);
- in training and validation, candidate rows: the retriever's own top candidates at a few moments per
  user, labelled with whether the user touched them from then on, plus a few sampled items (the
  relevance task: what a rerank sees);
- in the test part, sampled items per observed pair (the head's ranking table against sampled items).
Features come from data/behaviour_features.py: strictly earlier events, and the towers.

The test metrics are computed once, after the choice and the calibration were made on validation, for
every candidate (the chosen scorer, the other kind, the bias baseline, the MLP head) in one table, and
written to RUN/behaviour/evaluation.json with the reliability plot RUN/plots/calibration.png.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict

import numpy as np
import polars as pl
from tqdm import tqdm

from tandemrec.config import RunConfig
from tandemrec.data.behaviour_features import (
    FEATURES, OUTCOME, TIME, FeatureSettings, HistoryTables, OutcomeLabel, feature_matrix, history_tables,
    outcome_history, pair_features, settings_from,
)
from tandemrec.data.behaviour_pairs import BehaviourPairs, state_vectors, with_negatives
from tandemrec.data.dataset import Dataset
from tandemrec.data.domains import TARGET
from tandemrec.data.encoded import PART
from tandemrec.data.errors import DataError
from tandemrec.data.examples import EvalQueries
from tandemrec.io.atomic import atomic_path, atomic_write_json
from tandemrec.plots import reliability_plot
from tandemrec.retrieval.calibration import expected_calibration_error, reliability
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.evaluate import unseen_targets
from tandemrec.retrieval.metrics import log_loss, ranking_metrics, roc_auc
from tandemrec.retrieval.retriever import RERANK_DEPTH, Retriever
from tandemrec.run import Run
from tandemrec.towers.outcome_model import OutcomeModel
from tandemrec.training.behaviour_config import BehaviourConfig
from tandemrec.training.outcome_model_fit import (
    available_kinds, bias_baseline, choose_scorer, fit_scorer, user_halves,
)

log = logging.getLogger(__name__)
INTERACTED = "interacted"
KIND = "kind"  # observed | candidate | sampled (see build_pairs)
CHOSEN = "chosen"  # the scorer chosen on validation, in the evaluation's tables
EVALUATION = "evaluation.json"
PAIRS_FILE = "pairs.parquet"


def outcome_label(config: RunConfig, event_types: list[str], outcome: str) -> OutcomeLabel | None:
    """What the outcome model predicts: `outcome` when set (an event type, or "target"), else the target
    domain when the run has one, else the rarest event type when there are two or more (a purchase among
    views); None when there is nothing conditional to predict (one event type, no target)."""
    domains = config.data.domains
    if not outcome:
        if domains.has_target:
            outcome = TARGET
        elif len(event_types) >= 2:
            return OutcomeLabel(event_types[0], [event_types[0]])  # callers pass the types rarest first
        else:
            return None
    if outcome == TARGET:
        if not domains.has_target:
            raise DataError("behaviour.outcome = 'target' but the run has no [data.domains] target")
        return OutcomeLabel(TARGET, list(domains.target), domains.target_min_value)
    if outcome not in event_types:
        raise DataError(f"behaviour.outcome {outcome!r} is not an event type of the run ({event_types})")
    return OutcomeLabel(outcome, [outcome])


def event_types_rarest_first(dataset: Dataset) -> list[str]:
    counts = dataset.interactions.group_by("event").len().sort("len", "event")
    return [str(e) for e in counts["event"].to_list()]


def observed(history: pl.DataFrame, part: str) -> pl.DataFrame:
    """One pair per (user, item) with events in `part`: first time, outcome of any of them, interacted."""
    return (
        history.filter(pl.col(PART) == part)
        .group_by("user_id", "item_id")
        .agg(pl.col(TIME).min(), pl.col(OUTCOME).max())
        .with_columns(pl.lit(1.0).alias(INTERACTED))
        .sort("user_id", TIME, "item_id")
    )


def candidate_rows(
    history: pl.DataFrame, part: str, retriever: Retriever, catalogue: np.ndarray, depth: int, states: int,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """The retriever's own top-`depth` candidates at up to `states` moments per user in `part` (the
    times of randomly chosen events of theirs there), seen items excluded as `recommend` does, each
    labelled `interacted` when the user has an event with it in the part from that moment on: the
    rows a rerank sees, with the answer it should give. Rows: user_id, item_id, time, interacted."""
    # Sorted before the draw: `unique` returns rows in any order, which would change the moments drawn.
    events = history.filter(pl.col(PART) == part)
    distinct = events.select("user_id", TIME).unique().sort("user_id", TIME)
    moments = (
        distinct.with_columns(pl.Series("__key", rng.random(distinct.height)))
        .sort("__key").group_by("user_id", maintain_order=True).head(states)
        .sort("user_id", TIME).drop("__key")
    )
    users, times = moments["user_id"].to_numpy(), moments[TIME].to_numpy()
    seen = retriever.seen_rows(users, times)
    vectors = retriever.embed_users(users, times)
    top, _ = retriever.index.search(vectors, min(depth, len(catalogue)), exclude=seen)
    filled = top >= 0
    rows = pl.DataFrame({
        "user_id": np.repeat(users, top.shape[1])[filled.reshape(-1)],
        "item_id": top[filled] + 1,
        TIME: np.repeat(times, top.shape[1])[filled.reshape(-1)],
    })
    later = events.group_by("user_id", "item_id").agg(pl.col(TIME).max().alias("__last"))
    return rows.join(later, on=["user_id", "item_id"], how="left", maintain_order="left").select(
        "user_id", "item_id", TIME, (pl.col("__last") >= pl.col(TIME)).fill_null(False).cast(pl.Float64).alias(INTERACTED)
    )


def with_features(
    pairs: pl.DataFrame, tables: HistoryTables, settings: FeatureSettings, retriever: Retriever,
    catalogue: np.ndarray,
) -> pl.DataFrame:
    """`pairs` with every FEATURES column, the history's read from `tables` (`fit_outcome_model` builds
    them once for every part's pairs and the rerank evaluation), the towers' at the user's state just
    before the pair's time."""
    users = state_vectors(retriever.embed_users, pairs["user_id"].to_numpy(), pairs[TIME].to_numpy())
    return pair_features(tables, pairs, settings, users, catalogue)


def _sample(frame: pl.DataFrame, at_most: int, seed: int) -> pl.DataFrame:
    return frame if frame.height <= at_most else frame.sample(at_most, seed=seed).sort("user_id", TIME, "item_id")


def build_pairs(
    history: pl.DataFrame, tables: HistoryTables, settings: FeatureSettings, retriever: Retriever,
    behaviour: BehaviourConfig, popularity: np.ndarray,
) -> pl.DataFrame:
    """Every row of every part with its features (read from `tables`, those of the whole `history`),
    `part`, `kind`, `outcome` and `interacted`: `observed` pairs (the conditional task), `candidate` rows
    (the relevance task, see `candidate_rows`) and, in the test part, `sampled` items (the ranking table
    against sampled items)."""
    rng = np.random.default_rng(behaviour.seed)
    catalogue = retriever.index.vectors(np.arange(len(retriever.index)))
    frames = []
    for part in ("train", "valid", "test"):
        positives = observed(history, part)
        if part == "train":
            positives = _sample(positives, behaviour.max_pairs, behaviour.seed)
        frames.append(positives.with_columns(pl.lit(part).alias(PART), pl.lit("observed").alias(KIND)))
        if part == "test":
            frames.append(_sampled(history, positives, behaviour, popularity, len(catalogue), rng)
                          .with_columns(pl.lit(part).alias(PART), pl.lit("sampled").alias(KIND)))
            continue
        rows = candidate_rows(history, part, retriever, catalogue, behaviour.candidates, behaviour.states, rng)
        # Sampled items at the same moments too, so that the relevance scorer also sees the low scores of
        # items a retriever would not return (what the ranking table against sampled items asks of it).
        moments = rows.select("user_id", TIME).unique(maintain_order=True).with_columns(pl.lit(0).alias("item_id"),
                                                                                       pl.lit(0.0).alias(OUTCOME))
        sampled = _sampled(history, moments, behaviour, popularity, len(catalogue), rng)
        frames.append(pl.concat([rows, sampled.select(rows.columns)]).with_columns(
            pl.lit(0.0).alias(OUTCOME), pl.lit(part).alias(PART), pl.lit("candidate").alias(KIND)))
    pairs = pl.concat(frames, how="diagonal_relaxed")
    return with_features(pairs, tables, settings, retriever, catalogue)


def _sampled(
    history: pl.DataFrame, positives: pl.DataFrame, behaviour: BehaviourConfig, popularity: np.ndarray,
    n_items: int, rng: np.random.Generator,
) -> pl.DataFrame:
    """`behaviour.negatives` items per row of `positives` (user_id, time) that the user never touched,
    half by training popularity, half uniformly (`with_negatives`, as the head's table), at its time."""
    warm = np.flatnonzero(popularity > 0) + 1
    pairs = BehaviourPairs(positives["user_id"].to_numpy(), positives[TIME].to_numpy(),
                           positives["item_id"].to_numpy(), positives[OUTCOME].to_numpy()[:, None],
                           np.ones(positives.height, bool))
    touched = history.select("user_id", "item_id")
    drawn = with_negatives(pairs, behaviour.negatives, warm, popularity[warm - 1].astype(np.float64), touched,
                           n_items, rng, behaviour.popular_negatives)
    extra = ~drawn.observed
    return pl.DataFrame({"user_id": drawn.users[extra], "item_id": drawn.items[extra], TIME: drawn.times[extra],
                         OUTCOME: 0.0, INTERACTED: 0.0})


def fit_outcome_model(
    run: Run, retriever: Retriever, behaviour: BehaviourConfig, progress: bool = False
) -> OutcomeModel | None:
    """Fit, choose and calibrate the outcome model on a run (`retriever`: the run's, whose candidates it
    learns to rerank), measure it on the test part, and save the model, the pairs with their features and
    the evaluation in RUN/behaviour/, the reliability plot in RUN/plots/. None (and nothing written) when
    the run has nothing conditional to predict. `progress` shows a bar over its stages: the pairs and their
    features (the retriever's candidates, the users' vectors), the scorers' fits, the test evaluation."""
    config, dataset, queries = run.config, run.dataset, run.data.test
    label = outcome_label(config, event_types_rarest_first(dataset), behaviour.outcome)
    if label is None:
        log.info("behaviour: one event type and no target domain: no outcome model")
        return None
    start = time.perf_counter()
    history = outcome_history(dataset, retriever.vocabs, label, config.data.split)
    settings = settings_from(history.filter(pl.col(PART) == "train"))
    popularity = np.bincount(history.filter(pl.col(PART) == "train")["item_id"].to_numpy() - 1,
                             minlength=len(retriever.index))
    # One group-by pass over the log serves every pair's history features: the fit's and the rerank's.
    tables = history_tables(history.drop(PART), settings)
    with tqdm(total=3, desc="outcome model", unit="stage", disable=not progress) as bar:  # pairs, fit, evaluate
        pairs = build_pairs(history, tables, settings, retriever, behaviour, popularity)
        bar.update()
        tasks = {
            (part, task): task_rows(pairs, part, task)
            for part in ("train", "valid", "test") for task in ("conditional", "relevance", "ranking")
        }
        kinds = available_kinds(behaviour.models)
        if not kinds:
            raise DataError("behaviour.models: none of the scorer kinds can be fitted here (is lightgbm installed?)")
        chosen, losses = {}, {}
        for task in ("conditional", "relevance"):
            x_va, y_va, users_va = tasks["valid", task]
            chosen[task], losses[task] = choose_scorer(
                FEATURES, tasks["train", task][:2], (x_va, y_va), user_halves(users_va, behaviour.seed),
                behaviour.seed, kinds,
            )
        bar.update()
        model = OutcomeModel(
            label.name, asdict(label), list(FEATURES), asdict(settings), run.model_hash, chosen["conditional"],
            chosen["relevance"],
            {"valid_log_loss": losses,
             "train_rows": {task: len(tasks["train", task][1]) for task in ("conditional", "relevance")},
             "seconds": round(time.perf_counter() - start, 1)},
        )
        folder = run.folder.behaviour
        model.save(folder)
        with atomic_path(folder / PAIRS_FILE) as tmp:
            pairs.write_parquet(tmp)
        evaluation = evaluate_outcome(model, tasks, pairs, history, tables, retriever, kinds, behaviour.seed, queries)
        bar.update()
    evaluation["summary"] = model.summary
    atomic_write_json(folder / EVALUATION, evaluation)
    reliability_plot(evaluation["conditional"][CHOSEN]["reliability"], f"P({label.name} | interaction), test pairs",
                     run.folder.plots / "calibration.png")
    log.info("outcome model %s: conditional %s, relevance %s (%.1f s)", label.name, model.conditional.kind,
             model.relevance.kind, model.summary["seconds"])
    return model


def _conditional_row(p: np.ndarray, y: np.ndarray, calibrated: bool) -> dict:
    row = {"conditional_auc": roc_auc(p, y), "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    if calibrated:
        row |= {"log_loss": log_loss(p, y), "ece": expected_calibration_error(p, y), "reliability": reliability(p, y)}
    return row


def task_rows(pairs: pl.DataFrame, part: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, users) of a task in a part: `conditional` the observed pairs labelled by the
    outcome, `relevance` the candidate rows labelled by interaction, `ranking` the observed and sampled
    pairs labelled by the outcome."""
    kinds, label = {"conditional": (["observed"], OUTCOME), "relevance": (["candidate"], INTERACTED),
                    "ranking": (["observed", "sampled"], OUTCOME)}[task]
    rows = pairs.filter((pl.col(PART) == part) & pl.col(KIND).is_in(kinds))
    return feature_matrix(rows, FEATURES), rows[label].to_numpy(), rows["user_id"].to_numpy()


def evaluate_outcome(
    model: OutcomeModel, tasks: dict, pairs: pl.DataFrame, history: pl.DataFrame, tables: HistoryTables,
    retriever: Retriever, kinds: tuple[str, ...], seed: int, queries: EvalQueries,
) -> dict:
    """Test metrics of every candidate: conditional (observed test pairs), ranking (vs sampled items) and
    the rerank of the retriever's top candidates on the test queries (their features read from `tables`,
    those of `history` that the pairs were built from)."""
    x_te, y_te, _ = tasks["test", "conditional"]
    conditional = {CHOSEN: _conditional_row(model.conditional.predict(x_te), y_te, True)}
    for kind in kinds:
        if kind != model.conditional.kind:
            x_va, y_va, _ = tasks["valid", "conditional"]
            other = fit_scorer(kind, model.features, *tasks["train", "conditional"][:2], x_va, y_va, seed)
            conditional[kind] = _conditional_row(other.predict(x_te), y_te, True)
    train_history = history.filter(pl.col(PART) == "train")
    observed_test = pairs.filter((pl.col(PART) == "test") & (pl.col(KIND) == "observed"))
    column = "value" if train_history["value"].is_not_null().any() else OUTCOME
    conditional["bias baseline"] = _conditional_row(bias_baseline(train_history, observed_test, column), y_te, False)
    ranked = pairs.filter((pl.col(PART) == "test") & pl.col(KIND).is_in(["observed", "sampled"]))
    x_rank, y_rank, _ = tasks["test", "ranking"]
    joint, _ = model.probabilities(x_rank)
    ranking = {CHOSEN: {"auc": roc_auc(joint, y_rank), "log_loss": log_loss(joint, y_rank)},
               "tower score": {"auc": roc_auc(ranked["score"].to_numpy(), y_rank)}}
    head = retriever.behaviour
    if head is not None and model.outcome in head.outputs:
        j = head.outputs.index(model.outcome)
        users = state_vectors(retriever.embed_users, ranked["user_id"].to_numpy(), ranked[TIME].to_numpy())
        p = head.probabilities(users, retriever.index.vectors(ranked["item_id"].to_numpy() - 1))[:, j]
        seen = (ranked[KIND] == "observed").to_numpy()
        conditional["MLP head (vectors)"] = _conditional_row(p[seen], y_rank[seen], True)
        ranking["MLP head (vectors)"] = {"auc": roc_auc(p, y_rank), "log_loss": log_loss(p, y_rank)}
    return {
        "outcome": model.outcome,
        "conditional": conditional,
        "ranking": ranking,
        "rerank": rerank_comparison(model, retriever, history, tables, queries),
        "chosen": {"conditional": model.conditional.kind, "relevance": model.relevance.kind},
    }


def rerank_comparison(model: OutcomeModel, retriever: Retriever, history: pl.DataFrame, tables: HistoryTables,
                      queries: EvalQueries, k: int = 10) -> dict:
    """Recall@k / NDCG@k of the plain dot product's top k and of its top RERANK_DEPTH re-ordered by the
    model's P(outcome), by its parts alone, and by the head, on the same users and candidates. The targets
    are each query's test items the user had the outcome with (the target protocol: a rerank by
    P(purchase) is judged on purchases), unseen before the query. `tables`: `history`'s (`history_tables`)."""
    seen, targets = unseen_targets(retriever, queries)
    hits = (history.filter((pl.col(PART) == "test") & (pl.col(OUTCOME) > 0))
            .group_by("user_id").agg(pl.col("item_id").unique()))
    wins = dict(zip(hits["user_id"].to_list(), hits["item_id"].to_list()))
    targets = [np.intersect1d(t, np.asarray(wins.get(int(u), []), dtype=np.int64) - 1)
               for u, t in zip(queries.users, targets)]
    keep = np.array([i for i, t in enumerate(targets) if len(t)])
    if not len(keep):
        raise RetrievalError("rerank evaluation: no test user has an unseen target item with the outcome")
    vectors = retriever.embed_users(queries.users[keep], queries.times[keep])
    depth = min(len(retriever.index), RERANK_DEPTH)
    candidates, _ = retriever.index.search(vectors, depth, exclude=[seen[i] for i in keep])
    pairs = pl.DataFrame({
        "user_id": np.repeat(queries.users[keep], depth), "item_id": candidates.reshape(-1) + 1,
        TIME: np.repeat(queries.times[keep], depth),
    })
    catalogue = retriever.index.vectors(np.arange(len(retriever.index)))
    x = feature_matrix(with_features(pairs, tables, FeatureSettings(**model.settings), retriever, catalogue),
                       model.features)
    joint, conditional = model.probabilities(x)
    orders = {f"P({model.outcome})": joint, f"P({model.outcome} | interaction)": conditional,
              "P(interaction)": model.relevance.predict(x)}
    head = retriever.behaviour
    if head is not None and model.outcome in head.outputs:
        p = head.probabilities(np.repeat(vectors, depth, axis=0), catalogue[candidates.reshape(-1)])
        orders[f"MLP head P({model.outcome})"] = p[:, head.outputs.index(model.outcome)]
    wanted = [targets[i] for i in keep]

    def scored(top: np.ndarray) -> dict:
        m = ranking_metrics(top, wanted, [k], len(retriever.index))
        return {f"recall@{k}": m[f"recall@{k}"], f"ndcg@{k}": m[f"ndcg@{k}"]}

    result = {"users": int(len(keep)), "candidates": depth, "plain": scored(candidates[:, :k])}
    for name, p in orders.items():
        order = np.argsort(-p.reshape(len(keep), depth), axis=1, kind="stable")[:, :k]
        result[name] = scored(np.take_along_axis(candidates, order, axis=1))
    return result
