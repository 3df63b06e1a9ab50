"""The search state of a run: stored at index time (item text features, weights chosen on validation
queries) and measured at evaluation time (test queries, next to the frozen-encoder and BM25 references).

See retrieval/search.py for how search scores items and retrieval/search_eval.py for the queries."""
from __future__ import annotations

import dataclasses

from tandemrec.config import RunConfig
from tandemrec.data.prepared import PreparedData
from tandemrec.job_group import is_writer, writer_alone
from tandemrec.retrieval.retriever import Retriever
from tandemrec.retrieval.search import SEARCH_DIR, save_text_features
from tandemrec.retrieval.search_eval import (
    choose_personal,
    choose_weights,
    measure,
    measure_personal,
    metadata_queries,
    personal_events,
    split_queries,
)
from tandemrec.run import Run

# The word a category query adds after the category name, per data source ("Western movies").
QUERY_NOUNS = {"movielens": "movies"}


def query_noun(config: RunConfig) -> str:
    return QUERY_NOUNS.get(config.data.source, "")


def write_search_state(run: Run) -> dict:
    """RUN/search/: the catalogue's text features and the score weights chosen on the validation half of
    the metadata queries (and the personal weight on validation events), with that measurement.

    `run` is the index job's, with its model, prepared data and catalogue content already in hand: nothing
    is read or encoded twice. Under torchrun every process of the job's group calls this together (its
    model's tables may be sharded over them): they embed the validation events' users together, each
    chooses the same weights, and process 0 writes."""
    from tandemrec.jobs import catalogue_text_features

    features = catalogue_text_features(run.model, run.content)
    if features is None:
        return {}
    config, data = run.config, run.data
    folder = run.root / SEARCH_DIR
    writer_alone(lambda: save_text_features(folder, data.vocabs.items.ids[1:], features))  # the retriever reads them
    retriever = Retriever.load(run)
    noun = query_noun(config)
    valid, _ = split_queries(metadata_queries(retriever.catalogue, retriever.index.ids, noun))
    weights, grid = choose_weights(retriever, valid)
    retriever.product_search.weights = weights
    events = personal_events(retriever, data.valid, noun, shared=True)
    personal, personal_grid = choose_personal(retriever, events) if events else (weights.personal, {})
    weights = dataclasses.replace(weights, personal=personal)
    measured = {"queries": len(valid), "ndcg@10": grid, "personal_ndcg@10": personal_grid}
    if is_writer():
        weights.save(folder, measured)
    return {"weights": dataclasses.asdict(weights), "validation": measured}


def evaluate_search(retriever: Retriever, data: PreparedData, config: RunConfig) -> dict:
    """The `search` block of metrics.json: the test half of the metadata queries (search and both
    references) and personalised search on test events, with the weights in use. Under torchrun every
    process of the evaluate job calls this together (as `write_search_state`)."""
    if retriever.product_search is None:
        return {}
    noun = query_noun(config)
    _, test = split_queries(metadata_queries(retriever.catalogue, retriever.index.ids, noun))
    weights = retriever.product_search.weights
    block = {"weights": dataclasses.asdict(weights), **measure(retriever, test)}
    events = personal_events(retriever, data.test, noun, shared=True)
    if events:
        block["personalised"] = measure_personal(retriever, events, weights.personal)
    return block
