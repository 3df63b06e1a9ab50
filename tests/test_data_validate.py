from datetime import datetime, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tandemrec.data import INTERACTION_COLUMNS, DataError, Dataset, validate


def _ts(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=timezone.utc)


def _interactions(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame([(*row, "view", None) for row in rows], schema=INTERACTION_COLUMNS, orient="row")


def _items(ids: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"item_id": ids, "title": ["t"] * len(ids), "text": ["x"] * len(ids)})


def _messy() -> Dataset:
    interactions = _interactions(
        [
            ("u1", "a", _ts(1)),  # kept
            (None, "a", _ts(2)),  # null id
            ("u1", None, _ts(3)),  # null id
            ("u2", "b", None),  # null timestamp
            ("u2", "zzz", _ts(4)),  # unknown item
            ("u3", "b", _ts(5)),  # kept: b's first row survives the duplicate
            ("u2", None, None),  # null id (first reason wins)
        ]
    )
    items = _items(["a", "b", "b", None, "c"]).with_columns(title=pl.Series(["A", "B1", "B2", "N", "C"]))
    users = pl.DataFrame({"user_id": ["u1", "u1", None, "u9"], "region": ["n", "s", "e", "w"]})
    return Dataset(interactions, items, users, name="messy")


def test_each_refusal_is_counted_by_reason():
    valid, report = validate(_messy())
    assert report.refused == {
        "items": {"null id": 1, "duplicate item": 1},
        "users": {"null id": 1, "duplicate user": 1},
        "interactions": {"null id": 3, "null timestamp": 1, "unknown item": 1},
    }
    assert valid.items["title"].to_list() == ["A", "B1", "C"]
    assert valid.users.rows() == [("u1", "n"), ("u9", "w")]
    assert valid.interactions.select("user_id", "item_id").rows() == [("u1", "a"), ("u3", "b")]
    assert valid.name == "messy"


def test_rows_in_equal_rows_out_plus_refused_for_every_table():
    _, report = validate(_messy())
    assert set(report.rows_in) == {"interactions", "items", "users"}
    for table, rows_in in report.rows_in.items():
        assert rows_in == report.rows_out[table] + report.total_refused(table)
    assert report.rows_in == {"interactions": 7, "items": 5, "users": 4}
    assert report.to_dict()["rows_out"] == {"interactions": 2, "items": 3, "users": 2}


def test_summary_names_tables_and_reasons():
    _, report = validate(_messy())
    summary = report.summary()
    assert "interactions: 7 rows in, 2 kept, 5 refused (null id: 3, null timestamp: 1, unknown item: 1)" in (
        summary
    )
    assert "users: 4 rows in, 2 kept, 2 refused" in summary


def test_clean_dataset_passes_unchanged():
    dataset = Dataset(_interactions([("u1", "a", _ts(1)), ("u2", "b", _ts(2))]), _items(["a", "b"]))
    valid, report = validate(dataset, strict=True)
    assert_frame_equal(valid.interactions, dataset.interactions)
    assert report.refused == {"items": {}, "interactions": {}}
    assert valid.users is None
    assert report.summary().splitlines() == ["items: 2 rows in, 2 kept", "interactions: 2 rows in, 2 kept"]


def test_strict_names_table_row_and_column_of_first_refusal():
    rows = [("u1", "a", _ts(1)), ("u1", "a", _ts(2)), ("u1", "nope", _ts(3)), (None, "a", _ts(4))]
    dataset = Dataset(_interactions(rows), _items(["a"]))
    with pytest.raises(DataError, match=r"^interactions, row 2, column 'item_id': unknown item \(value 'nope'\)"):
        validate(dataset, strict=True)
    with pytest.raises(DataError, match=r"^items, row 1, column 'item_id': duplicate item"):
        validate(Dataset(dataset.interactions, _items(["a", "a"])), strict=True)


def test_missing_column_names_table_column_and_expectation():
    dataset = Dataset(_interactions([("u1", "a", _ts(1))]).drop("timestamp"), _items(["a"]))
    with pytest.raises(DataError) as error:
        validate(dataset)
    assert str(error.value) == (
        "interactions: missing column 'timestamp' (expected columns: user_id, item_id, timestamp, event, value)"
    )
    with pytest.raises(DataError, match="items: missing column 'title'"):
        validate(Dataset(_interactions([("u1", "a", _ts(1))]), _items(["a"]).drop("title")))


def test_safe_types_are_cast_and_unsafe_ones_refused():
    interactions = pl.DataFrame(
        {"user_id": [1], "item_id": [7], "timestamp": [_ts(1)], "event": ["view"], "value": [3]}
    )
    colour = pl.Series(["red"], dtype=pl.Categorical)
    items = pl.DataFrame({"item_id": [7], "title": ["t"], "text": ["x"], "colour": colour})
    valid, _ = validate(Dataset(interactions, items))
    assert valid.interactions["item_id"].to_list() == ["7"]
    assert valid.interactions["value"].dtype == pl.Float64
    assert valid.items["colour"].dtype == pl.String
    with pytest.raises(DataError, match=r"interactions, column 'timestamp': has type Int\d+, expected Datetime"):
        validate(Dataset(interactions.with_columns(timestamp=pl.lit(1_700_000_000)), items))


@pytest.mark.parametrize("table", ["interactions", "items"])
def test_empty_tables_are_errors(table):
    dataset = Dataset(_interactions([("u1", "a", _ts(1))]), _items(["a"]))
    setattr(dataset, table, getattr(dataset, table).clear())
    with pytest.raises(DataError, match=f"{table}: the table is empty"):
        validate(dataset)


def test_nothing_left_after_refusals_is_an_error():
    dataset = Dataset(_interactions([("u1", "x", _ts(1))]), _items(["a"]))
    with pytest.raises(DataError, match="interactions: no rows left") as error:
        validate(dataset)
    assert "unknown item: 1" in str(error.value)
