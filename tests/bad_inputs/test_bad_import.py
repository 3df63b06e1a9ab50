"""The bad-input corpus of `tandemrec data import`, every format: each case ends in one exact outcome.

Either the row is refused and counted under its reason (and rows in = kept + refused, and the rows
written agree with the rows kept), or the import fails with a DataError whose message names the
culprit: the file, the line or row, the column or the mapping key. Fixtures are a few lines each.
"""

from __future__ import annotations

import errno
import json
import math
import re
from pathlib import Path

import polars as pl
import pytest

from readers_fixtures import CUSTOMER_A, amazon, hm, jsonl, retailrocket, write
from tandemrec.data import DataError, Dataset, validate
from tandemrec.data.importer import import_dataset
from tandemrec.data.readers import read
from tandemrec.data.readers.movielens import GENRES_100K
from tandemrec.data.report import ValidationReport

T = 1700000000  # a valid timestamp in seconds
ML_T = 881250949
ITEM_FLAGS = "|".join("0" for _ in GENRES_100K)


# --- fixtures: the smallest folders each format accepts --------------------------------------------


def ml_100k(folder: Path, ratings: str = "") -> Path:
    """Two movies, two good ratings, and `ratings` (lines) appended to u.data."""
    write(folder / "u.item", f"1|Toy Story (1995)|01-Jan-1995||http://x|{ITEM_FLAGS}\n2|Heat (1995)|||http://y|{ITEM_FLAGS}\n")
    write(folder / "u.data", f"196\t1\t3\t{ML_T}\n186\t2\t5\t{ML_T}\n{ratings}")
    return folder


def ml_latest(folder: Path, ratings: str = "") -> Path:
    write(folder / "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Heat (1995),Action\n")
    write(folder / "ratings.csv", f"userId,movieId,rating,timestamp\n1,1,3.5,{ML_T}\n2,2,0.5,{ML_T}\n{ratings}")
    return folder


def ml_dat(folder: Path, ratings: str = "") -> Path:
    write(folder / "movies.dat", "1::Toy Story (1995)::Animation\n2::Heat (1995)::Action\n")
    write(folder / "ratings.dat", f"1::1::4::{ML_T}\n2::2::5::{ML_T}\n{ratings}")
    return folder


def review(rating: object, item: str = "P1", **fields: object) -> dict:
    return {"rating": rating, "parent_asin": item, "user_id": "U9", "timestamp": 1588687728923, **fields}


def amazon_with(folder: Path, *records: dict | str) -> Path:
    """The Amazon fixture with `records` appended to its reviews."""
    amazon(folder)
    with open(folder / "All_Beauty.jsonl", "a") as handle:
        handle.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    return folder


def hm_with(folder: Path, *rows: str) -> Path:
    """The H&M fixture with transaction `rows` appended."""
    hm(folder)
    with open(folder / "transactions_train.csv", "a") as handle:
        handle.writelines(f"{row}\n" for row in rows)
    return folder


def hm_row(price: str = "0.05", channel: str = "2", day: str = "2018-09-20", article: str = "0108775015") -> str:
    return f"{day},{CUSTOMER_A},{article},{price},{channel}"


def rr_with(folder: Path, *rows: str, file: str = "events.csv") -> Path:
    """The RetailRocket fixture with `rows` appended to `file`."""
    retailrocket(folder)
    with open(folder / file, "a") as handle:
        handle.writelines(f"{row}\n" for row in rows)
    return folder


INTERACTIONS = {"file": "e.csv", "user_id": "u", "item_id": "i", "timestamp": "t"}


def generic(folder: Path, events: str, **keys: object) -> tuple[Path, dict]:
    """A CSV of interactions (header u,i,t,...) and its mapping, with extra mapping `keys`."""
    write(folder / "e.csv", events)
    return folder, {"interactions": {**INTERACTIONS, **keys}}


def generic_files(folder: Path, fmt: str, records: list[dict], **keys: object) -> tuple[Path, dict]:
    """The interactions `records` as one csv, jsonl or parquet file, and the mapping that reads it."""
    name = f"e.{fmt}"
    if fmt == "jsonl":
        jsonl(folder / name, records)
    else:
        frame = pl.DataFrame(records)
        folder.mkdir(parents=True, exist_ok=True)
        frame.write_csv(folder / name) if fmt == "csv" else frame.write_parquet(folder / name)
    return folder, {"interactions": {**INTERACTIONS, "file": name, **keys}}


