"""benchmarks/synthetic_bound.py on an evaluated run of the tiny shop: the bounds are scored on the run's own
test queries, mapped to the generator's items and users, and set beside the systems evaluate wrote."""

import shutil

import pytest

from conftest import benchmark_script

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds


@pytest.fixture(scope="module")
def bench():
    with benchmark_script("synthetic_bound") as module:
        yield module


def test_the_bounds_of_an_evaluated_run_rank_far_above_popularity(bench, trained_run, tmp_path):
    from tandemrec.jobs import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    evaluate_run(run)
    rows = bench.bound_metrics(run)
    assert set(rows) == {*bench.BOUNDS, *bench.SYSTEMS}
    for bound in bench.BOUNDS:  # the planted classes: knowing them, or inferring them, ranks far better
        assert rows[bound]["recall@10"] > 2 * rows["popularity"]["recall@10"]
        assert 0 < rows[bound]["ndcg@10"] <= 1
    text = bench.table([rows, rows], [run, run])
    assert "| posterior | " in text and "| tandemrec | " in text
    assert "of the Bayes-optimal ranking's" in text
