"""User profiles (issue 7): the adjusted Rand index, k-means segments named by category lift, the
`profile` job and verb (table, map, centroids), `Retriever.profile`, the segment column of the user
export, and clear errors for bad input."""

import json
import shutil

import numpy as np
import polars as pl
import pytest

from tandemrec.cli import main
from tandemrec.export_job import export_run
from tandemrec.profile_job import profile_run
from tandemrec.retrieval.errors import RetrievalError
from tandemrec.retrieval.profiles import adjusted_rand_index, category_lift, cluster_users
from tandemrec.retrieval.retriever import Retriever

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

# The tiny run's synthetic shop plants 6 main taste classes in 300 users (80% of each user's events in
# it). Measured with 6 segments: ARI 0.97 to 1.00 over k-means seeds and two trainings (one k-means run
# without restarts fell to 0.53 to 0.75 by merging two tastes, which this floor catches), while a random
# assignment scores 0 in expectation (|ARI| < 0.02 for 300 users, see the test below). 0.8 leaves room for
# a weaker run and fails on segments that merge or split a planted taste.
ARI_FLOOR = 0.8


@pytest.fixture(scope="module")
def profiled(trained_run, tmp_path_factory):
    """A copy of the trained run (with its synthetic shop and truth) profiled into 6 segments."""
    run = tmp_path_factory.mktemp("profiles") / "run"
    shutil.copytree(trained_run, run)
    return run, profile_run(run, 6)


def test_adjusted_rand_index_matches_hand_computed_values():
    # contingency [[2,1,0],[0,1,2]]: index 2, rows 6, columns 3, pairs 15 -> (2 - 1.2) / (4.5 - 1.2)
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    assert adjusted_rand_index(["a", "a", "b", "b"], [7, 7, 3, 3]) == 1.0  # same partition, other names
    assert adjusted_rand_index([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(-0.5)
    rng = np.random.default_rng(0)
    assert abs(adjusted_rand_index(rng.integers(6, size=300), rng.integers(6, size=300))) < 0.02
    with pytest.raises(ValueError, match="differ in length"):
        adjusted_rand_index([0, 1], [0])


def test_kmeans_recovers_separated_clusters_and_refuses_too_many_segments():
    rng = np.random.default_rng(1)
    centres = np.eye(8, dtype=np.float32)[:4]
    truth = rng.integers(4, size=400)
    vectors = centres[truth] + 0.1 * rng.normal(size=(400, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    centroids, assignment = cluster_users(vectors, 4)
    assert adjusted_rand_index(truth, assignment) > 0.95
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    with pytest.raises(RetrievalError, match="n_segments is 401 but there are only 400 users"):
        cluster_users(vectors, 401)
    with pytest.raises(RetrievalError, match="n_segments must be a positive integer"):
        cluster_users(vectors, 0)


def test_segments_are_named_by_over_represented_categories():
    # segment 0: 60% lamps (overall 35%), segment 1: mostly mugs; "rugs" is 2% of segment 0: too rare to name it
    segment = [0] * 50 + [1] * 50
    category = ["lamps"] * 30 + ["mugs"] * 19 + ["rugs"] * 1 + ["lamps"] * 5 + ["mugs"] * 45
    lift = category_lift(np.array(segment), category, 2)
    assert lift.name(0) == "lamps"
    assert lift.name(1) == "mugs"
    assert lift.lift[0, lift.categories.index("lamps")] == pytest.approx(0.6 / 0.35)


def test_segments_recover_the_planted_tastes(profiled):
    run, result = profiled
    assert result["ari_main_class"] > ARI_FLOOR
    assert json.loads((run / "profiles" / "summary.json").read_text())["ari_main_class"] == result["ari_main_class"]


def test_profile_writes_the_table_the_map_and_the_assignments(profiled):
    run, result = profiled
    table = pl.read_parquet(run / "profiles" / "segments.parquet")
    assert table.columns == [
        "segment", "name", "size", "top_categories", "lift", "share", "example_items", "example_titles"
    ]
    assert table.height == 6 and table["size"].sum() == 300
    assert all(lifts and lifts[0] > 1 for lifts in table["lift"].to_list())
    assert (run / "plots" / "user_map.png").stat().st_size > 10_000
    assert "| segment | name | users |" in (run / "profiles" / "segments.md").read_text()
    users = pl.read_parquet(run / "profiles" / "users.parquet")
    assert users.height == 300 and set(users["segment"].to_list()) == set(range(6))


def test_retriever_profile_says_who_the_user_is(profiled):
    run, _ = profiled
    retriever = Retriever.load(run)
    users = pl.read_parquet(run / "profiles" / "users.parquet")
    user, segment = users.row(0)
    profile = retriever.profile(user, k=5)
    assert profile.segment == segment and profile.segment_name == retriever.segments.names[segment]
    assert len(profile.nearest_items) == 5 and len(profile.history_items) == 5
    assert profile.source == "model"
    shares = dict(profile.nearest_categories)
    assert sum(shares.values()) == pytest.approx(1.0)
    truth = pl.read_parquet(run / "shop" / "truth.parquet").filter(pl.col("user_id") == user)["main_class"][0]
    assert profile.history_categories[0][0] == truth  # the planted taste leads the history
    assert truth in [c for c, _ in profile.nearest_categories[:2]]
    visitor = retriever.profile("new-visitor", k=3, history=profile.history_items)
    assert visitor.source == "features" and visitor.history_items == list(reversed(profile.history_items))[:3]
    with pytest.raises(RetrievalError, match="unknown user id"):
        retriever.profile("nobody")
    with pytest.raises(RetrievalError, match="profile: user 'nobody' is not in this run's data"):
        retriever.profile("nobody", attributes={})


def test_user_export_gets_the_segment_column(profiled):
    run, _ = profiled
    export_run(run, ("users",))
    table = pl.read_parquet(run / "embeddings" / "users.parquet")
    assigned = pl.read_parquet(run / "profiles" / "users.parquet")
    joined = table.join(assigned, left_on="id", right_on="user_id", suffix="_profile")
    assert joined.height == 300 and (joined["segment"] == joined["segment_profile"]).all()
    assert {"p_purchase", "p_view"} <= set(table.columns)


def test_profile_verb_prints_the_table_and_refuses_too_many_segments(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("profiles"))
    assert main(["profile", str(run), "--segments", "3"]) == 0
    out = capsys.readouterr().out
    assert "| segment | name | users |" in out and "adjusted Rand index" in out
    assert main(["profile", str(run), "--segments", "100000"]) == 2
    assert "n_segments is 100000 but there are only 300 users" in capsys.readouterr().err