# --- helpers ---------------------------------------------------------------------------------------


def imported(tmp_path: Path, format: str, src: Path, **options: object) -> ValidationReport:
    """Import into tmp_path/ds and check both counts: rows in = kept + refused, written = kept."""
    dest, report = import_dataset(format, src, tmp_path / "ds", **options)
    assert report.balanced(), report.to_dict()
    manifest = json.loads((dest / "manifest.json").read_text())
    for table, entry in manifest["tables"].items():
        assert entry["rows"] == report.rows_out[table] == pl.scan_parquet(dest / f"{table}.parquet").select(pl.len()).collect().item()
    return report


def assert_refused(report: ValidationReport, reason: str, count: int = 1, table: str = "interactions") -> None:
    assert report.refused[table].get(reason) == count, report.refused[table]
    assert report.rows_in[table] == report.rows_out[table] + report.total_refused(table)


def fails(tmp_path: Path, format: str, src: Path, message: str, **options: object) -> None:
    """The import is a DataError matching `message`, and nothing is written."""
    with pytest.raises(DataError, match=message):
        import_dataset(format, src, tmp_path / "ds", **options)
    assert not (tmp_path / "ds").exists()


# --- 1. values out of range or NaN, per format --------------------------------------------------


@pytest.mark.parametrize(
    ("make", "line", "reason"),
    [
        (ml_100k, f"1\t1\t7\t{ML_T}\n", "rating out of range 1..5"),
        (ml_100k, f"1\t1\t-3\t{ML_T}\n", "rating out of range 1..5"),
        (ml_100k, f"1\t1\t0.5\t{ML_T}\n", "rating out of range 1..5"),  # 100K has whole stars only
        (ml_100k, f"1\t1\tnan\t{ML_T}\n", "rating is NaN"),
        (ml_100k, f"1\t1\tinf\t{ML_T}\n", "rating is infinite"),
        (ml_latest, f"1,1,0,{ML_T}\n", "rating out of range 0.5..5"),
        (ml_latest, f"1,1,5.5,{ML_T}\n", "rating out of range 0.5..5"),
        (ml_latest, f"1,1,NaN,{ML_T}\n", "rating is NaN"),
        (ml_dat, f"1::1::6::{ML_T}\n", "rating out of range 0.5..5"),
        (ml_dat, f"1::1::nan::{ML_T}\n", "rating is NaN"),
    ],
    ids=["100k-7", "100k-negative", "100k-half-star", "100k-nan", "100k-inf", "latest-0", "latest-5.5", "latest-nan",
         "dat-6", "dat-nan"],
)
def test_movielens_rating_off_the_scale_is_refused(tmp_path, make, line, reason):
    report = imported(tmp_path, "movielens", make(tmp_path / "ml", line))
    assert_refused(report, reason)
    assert report.rows_out["interactions"] == 2


def test_movielens_strict_names_the_line_and_column_of_a_bad_rating(tmp_path):
    fails(tmp_path, "movielens", ml_100k(tmp_path / "ml", f"1\t1\t7\t{ML_T}\n"),
          r"^u\.data, line 3, column 'rating': rating out of range 1\.\.5 \(value '7'\)$", strict=True)


@pytest.mark.parametrize(
    ("rating", "reason"),
    [(11, "rating out of range 1..5"), (-2, "rating out of range 1..5"), (0, "rating out of range 1..5"),
     ("NaN", "rating is NaN"), ("Infinity", "rating is infinite")],
)
def test_amazon_rating_off_the_scale_is_refused(tmp_path, rating, reason):
    report = imported(tmp_path, "amazon", amazon_with(tmp_path / "az", review(rating)))
    assert_refused(report, reason)


