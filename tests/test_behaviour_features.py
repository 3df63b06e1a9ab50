"""The behaviour outcome model (issue 17): leakage-free features, the bias baseline, calibration error,
the saved model's guards, and its use by `recommend(rerank=...)`. Hand-made frames, and the session's
tiny trained run (copied before it is changed)."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tandemrec import behaviour_job
from tandemrec.data import behaviour_features
from tandemrec.data.behaviour_features import (
    FEATURES, OUTCOME, TIME, FeatureSettings, OutcomeLabel, feature_matrix, history_features, history_tables,
    outcome_history, pair_features, tower_features,
)
from tandemrec.data.encoded import PART
from tandemrec.export_job import export_run
from tandemrec.jobs import train_behaviour
from tandemrec.retrieval import outcome_ranker
from tandemrec.retrieval.embeddings import read_embeddings
from tandemrec.retrieval.calibration import expected_calibration_error, reliability
from tandemrec.retrieval.retriever import Retriever
from tandemrec.run import Run
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.outcome_model import Calibration, OutcomeModel, Scorer
from tandemrec.training.behaviour_config import BehaviourConfig
from tandemrec.errors import ConfigError
from tandemrec.training.outcome_model_fit import bias_baseline, fit_scorer

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

DAY = 86_400 * 1_000_000


def history(rows: list[tuple[int, int, int, float, float | None, int]]) -> pl.DataFrame:
    """(user, item, day, outcome, value, category) rows as the history frame of `history_features`."""
    return pl.DataFrame(
        rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, TIME: pl.Int64, OUTCOME: pl.Float64,
                      "value": pl.Float64, "category": pl.Int64}, orient="row",
    ).with_columns(pl.col(TIME) * DAY)


SETTINGS = FeatureSettings(prior_outcome=0.5, prior_value=3.0, item_shrink=2.0, user_shrink=2.0, recent_days=30.0)
PAST = [(1, 10, 1, 1.0, 5.0, 1), (2, 10, 2, 0.0, 1.0, 1), (1, 11, 3, 0.0, 2.0, 2)]


def features_at(rows, user: int, item: int, day: float) -> dict:
    pairs = pl.DataFrame({"user_id": [user], "item_id": [item], TIME: [int(day * DAY)]})
    return history_features(history_tables(history(rows), SETTINGS), pairs, SETTINGS).row(0, named=True)


def test_features_use_only_events_strictly_before_the_pair():
    before = features_at(PAST, 1, 10, 5)
    # Item 10 had two events before day 5: one outcome, values 5 and 1; shrunk with 2 pseudo-events.
    assert before["item_count"] == pytest.approx(np.log1p(2))
    assert before["item_outcome_rate"] == pytest.approx((1 + 2 * 0.5) / (2 + 2))
    assert before["item_value_mean"] == pytest.approx((6 + 2 * 3.0) / (2 + 2))
    assert before["item_age_days"] == pytest.approx(4.0)
    assert before["user_gap_days"] == pytest.approx(2.0)  # user 1's last event: day 3
    assert before["user_category_share"] == pytest.approx(1 / 3)  # 1 of user 1's 2 events in category 1
    # Planted: events on day 5 itself (ties) and later, by this user and others, with the other label.
    future = PAST + [(1, 10, 5, 0.0, 1.0, 1), (3, 10, 5, 1.0, 5.0, 1), (2, 10, 9, 1.0, 5.0, 1), (1, 12, 8, 1.0, 5.0, 2)]
    assert features_at(future, 1, 10, 5) == before


def test_a_pair_with_no_history_gets_priors_and_missing_recency():
    row = features_at(PAST, 9, 99, 0.5)
    assert row["item_count"] == 0 and row["user_count"] == 0
    assert row["item_outcome_rate"] == pytest.approx(0.5) and row["user_outcome_rate"] == pytest.approx(0.5)
    assert row["item_age_days"] is None and row["user_gap_days"] is None


def test_tower_features_give_the_score_and_the_rank_in_the_catalogue():
    catalogue = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    out = tower_features(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 1]), catalogue)
    assert out["score"] == pytest.approx([0.6, 0.8])
    assert np.exp(out["log_rank"]) == pytest.approx([2.0, 2.0])


def test_bias_baseline_matches_hand_computed_values():
    train = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10], "value": [5.0, 3.0, 1.0]})
    pairs = pl.DataFrame({"user_id": [1, 2, 3], "item_id": [11, 12, 10]})
    scores = bias_baseline(train, pairs, "value", shrink=1.0)
    mean = 3.0
    item10, item11 = (5 + 1 + mean) / 3, (3 + mean) / 2
    user1 = ((5 - item10) + (3 - item11)) / 2
    user2 = 1 - item10
    assert scores == pytest.approx([item11 + user1, mean + user2, item10])


def test_expected_calibration_error_on_a_hand_computed_case():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    # Bin [0.1, 0.2): predicted 0.1, observed 0.5; bin [0.9, 1]: predicted 0.9, observed 1.0; half each.
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert reliability(p, y)["count"] == [2.0, 2.0]
    assert expected_calibration_error(np.array([0.25, 0.25, 0.25, 0.25]), np.array([1, 0, 0, 0])) == pytest.approx(0.0)


def small_model(features: list[str], model_hash: str = "abc") -> OutcomeModel:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(features)))
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(float)
    scorer = fit_scorer("logistic", features, x[:200], y[:200], x[200:], y[200:], 0)
    return OutcomeModel("purchase", {"name": "purchase", "events": ["purchase"], "min_value": None}, features,
                        {"prior_outcome": 0.1, "prior_value": None}, model_hash, scorer, scorer)


def test_outcome_model_round_trips_and_refuses_other_towers_or_features(tmp_path):
    model = small_model(list(FEATURES))
    model.save(tmp_path)
    loaded = OutcomeModel.load(tmp_path, "abc", FEATURES)
    x = np.random.default_rng(1).normal(size=(5, len(FEATURES)))
    assert loaded.probabilities(x)[0] == pytest.approx(model.probabilities(x)[0])
    with pytest.raises(EncoderLoadError, match="other towers"):
        OutcomeModel.load(tmp_path, "def", FEATURES)
    with pytest.raises(EncoderLoadError, match="uses features"):
        OutcomeModel.load(tmp_path, "abc", FEATURES[:-1])
    assert "pickle" not in (tmp_path / "outcome_model.json").read_text()


def test_a_gbdt_scorer_survives_its_json_round_trip():
    pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    x[::7, 1] = np.nan  # missing history is a value the trees keep
    y = (x[:, 0] > 0).astype(float)
    scorer = fit_scorer("gbdt", ["a", "b"], x[:400], y[:400], x[400:], y[400:], 0)
    again = Scorer.from_dict(json.loads(json.dumps(scorer.to_dict())))
    assert again.predict(x) == pytest.approx(scorer.predict(x))
    assert 0.0 <= again.predict(x).min() and again.predict(x).max() <= 1.0


def test_calibration_is_monotone_and_clipped():
    calibration = Calibration([0.0, 1.0, 2.0], [0.1, 0.2, 0.9])
    assert calibration.apply(np.array([-5.0, 0.5, 1.5, 7.0])) == pytest.approx([0.1, 0.15, 0.55, 0.9])


def test_behaviour_config_checks_the_outcome_settings():
    with pytest.raises(ConfigError, match="models"):
        BehaviourConfig(models=["forest"])
    with pytest.raises(ConfigError, match="candidates"):
        BehaviourConfig(candidates=0)


@pytest.fixture(scope="module")
def outcome_run(trained_run, tmp_path_factory):
    """The tiny trained run with its outcome model fitted (the index exists, so `behaviour` fits it)."""
    run = tmp_path_factory.mktemp("outcome") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("shop", "profiles"))
    train_behaviour(run)
    return run


def test_behaviour_fits_a_calibrated_outcome_model_with_its_evaluation(outcome_run):
    folder = outcome_run / "behaviour"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["outcome"] == "purchase"  # the rarer event type of the shop
    chosen = next(v for k, v in evaluation["conditional"].items() if k.startswith("chosen"))
    assert 0.0 <= chosen["ece"] <= 1.0 and chosen["conditional_auc"] is not None
    assert {"bias baseline", "plain"} <= set(evaluation["conditional"]) | set(evaluation["rerank"])
    assert (outcome_run / "plots" / "calibration.png").is_file()
    pairs = pl.read_parquet(folder / "pairs.parquet")
    assert set(FEATURES) <= set(pairs.columns) and set(pairs["part"].unique()) == {"train", "valid", "test"}


def test_recommend_rerank_uses_the_outcome_model(outcome_run):
    retriever = Retriever.load(outcome_run)
    assert retriever.outcome is not None and retriever.outcome.outcome == "purchase"
    user = retriever.vocabs.users.decode([1])[0]
    real = retriever.recommend(user, k=5, rerank="purchase")
    assert np.all((real.scores >= 0) & (real.scores <= 1)) and np.all(np.diff(real.scores) <= 0)
    # Swap the model's probabilities for the negated item row: the rerank must follow them.
    retriever.outcome.model.probabilities = lambda x: (-x[:, FEATURES.index("item_count")], None)
    by_model = retriever.recommend(user, k=5, rerank="purchase")
    counts = retriever.outcome.history.group_by("item_id").len()
    count_of = dict(zip(counts["item_id"].to_list(), counts["len"].to_list()))
    rows = retriever.items.vectors_of(by_model.ids)[0] + 1
    got = [count_of.get(int(r), 0) for r in rows]
    assert got == sorted(got)  # least-touched candidates first: the swapped model decided the order
    batch = retriever.recommend_batch([user], k=5, rerank="purchase")[0]
    assert batch.ids == by_model.ids


def test_served_features_reuse_the_history_tables_and_equal_a_fresh_computation(outcome_run, monkeypatch):
    retriever = Retriever.load(outcome_run)
    ranker, user = retriever.outcome, retriever.vocabs.users.decode([1])[0]
    built = []
    for module in (behaviour_features, outcome_ranker):  # wherever a call would look the builder up
        monkeypatch.setattr(module, "history_tables", lambda *a: built.append(a) or history_tables(*a))
    rows = np.arange(6)
    vectors = np.repeat(retriever.user_vectors([user]), len(rows), axis=0)
    catalogue = retriever.index.vectors(np.arange(len(retriever.index)))
    users = np.full(len(rows), retriever.vocabs.users.lookup([user])[0])
    served = [ranker.probabilities(users, vectors, rows, catalogue) for _ in range(2)]
    assert not built  # the tables were built once, when the ranker was loaded
    pairs = pl.DataFrame({"user_id": users, "item_id": rows + 1, TIME: np.full(len(rows), ranker.now)})
    fresh = pair_features(history_tables(ranker.history, ranker.settings), pairs, ranker.settings, vectors, catalogue)
    expected = ranker.model.probabilities(feature_matrix(fresh, ranker.model.features))
    for got in served:
        np.testing.assert_array_equal(got[0], expected[0])


def test_fitting_builds_the_history_tables_once_and_its_features_and_rerank_equal_fresh_ones(
    outcome_run, tmp_path, monkeypatch
):
    run = Run(shutil.copytree(outcome_run, tmp_path / "run"))
    retriever = Retriever.load(run)
    built = []
    for module in (behaviour_features, behaviour_job):  # wherever a call would look the builder up
        monkeypatch.setattr(module, "history_tables", lambda *a: built.append(a) or history_tables(*a))
    model = behaviour_job.fit_outcome_model(run, retriever, run.config.behaviour)
    assert len(built) == 1  # one pass over the log serves every part's pairs and the rerank evaluation
    # What building the tables again for each use (as before) gives, from the same history and pairs:
    history = outcome_history(run.dataset, retriever.vocabs, OutcomeLabel(**model.label), run.config.data.split)
    settings = FeatureSettings(**model.settings)
    fresh = history_tables(history.drop(PART), settings)
    catalogue = retriever.index.vectors(np.arange(len(retriever.index)))
    pairs = pl.read_parquet(run.folder.behaviour / behaviour_job.PAIRS_FILE)
    again = behaviour_job.with_features(pairs.select("user_id", "item_id", TIME), fresh, settings, retriever, catalogue)
    assert_frame_equal(again.select(FEATURES), pairs.select(FEATURES))
    evaluation = json.loads((run.folder.behaviour / behaviour_job.EVALUATION).read_text())
    assert behaviour_job.rerank_comparison(model, retriever, history, fresh, run.data.test) == evaluation["rerank"]


def test_user_export_takes_p_outcome_from_the_outcome_model(outcome_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(outcome_run, run)
    export_run(run, ("users",), ("parquet",))
    table = pl.read_parquet(run / "embeddings" / "users.parquet")
    meanings = read_embeddings(run / "embeddings", "users", "parquet")[2]["columns"]
    assert "outcome model" in meanings["p_purchase"] and "outcome model" not in meanings["p_view"]
    p = table["p_purchase"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and p.std() > 0
