"""The RetailRocket reader: millisecond events mapped to canonical events, items from property logs."""

from datetime import datetime, timezone

import pytest

from readers_fixtures import retailrocket, write
from tandemrec.data import DataError, read_retailrocket, validate


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


@pytest.fixture
def dataset(tmp_path):
    return validate(read_retailrocket(retailrocket(tmp_path / "rr")))


def test_events_are_mapped_and_bad_rows_counted(dataset):
    valid, report = dataset
    assert valid.collect().interactions.rows() == [
        ("257597", "355908", _ms(1433221332117), "view", None),
        ("992329", "248676", _ms(1433224214164), "cart", None),
        ("111016", "355908", _ms(1433221999827), "purchase", None),
    ]
    assert report.refused["interactions"] == {
        "unknown event type (expected view, addtocart, transaction)": 1,
        "unparsable id": 1,
        "timestamp out of range": 1,
        "unknown item": 1,
    }
    assert report.balanced()


def test_items_take_their_latest_category_and_its_ancestors(dataset):
    valid, _ = dataset
    items = valid.items.rows_by_key("item_id", named=True, unique=True)
    assert sorted(items) == ["248676", "355908", "4"]
    assert items["355908"]["category"] == "1338"  # the later categoryid
    assert (items["355908"]["parent_category"], items["355908"]["top_category"]) == ("213", "1673")
    assert (items["248676"]["category"], items["248676"]["top_category"]) == ("209", "209")
    assert items["4"]["category"] is None
    assert items["355908"]["title"] is None and items["355908"]["image"] is None


def test_property_files_are_accounted_as_their_own_table(dataset):
    _, report = dataset
    assert report.rows_in["item_properties"] == 7
    assert report.refused["item_properties"] == {"unparsable timestamp": 1}
    assert report.sources["item_properties"] == "item_properties_part1.csv, item_properties_part2.csv"
    assert report.rows_in["items"] == report.rows_out["items"] == 3


def test_strict_names_the_property_file_and_row(tmp_path):
    folder = retailrocket(tmp_path / "rr")
    with pytest.raises(DataError, match=r"^item_properties_part2\.csv, row 2, column 'timestamp': unparsable timestamp \(value 'bad'\)"):
        validate(read_retailrocket(folder), strict=True)


def test_without_category_tree_categories_have_no_ancestors(tmp_path):
    folder = retailrocket(tmp_path / "rr")
    (folder / "category_tree.csv").unlink()
    valid, _ = validate(read_retailrocket(folder))
    assert valid.items["parent_category"].null_count() == 3


def test_a_single_properties_file_is_read_too(tmp_path):
    folder = retailrocket(tmp_path / "rr")
    for part in folder.glob("item_properties_part*.csv"):
        part.unlink()
    write(folder / "item_properties.csv", "timestamp,itemid,property,value\n1435460400000,355908,categoryid,1016\n")
    _, report = validate(read_retailrocket(folder))
    assert report.rows_out["items"] == 1 and report.refused["interactions"]["unknown item"] == 2