def test_amazon_strict_names_the_line_of_a_bad_rating(tmp_path):
    jsonl(tmp_path / "az" / "meta_All_Beauty.jsonl", [{"parent_asin": "P1", "title": "Soap"}])
    jsonl(tmp_path / "az" / "All_Beauty.jsonl", [review(4.0), review(11)])
    fails(tmp_path, "amazon", tmp_path / "az",
          r"^All_Beauty\.jsonl, line 2, column 'rating': rating out of range 1\.\.5 \(value '11'\)$", strict=True)


def test_amazon_bare_nan_is_not_json(tmp_path):
    fails(tmp_path, "amazon", amazon_with(tmp_path / "az", '{"rating": NaN, "parent_asin": "P1", "user_id": "U9", "timestamp": 1}'),
          r"All_Beauty\.jsonl, line 7: invalid JSON \(NaN is not a JSON value")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (hm_row(price="-0.01"), "price below 0"),
        (hm_row(price="nan"), "price is NaN"),
        (hm_row(price="inf"), "price is infinite"),
        (hm_row(price="cheap"), "unparsable price"),
        (hm_row(channel="3"), "unknown sales channel (expected 1, 2)"),
        (hm_row(channel="online"), "unknown sales channel (expected 1, 2)"),
    ],
)
def test_hm_price_and_sales_channel_are_checked(tmp_path, row, reason):
    report = imported(tmp_path, "hm", hm_with(tmp_path / "hm", row))
    assert_refused(report, reason)


def test_hm_strict_names_the_price_column(tmp_path):
    src = hm(tmp_path / "hm")
    write(src / "transactions_train.csv", f"t_dat,customer_id,article_id,price,sales_channel_id\n{hm_row()}\n{hm_row(price='-1')}\n")
    fails(tmp_path, "hm", src, r"^transactions_train\.csv, row 2, column 'price': price below 0 \(value '-1'\)$", strict=True)


def test_hm_free_item_and_missing_price_are_kept(tmp_path):
    report = imported(tmp_path, "hm", hm_with(tmp_path / "hm", hm_row(price="0"), hm_row(price="")))
    assert report.rows_out["interactions"] == 5 and report.balanced()


@pytest.mark.parametrize(
    ("event", "reason", "count"),
    [("VIEW", "unknown event type (expected view, addtocart, transaction)", 2),  # the fixture has a "click"
     ("add to cart", "unknown event type (expected view, addtocart, transaction)", 2),
     ("", "null event", 1)],
    ids=["upper-case", "spelt-out", "empty"],
)
def test_retailrocket_event_type_is_checked(tmp_path, event, reason, count):
    report = imported(tmp_path, "retailrocket", rr_with(tmp_path / "rr", f"1433221332117,257597,{event},355908,"))
    assert_refused(report, reason, count)


@pytest.mark.parametrize(
    ("fmt", "value", "keys", "reason"),
    [
        ("csv", 7, {"value_range": [1, 5]}, "value out of range 1..5"),
        ("csv", -1, {"value_range": [0, math.inf]}, "value out of range 0..inf"),
        ("csv", "nan", {}, "value is NaN"),
        ("csv", "-inf", {"value_range": [-math.inf, 5]}, "value is infinite"),
        ("jsonl", "nan", {}, "value is NaN"),
        ("jsonl", 9, {"value_range": [1, 5]}, "value out of range 1..5"),
        ("parquet", math.nan, {}, "value is NaN"),
        ("parquet", 0.5, {"value_range": [1, 5]}, "value out of range 1..5"),
    ],
)
def test_generic_value_range_and_nan(tmp_path, fmt, value, keys, reason):
    good = 3.0 if fmt == "parquet" else "3"
    records = [{"u": "a", "i": "x", "t": T, "v": good}, {"u": "b", "i": "x", "t": T, "v": value}]
    if fmt == "parquet":
        records = [{**r, "v": float(r["v"])} for r in records]
    else:
        records = [{**r, "v": str(r["v"])} for r in records]
    src, mapping = generic_files(tmp_path / "g", fmt, records, value="v", **keys)
    report = imported(tmp_path, "generic", src, mapping=mapping)
    assert_refused(report, reason)
    assert report.rows_out["interactions"] == 1


