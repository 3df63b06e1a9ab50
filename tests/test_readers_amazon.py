"""The Amazon Reviews 2023 reader: JSON Lines reviews and metadata, local images when present."""

from datetime import datetime, timezone

import pytest

from readers_fixtures import amazon, jsonl
from tandemrec.data import DataError, read_amazon, validate

USER_1, USER_2 = "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ"


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


@pytest.fixture
def dataset(tmp_path):
    return validate(read_amazon(amazon(tmp_path / "amazon")))


def test_reviews_become_rating_events_and_bad_lines_are_counted(dataset):
    valid, report = dataset
    assert valid.collect().interactions.rows() == [
        (USER_1, "P1", _ms(1588687728923), "rating", 5.0),
        (USER_1, "P2", _ms(1588615855070), "rating", 3.0),
        (USER_2, "P3", _ms(1589665266052), "rating", 4.0),
    ]
    assert report.refused["interactions"] == {"unparsable rating": 1, "unknown item": 1}
    assert report.rows_in["interactions"] == 5  # the blank line is not a row
    assert report.balanced()


def test_metadata_becomes_items_with_text_category_and_local_images(dataset):
    valid, report = dataset
    items = valid.items.rows_by_key("item_id", named=True, unique=True)
    assert list(items) == ["P1", "P2", "P3", "P4"]
    soap = items["P1"]
    assert (soap["title"], soap["text"], soap["category"], soap["store"]) == (
        "Soap", "Vegan Lavender A bar of soap.", "All Beauty", "Acme"
    )
    assert soap["image"] == "images/71i77AuI9xL._SL1500_.jpg"  # by the URL's file name
    assert items["P2"]["image"] == "images/P2.jpg" and items["P2"]["category"] == "Combs"
    assert items["P3"]["image"] is None  # listed, not downloaded: repaired and counted
    assert items["P4"]["image"] is None and items["P4"]["text"] is None and items["P4"]["category"] is None
    assert report.refused["items"] == {"duplicate item": 1}
    assert report.repaired["items"] == {"missing image": 1}
    assert report.balanced()


def test_a_folder_of_categories_reads_each_pair(tmp_path):
    folder = amazon(tmp_path / "amazon")
    jsonl(folder / "Books.jsonl", [{"rating": 2, "parent_asin": "B1", "user_id": USER_1, "timestamp": 1600000000000}])
    jsonl(folder / "meta_Books.jsonl", [{"title": "A book", "parent_asin": "B1", "categories": ["Books"]}])
    valid, report = validate(read_amazon(folder))
    assert "B1" in valid.items["item_id"].to_list()
    assert report.sources["interactions"] == "All_Beauty.jsonl, Books.jsonl"
    assert report.rows_out["interactions"] == 4


def test_one_reviews_file_with_its_meta_next_to_it(tmp_path):
    folder = amazon(tmp_path / "amazon")
    valid, _ = validate(read_amazon(folder / "All_Beauty.jsonl"))
    assert valid.items.height == 4


def test_strict_names_file_line_and_field(tmp_path):
    folder = amazon(tmp_path / "amazon")
    with pytest.raises(DataError, match=r"^meta_All_Beauty\.jsonl, line 5, column 'parent_asin': duplicate item \(value 'P1'\)"):
        validate(read_amazon(folder), strict=True)  # items are checked first
    meta = folder / "meta_All_Beauty.jsonl"
    meta.write_text("".join(meta.read_text().splitlines(keepends=True)[:4]))
    with pytest.raises(DataError, match=r"^All_Beauty\.jsonl, line 5, column 'rating': unparsable rating \(value 'five'\)"):
        validate(read_amazon(folder), strict=True)


def test_a_meta_file_without_its_reviews_is_an_error(tmp_path):
    folder = amazon(tmp_path / "amazon")
    (folder / "All_Beauty.jsonl").unlink()
    with pytest.raises(DataError, match=r"All_Beauty\.jsonl: no such file"):
        read_amazon(folder)
