"""The H&M reader on files with the real quirks: leading zeros, dates, quoted fields, missing images."""

from datetime import datetime, timezone

import polars as pl
import pytest

from readers_fixtures import CUSTOMER_A, CUSTOMER_B, hm
from tandemrec.data import DataError, read_hm, validate
from tandemrec.data.dataset import INTERACTION_COLUMNS


@pytest.fixture
def dataset(tmp_path):
    return validate(read_hm(hm(tmp_path / "hm")))


def test_articles_become_items_with_ten_digit_ids_text_and_images(dataset):
    valid, report = dataset
    items = valid.items.rows_by_key("item_id", named=True, unique=True)
    assert list(items) == ["0108775015", "0108775044", "0110065001"]
    top = items["0108775015"]
    assert top["title"] == "Strap top"
    assert top["text"] == 'Vest top, Black, Solid. Jersey top, with "thin" straps.'
    assert top["category"] == "Vest top" and top["colour"] == "Black" and top["index"] == "Ladieswear"
    assert top["image"] == "images/010/0108775015.jpg"
    assert items["0108775044"]["text"] == "Vest top, White, Solid"  # no description
    assert items["0108775044"]["image"] is None  # file absent: repaired, counted
    assert items["0110065001"]["image"] is None  # file corrupt: repaired, counted
    assert items["0110065001"]["garment_group"] == "Under-, Nightwear"
    assert report.repaired["items"] == {"missing image": 1, "unreadable image": 1}
    assert report.images == {"with image": 1, "without image": 2}


def test_customers_become_users_with_age_bands(dataset):
    valid, _ = dataset
    users = valid.users.rows_by_key("user_id", named=True, unique=True)
    assert users[CUSTOMER_A]["age_band"] == "45-49" and users[CUSTOMER_A]["fn"] is None
    assert users[CUSTOMER_B]["age_band"] == "25-34" and users[CUSTOMER_B]["fashion_news_frequency"] == "Regularly"
    assert "postal_code" not in valid.users.columns


def test_transactions_become_purchases_and_bad_rows_are_counted(dataset):
    valid, report = dataset
    interactions = valid.collect().interactions
    assert interactions.schema == pl.Schema(INTERACTION_COLUMNS)
    assert interactions.rows() == [
        (CUSTOMER_A, "0108775015", datetime(2018, 9, 20, tzinfo=timezone.utc), "purchase", None),
        (CUSTOMER_A, "0110065001", datetime(2018, 9, 20, tzinfo=timezone.utc), "purchase", None),
        (CUSTOMER_B, "0108775044", datetime(2018, 9, 21, tzinfo=timezone.utc), "purchase", None),
    ]
    assert report.refused["interactions"] == {
        "unparsable id": 1,
        "unparsable timestamp": 1,
        "null id": 1,
        "unknown item": 1,
    }
    assert report.rows_in == {"items": 3, "users": 2, "interactions": 7}
    assert report.balanced()
    assert report.sources["interactions"] == "transactions_train.csv"


def test_strict_names_the_file_row_and_source_column(tmp_path):
    with pytest.raises(DataError, match=r"^transactions_train\.csv, row 4, column 't_dat': unparsable timestamp \(value '2018-13-45'\)"):
        validate(read_hm(hm(tmp_path / "hm")), strict=True)


def test_customers_file_is_optional(tmp_path):
    folder = hm(tmp_path / "hm")
    (folder / "customers.csv").unlink()
    valid, report = validate(read_hm(folder))
    assert valid.users is None and "users" not in report.rows_in