@pytest.mark.parametrize(
    ("value_range", "message"),
    [([5, 1], r"value_range must be \[lowest, highest\] with lowest <= highest, got \[5, 1\]"),
     ([1], r"value_range must be \[lowest, highest\]"),
     (["1", "5"], r"value_range must be \[lowest, highest\]"),
     ([True, 5], r"value_range must be \[lowest, highest\]")],
)
def test_generic_bad_value_range(tmp_path, value_range, message):
    src, mapping = generic(tmp_path / "g", f"u,i,t,v\na,x,{T},1\n", value="v", value_range=value_range)
    fails(tmp_path, "generic", src, rf"\[interactions\] {message}", mapping=mapping)


def test_generic_value_range_without_a_value_column(tmp_path):
    src, mapping = generic(tmp_path / "g", f"u,i,t\na,x,{T}\n", value_range=[1, 5])
    fails(tmp_path, "generic", src, r"value_range needs a value column", mapping=mapping)


# --- 2. a mapping key naming a column the file lacks -------------------------------------------


def _csv_tables(folder: Path) -> None:
    write(folder / "e.csv", f"u,i,t,kind,qty\na,x,{T},view,1\n")
    write(folder / "items.csv", "sku,name,desc,cat,pic,brand\nx,X,an x,c,,acme\n")
    write(folder / "users.csv", "id,region\na,north\n")


FULL_MAPPING = {
    "interactions": {**INTERACTIONS, "event": "kind", "value": "qty"},
    "items": {"file": "items.csv", "item_id": "sku", "title": "name", "text": ["desc"], "category": "cat", "image": "pic",
              "features": ["brand"]},
    "users": {"file": "users.csv", "user_id": "id", "features": ["region"]},
}
FILES = {"interactions": "e.csv", "items": "items.csv", "users": "users.csv"}


@pytest.mark.parametrize(
    ("table", "key"),
    [(table, key) for table, keys in FULL_MAPPING.items() for key in keys if key != "file"],
)
def test_generic_csv_mapping_key_without_its_column(tmp_path, table, key):
    _csv_tables(tmp_path / "g")
    mapping = json.loads(json.dumps(FULL_MAPPING))
    mapping[table][key] = ["nmae"] if isinstance(mapping[table][key], list) else "nmae"
    fails(tmp_path, "generic", tmp_path / "g",
          rf"{re.escape(FILES[table])}: \[{table}\] {key} = 'nmae' names a column the file does not have; its columns are \[",
          mapping=mapping)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("key", ["user_id", "item_id", "timestamp", "event", "value"])
def test_generic_jsonl_and_parquet_mapping_key_without_its_column(tmp_path, fmt, key):
    records = [{"u": "a", "i": "x", "t": T, "kind": "view", "qty": 1.0}]
    src, mapping = generic_files(tmp_path / "g", fmt, records, event="kind", value="qty")
    mapping["interactions"][key] = "typ"
    fails(tmp_path, "generic", src,
          rf"e\.{fmt}: \[interactions\] {key} = 'typ' names a column .*its columns are \['u', 'i', 't', 'kind', 'qty'\]",
          mapping=mapping)


def test_generic_missing_column_in_one_of_several_files(tmp_path):
    write(tmp_path / "g" / "ev" / "a.csv", f"u,i,t,kind\na,x,{T},view\n")
    write(tmp_path / "g" / "ev" / "b.csv", f"u,i,t\nb,x,{T}\n")
    mapping = {"interactions": {**INTERACTIONS, "file": "ev", "event": "kind"}}
    fails(tmp_path, "generic", tmp_path / "g", r"b\.csv: \[interactions\] event = 'kind' names a column", mapping=mapping)


def test_canonical_folder_uses_only_the_optional_columns_it_has(tmp_path):
    write(tmp_path / "c" / "interactions.csv", f"user_id,item_id,timestamp\na,x,{T}\n")
    write(tmp_path / "c" / "items.csv", "item_id,title\nx,X\n")
    report = imported(tmp_path, "generic", tmp_path / "c")
    assert report.rows_out == {"items": 1, "interactions": 1}


# --- 3. empty, header-only and truncated files ------------------------------------------------


