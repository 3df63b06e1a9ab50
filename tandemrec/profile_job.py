"""The `profile` job: cluster a run's users into segments, name them by their categories, write a table
and a 2-D map (and, on the synthetic shop, score the segments against the planted tastes)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from tandemrec.data.synthetic import TRUTH_FILE
from tandemrec.io.atomic import atomic_path, atomic_write_json, atomic_write_text
from tandemrec.run_embeddings import embed_run
from tandemrec.plots import segment_map
from tandemrec.retrieval.profiles import (
    SEGMENTS_MD, SEGMENTS_TABLE, USERS_FILE, Segments, adjusted_rand_index, category_lift, cluster_users,
    segment_table, segments_markdown,
)
from tandemrec.run import Run
from tandemrec.run_lock import writes_run

log = logging.getLogger(__name__)


@writes_run
def profile_run(
    run_dir: str | Path, n_segments: int = 10, seed: int = 0, examples: int = 5, progress: bool = False
) -> dict:
    """Cluster every user vector into `n_segments` segments (spherical FAISS k-means), name each by its most
    over-represented categories, and write RUN/profiles/ (centroids.safetensors, segments.json,
    segments.parquet, segments.md, users.parquet, summary.json) and RUN/plots/user_map.png.

    On the synthetic shop (truth.parquet beside the dataset) the summary has the adjusted Rand index of
    the segments against the users' planted main taste class. `progress` shows the embedding's bars."""
    run = Run(run_dir)
    vectors = embed_run(run, progress=progress)
    centroids, assignment = cluster_users(vectors.users, n_segments, seed)
    dataset = run.dataset
    users = pl.DataFrame({"user_id": vectors.user_ids, "segment": assignment})
    items = dataset.items
    category = pl.col("category") if "category" in items.columns else pl.lit(None, dtype=pl.String).alias("category")
    events = (
        dataset.interactions.select("user_id", "item_id")
        .join(users, on="user_id")
        .join(items.select("item_id", category), on="item_id", how="left")
    )
    lift = category_lift(events["segment"].to_numpy(), events["category"].to_list(), n_segments)
    segments = Segments(centroids, [lift.name(s) for s in range(n_segments)], vectors.model_hash)
    nearest = np.argsort(-(centroids @ vectors.items.T), axis=1)[:, :examples]
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    table = segment_table(assignment, lift, [[vectors.item_ids[i] for i in row] for row in nearest], titles)
    summary = {"n_segments": n_segments, "seed": seed, "users": len(vectors.user_ids), "model_hash": vectors.model_hash}
    truth = _planted_tastes(run, vectors.user_ids)
    if truth is not None:
        summary["ari_main_class"] = adjusted_rand_index(truth, assignment)
    note = "" if truth is None else f"Adjusted Rand index against the planted tastes: {summary['ari_main_class']:.3f}"
    segments.save(run.folder.profiles)
    with atomic_path(run.folder.profiles / SEGMENTS_TABLE) as tmp:
        table.write_parquet(tmp)
    with atomic_path(run.folder.profiles / USERS_FILE) as tmp:
        users.write_parquet(tmp)
    atomic_write_text(run.folder.profiles / SEGMENTS_MD, segments_markdown(table, note))
    atomic_write_json(run.folder.profiles / "summary.json", summary)
    centred = vectors.users - vectors.users.mean(axis=0)
    points = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    centres = np.stack([points[assignment == s].mean(axis=0) if (assignment == s).any() else np.full(2, np.nan)
                        for s in range(n_segments)])
    segment_map(
        points, assignment, centres, segments.names,
        f"{len(vectors.user_ids)} users in {n_segments} segments (PCA of the user vectors)", run.folder.plots / "user_map.png",
    )
    return {**summary, "table": table}


def _planted_tastes(run: Run, user_ids: list[str]) -> list[str] | None:
    """The synthetic shop's main taste class of each user, when the run's data is the synthetic shop."""
    config = run.config.data
    if config.source != "synthetic":
        return None
    path = (Path(config.path) if config.path else run.root / "shop") / TRUTH_FILE
    if not path.is_file():
        log.info("no %s at %s: segments are not compared with the planted tastes", TRUTH_FILE, path)
        return None
    truth = pl.DataFrame({"user_id": user_ids}).join(pl.read_parquet(path), on="user_id", how="left")
    return truth["main_class"].fill_null("").to_list()