@pytest.mark.parametrize(
    ("format", "make", "file", "text", "message"),
    [
        ("movielens", ml_100k, "u.data", "", r"u\.data: empty file, expected MovieLens ratings"),
        ("movielens", ml_latest, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,3.5",
         r"ratings\.csv, line 2: 3 fields, expected 4: the file ends mid-line"),
        ("movielens", ml_dat, "ratings.dat", f"1::1::4::{ML_T}\n2::2",
         r"ratings\.dat, line 2: 2 fields, expected 4: the file ends mid-line"),
        ("movielens", ml_latest, "ratings.csv", "\n\n", r"ratings\.csv, line 1: header ''"),
        ("amazon", amazon, "All_Beauty.jsonl", "", r"All_Beauty\.jsonl: empty file, expected Amazon reviews"),
        ("amazon", amazon, "All_Beauty.jsonl", "\n\n", r"All_Beauty\.jsonl: the interactions table is empty"),
        ("amazon", amazon, "meta_All_Beauty.jsonl", '{"parent_asin": "P1", "title": "So',
         r"meta_All_Beauty\.jsonl, line 1: the file ends in the middle of a record"),
        ("hm", hm, "customers.csv", "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n",
         r"customers\.csv: has a header but no data rows, expected H&M customers"),
        ("retailrocket", retailrocket, "events.csv", "timestamp,visitorid,event,itemid,transactionid\n",
         r"events\.csv: has a header but no data rows, expected RetailRocket events"),
        ("retailrocket", retailrocket, "item_properties_part2.csv", "timestamp,itemid,property,value\n1439089200000,4",
         r"item_properties_part2\.csv, line 2: 2 fields, expected 4: the file ends in the middle of a row"),
    ],
    ids=["ml-empty", "ml-latest-truncated", "ml-dat-truncated", "ml-latest-blank", "amazon-empty", "amazon-blank",
         "amazon-meta-truncated", "hm-customers-header-only", "rr-events-header-only", "rr-properties-truncated"],
)
def test_empty_header_only_and_truncated_files(tmp_path, format, make, file, text, message):
    src = make(tmp_path / "src")
    write(src / file, text)
    fails(tmp_path, format, src, message)


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("csv", "", r"e\.csv: empty file"),
        ("csv", "u,i,t\n", r"e\.csv: has a header but no data rows"),
        ("csv", f"u,i,t\na,x,{T}\nb,y", r"e\.csv, line 3: 2 fields, expected 3: the file ends in the middle of a row"),
        ("jsonl", "", r"e\.jsonl: empty file"),
        ("jsonl", f'{{"u": "a", "i": "x", "t": {T}}}\n{{"u": "b", "i"', r"e\.jsonl, line 2: the file ends in the middle of a record"),
    ],
)
def test_generic_empty_header_only_and_truncated(tmp_path, fmt, text, message):
    write(tmp_path / "g" / f"e.{fmt}", text)
    fails(tmp_path, "generic", tmp_path / "g", message, mapping={"interactions": {**INTERACTIONS, "file": f"e.{fmt}"}})


def test_generic_parquet_without_rows(tmp_path):
    (tmp_path / "g").mkdir()
    pl.DataFrame(schema={"u": pl.String, "i": pl.String, "t": pl.Int64}).write_parquet(tmp_path / "g" / "e.parquet")
    fails(tmp_path, "generic", tmp_path / "g", r"e\.parquet: no item ids in the interactions",
          mapping={"interactions": {**INTERACTIONS, "file": "e.parquet"}})


# --- 4. wrong types, duplicate ids, unknown items, null ids ------------------------------------


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("t", [True], r"column 't': Boolean values, expected timestamps"),
        ("i", [True], r"column 'i': Boolean values, expected integer or text ids"),
        ("u", [[1, 2]], r"column 'u': List\(Int64\) values, expected integer or text ids"),
    ],
)
def test_generic_parquet_column_of_the_wrong_type(tmp_path, column, values, message):
    src, mapping = generic_files(tmp_path / "g", "parquet", [{"u": "a", "i": "x", "t": T, column: values[0]}])
    fails(tmp_path, "generic", src, rf"e\.parquet, {message}", mapping=mapping)


def test_generic_text_value_in_a_parquet_value_column_is_counted(tmp_path):
    records = [{"u": "a", "i": "x", "t": T, "v": "2"}, {"u": "b", "i": "x", "t": T, "v": "lots"}]
    src, mapping = generic_files(tmp_path / "g", "parquet", records, value="v")
    assert_refused(imported(tmp_path, "generic", src, mapping=mapping), "unparsable value")


def test_generic_jsonl_value_that_is_a_list(tmp_path):
    jsonl(tmp_path / "g" / "e.jsonl", [{"u": "a", "i": "x", "t": T, "v": 1}, {"u": "b", "i": "x", "t": T, "v": [1, 2]}])
    fails(tmp_path, "generic", tmp_path / "g", r"e\.jsonl, line 2: field 'v': expected a single value",
          mapping={"interactions": {**INTERACTIONS, "file": "e.jsonl", "value": "v"}})


@pytest.mark.parametrize(
    ("table", "reason"), [("items", "duplicate item"), ("users", "duplicate user")]
)
def test_generic_duplicate_ids(tmp_path, table, reason):
    _csv_tables(tmp_path / "g")
    with open(tmp_path / "g" / FILES[table], "a") as handle:
        handle.write("x,Y,again,c,,acme\n" if table == "items" else "a,south\n")
    assert_refused(imported(tmp_path, "generic", tmp_path / "g", mapping=FULL_MAPPING), reason, table=table)


def test_hm_duplicate_article(tmp_path):
    src = hm(tmp_path / "hm")
    lines = (src / "articles.csv").read_text().splitlines(keepends=True)
    (src / "articles.csv").write_text("".join([*lines, lines[2]]))
    assert_refused(imported(tmp_path, "hm", src), "duplicate item", table="items")


def test_movielens_unknown_item(tmp_path):
    assert_refused(imported(tmp_path, "movielens", ml_100k(tmp_path / "ml", f"1\t99\t3\t{ML_T}\n")), "unknown item")


def test_generic_unknown_item(tmp_path):
    _csv_tables(tmp_path / "g")
    with open(tmp_path / "g" / "e.csv", "a") as handle:
        handle.write(f"b,nope,{T},view,1\n")
    assert_refused(imported(tmp_path, "generic", tmp_path / "g", mapping=FULL_MAPPING), "unknown item")


@pytest.mark.parametrize(
    ("fmt", "record"),
    [("csv", {"u": "", "i": "x", "t": str(T)}), ("jsonl", {"u": "b", "i": None, "t": T}), ("parquet", {"u": None, "i": "x", "t": T})],
)
def test_generic_null_ids(tmp_path, fmt, record):
    src, mapping = generic_files(tmp_path / "g", fmt, [{"u": "a", "i": "x", "t": T if fmt != "csv" else str(T)}, record])
    assert_refused(imported(tmp_path, "generic", src, mapping=mapping), "null id")


def test_retailrocket_null_visitor(tmp_path):
    assert_refused(imported(tmp_path, "retailrocket", rr_with(tmp_path / "rr", "1433221332117,,view,355908,")), "null id")


# --- 5. timestamps out of range or unparsable ---------------------------------------------------


@pytest.mark.parametrize(
    ("format", "src", "reason", "count"),
    [
        ("movielens", lambda p: ml_100k(p, "1\t1\t3\t0\n"), "timestamp out of range", 1),  # 1970
        ("movielens", lambda p: ml_latest(p, "1,1,3,yesterday\n"), "unparsable timestamp", 1),
        ("amazon", lambda p: amazon_with(p, review(5.0, timestamp=1588687728)), "timestamp out of range", 1),  # seconds, not ms
        ("amazon", lambda p: amazon_with(p, review(5.0, timestamp="2020-05-05")), "unparsable timestamp", 1),
        ("hm", lambda p: hm_with(p, hm_row(day="1975-01-01")), "timestamp out of range", 1),
        ("hm", lambda p: hm_with(p, hm_row(day="20/09/2018")), "unparsable timestamp", 2),  # the fixture has one
        ("retailrocket", lambda p: rr_with(p, "later,257597,view,355908,"), "unparsable timestamp", 1),
        ("retailrocket", lambda p: rr_with(p, "1433221332,257597,view,355908,"), "timestamp out of range", 2),  # s, not ms
    ],
)
def test_bad_timestamps_are_counted(tmp_path, format, src, reason, count):
    assert_refused(imported(tmp_path, format, src(tmp_path / "src")), reason, count)


@pytest.mark.parametrize(
    ("fmt", "t", "keys", "reason"),
    [
        ("jsonl", "2023-02-30", {}, "unparsable timestamp"),
        ("csv", "14/11/2023", {"timestamp_format": "%Y-%m-%d"}, "unparsable timestamp"),
        ("csv", "2150-01-01", {}, "timestamp out of range"),
        ("parquet", -10, {"timestamp_unit": "s"}, "timestamp out of range"),
    ],
)
def test_generic_bad_timestamps_are_counted(tmp_path, fmt, t, keys, reason):
    good = "2023-11-14" if isinstance(t, str) else T
    src, mapping = generic_files(tmp_path / "g", fmt, [{"u": "a", "i": "x", "t": good}, {"u": "b", "i": "x", "t": t}], **keys)
    assert_refused(imported(tmp_path, "generic", src, mapping=mapping), reason)


# --- 6. wrong separator, wrong encoding, extra and missing fields ------------------------------


def test_generic_wrong_separator_names_the_key_and_hints(tmp_path):
    src, mapping = generic(tmp_path / "g", f"u;i;t\na;x;{T}\n")
    fails(tmp_path, "generic", src, r"e\.csv: \[interactions\] user_id = 'u' .*\['u;i;t'\] \(the header is one field: is the separator ';'\?\)",
          mapping=mapping)


def test_hm_wrong_separator(tmp_path):
    src = hm(tmp_path / "hm")
    write(src / "transactions_train.csv", f"t_dat;customer_id;article_id;price;sales_channel_id\n{hm_row().replace(',', ';')}\n")
    fails(tmp_path, "hm", src, r"transactions_train\.csv, line 1: header has columns .* is the separator ';'\?")


def test_movielens_wrong_separator(tmp_path):
    src = ml_latest(tmp_path / "ml")
    write(src / "ratings.csv", f"userId;movieId;rating;timestamp\n1;1;3;{ML_T}\n")
    fails(tmp_path, "movielens", src, r"ratings\.csv, line 1: header 'userId;movieId;rating;timestamp', expected 'userId,movieId,rating,timestamp'")


@pytest.mark.parametrize(
    ("format", "make", "file", "line", "message"),
    [
        ("retailrocket", retailrocket, "events.csv", b"1433221332117,25\xe9597,view,355908,\n", r"events\.csv, line 9: byte 0xe9 at column 17 is not valid utf-8"),
        ("hm", hm, "customers.csv", b"caf\xe9,,,ACTIVE,NONE,30,x\n", r"customers\.csv, line 4: byte 0xe9 at column 4 is not valid utf-8"),
        ("amazon", amazon, "All_Beauty.jsonl", b'{"rating": 5.0, "parent_asin": "P1", "user_id": "\xe9", "timestamp": 1588687728923}\n',
         r"All_Beauty\.jsonl, line 7: byte 0xe9 at column 50 is not valid utf-8"),
    ],
)
def test_bytes_not_in_the_encoding(tmp_path, format, make, file, line, message):
    src = make(tmp_path / "src")
    with open(src / file, "ab") as handle:
        handle.write(line)
    fails(tmp_path, format, src, message)


def test_generic_declared_encoding_is_used(tmp_path):
    write(tmp_path / "g" / "e.csv", f"u,i,t\ncaf\u00e9,x,{T}\n", encoding="latin-1")
    report = imported(tmp_path, "generic", tmp_path / "g", mapping={"interactions": {**INTERACTIONS, "encoding": "latin-1"}})
    assert report.rows_out["interactions"] == 1
    assert pl.read_parquet(tmp_path / "ds" / "interactions.parquet")["user_id"].to_list() == ["caf\u00e9"]


def test_hm_row_with_one_field_too_many(tmp_path):
    fails(tmp_path, "hm", hm_with(tmp_path / "hm", hm_row() + ",extra"), r"transactions_train\.csv, row 8: more fields than the 5 of the header")


def test_generic_csv_row_with_fields_missing(tmp_path):
    src, mapping = generic(tmp_path / "g", f"u,i,t\na,x,{T}\nb,x\n")
    assert_refused(imported(tmp_path, "generic", src, mapping=mapping), "null timestamp")


def test_generic_jsonl_record_with_a_field_missing_or_extra(tmp_path):
    jsonl(tmp_path / "g" / "e.jsonl", [{"u": "a", "i": "x", "t": T, "extra": [1]}, {"u": "b", "t": T}])
    report = imported(tmp_path, "generic", tmp_path / "g", mapping={"interactions": {**INTERACTIONS, "file": "e.jsonl"}})
    assert_refused(report, "null id")
    assert report.rows_out["interactions"] == 1


def test_movielens_dat_with_a_field_missing(tmp_path):
    assert_refused(imported(tmp_path, "movielens", ml_dat(tmp_path / "ml", "3::1::4\n")), "missing field")


# --- 7. both counts agree for every format; a failed write leaves nothing -----------------------


def _generic_format(fmt: str):
    def make(folder: Path) -> Path:
        src, mapping = generic_files(folder, fmt, [{"u": "a", "i": "x", "t": T}, {"u": "b", "i": "x", "t": -1}])
        write(folder / "map.json", json.dumps(mapping))
        return src
    return make


EVERY_FORMAT = {
    "movielens-100k": ("movielens", ml_100k),
    "movielens-latest": ("movielens", ml_latest),
    "movielens-dat": ("movielens", ml_dat),
    "amazon": ("amazon", amazon),
    "hm": ("hm", hm),
    "retailrocket": ("retailrocket", retailrocket),
    **{f"generic-{fmt}": ("generic", _generic_format(fmt)) for fmt in ("csv", "jsonl", "parquet")},
}


@pytest.mark.parametrize("case", sorted(EVERY_FORMAT))
def test_rows_written_agree_with_the_report(tmp_path, case):
    format, make = EVERY_FORMAT[case]
    src = make(tmp_path / "src")
    options = {"mapping": json.loads((src / "map.json").read_text())} if format == "generic" else {}
    report = imported(tmp_path, format, src, **options)  # checks rows in = kept + refused, written = kept
    assert report.rows_out["interactions"] > 0


def test_written_rows_that_disagree_with_the_report_are_a_bug(tmp_path):
    dataset, report = validate(read("hm", hm(tmp_path / "hm")))
    report.rows_out["interactions"] += 1
    report.rows_in["interactions"] += 1
    with pytest.raises(RuntimeError, match=r"interactions: 3 rows written, 4 kept by validation"):
        dataset.save(tmp_path / "ds", report=report)
    assert not (tmp_path / "ds").exists() and list(tmp_path.iterdir()) == [tmp_path / "hm"]


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _polars_disk_full(*args: object, **kwargs: object) -> None:
    raise pl.exceptions.ComputeError("failed to write: No space left on device (os error 28)")


@pytest.mark.parametrize("failure", [_disk_full, _polars_disk_full], ids=["oserror", "polars"])
@pytest.mark.parametrize("writer", ["sink_parquet", "write_parquet"])
def test_write_failure_leaves_nothing_and_names_the_destination(tmp_path, monkeypatch, failure, writer):
    src = retailrocket(tmp_path / "rr")
    imported(tmp_path, "retailrocket", src)  # an earlier dataset at the destination must survive
    before = sorted(p.name for p in (tmp_path / "ds").iterdir())
    frame_type = pl.LazyFrame if writer == "sink_parquet" else pl.DataFrame
    monkeypatch.setattr(frame_type, writer, failure)
    with pytest.raises(OSError, match="No space left on device") as raised:
        import_dataset("retailrocket", src, tmp_path / "ds")
    assert not isinstance(raised.value, pl.exceptions.PolarsError)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "ds")
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "rr"]  # no temporary folder left


def test_destination_that_cannot_be_created(tmp_path):
    write(tmp_path / "blocker", "a file where a folder should be")
    with pytest.raises(OSError) as raised:
        import_dataset("retailrocket", retailrocket(tmp_path / "rr"), tmp_path / "blocker" / "ds")
    assert raised.value.filename == str(tmp_path / "blocker")  # the file in the way
