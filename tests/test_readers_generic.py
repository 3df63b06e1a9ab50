"""The generic reader: CSV, Parquet and JSON Lines with a column mapping, and its defaults."""

from datetime import datetime, timezone

import polars as pl
import pytest

from readers_fixtures import jpeg, jsonl, write
from tandemrec.data import DataError, read_generic, validate
from tandemrec.data.readers.mapping import Mapping

UTC = timezone.utc


def test_csv_with_mapping_separator_encoding_units_and_events(tmp_path):
    write(
        tmp_path / "logs" / "events.csv",
        "visitor;sku;ts;type;qty\n"
        "7;a1;1700000000000;pageview;\n"  # milliseconds
        "7;a2;1700000100;buy;2\n"  # seconds, in the same column
        '8;a1;"2023-11-14T22:15:00+01:00";buy;1\n'  # ISO text with an offset
        "8;a2;2023-11-15;wishlist;\n"  # an event not in the map
        "9;a1;tomorrow;pageview;\n"  # unparsable timestamp
        "9;a1;1700000000;pageview;lots\n",  # unparsable value
        encoding="latin-1",
    )
    write(tmp_path / "logs" / "products.csv", "sku,name,desc,tags,cat,pic,brand\na1,Café,\"Strong, dark\",coffee,drinks,img/a1.jpg,Acme\na2,Tea,,,drinks,img/a2.jpg,\n", encoding="latin-1")
    jpeg(tmp_path / "logs" / "img" / "a1.jpg")
    mapping = {
        "interactions": {
            "file": "events.csv", "separator": ";", "encoding": "latin-1", "user_id": "visitor", "item_id": "sku",
            "timestamp": "ts", "event": "type", "events": {"pageview": "view", "buy": "purchase"}, "value": "qty",
        },
        "items": {
            "file": "products.csv", "encoding": "latin-1", "item_id": "sku", "title": "name", "text": ["desc", "tags"],
            "category": "cat", "image": "pic", "features": ["brand"],
        },
    }
    valid, report = validate(read_generic(tmp_path / "logs", mapping))
    assert valid.collect().interactions.rows() == [
        ("7", "a1", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), "view", None),
        ("7", "a2", datetime(2023, 11, 14, 22, 15, tzinfo=UTC), "purchase", 2.0),
        ("8", "a1", datetime(2023, 11, 14, 21, 15, tzinfo=UTC), "purchase", 1.0),
    ]
    assert report.refused["interactions"] == {
        "unparsable timestamp": 1,
        "unknown event type (expected pageview, buy)": 1,
        "unparsable value": 1,
    }
    assert valid.items.rows() == [
        ("a1", "Café", "Strong, dark. coffee", "drinks", "img/a1.jpg", "Acme"),
        ("a2", "Tea", None, "drinks", None, None),
    ]
    assert report.repaired["items"] == {"missing image": 1}
    assert report.balanced()


def test_parquet_files_keep_their_types(tmp_path):
    folder = tmp_path / "pq"
    (folder / "events").mkdir(parents=True)
    for part, users in enumerate(([1, 2], [3])):
        pl.DataFrame(
            {
                "uid": pl.Series(users, dtype=pl.Int32 if part else pl.Int64),
                "iid": ["x"] * len(users),
                "when": [datetime(2024, 1, 1 + k) for k in range(len(users))],
                "kind": ["view"] * len(users),
            }
        ).write_parquet(folder / "events" / f"part-{part}.parquet")
    pl.DataFrame({"iid": ["x"], "title": ["X"]}).write_parquet(folder / "items.parquet")
    mapping = {
        "interactions": {"file": "events", "user_id": "uid", "item_id": "iid", "timestamp": "when", "event": "kind"},
        "items": {"file": "items.parquet", "item_id": "iid", "title": "title"},
    }
    valid, report = validate(read_generic(folder, mapping))
    rows = valid.collect().interactions.rows()
    assert [r[0] for r in rows] == ["1", "2", "3"] and rows[0][2] == datetime(2024, 1, 1, tzinfo=UTC)
    assert report.rows_in["interactions"] == 3 and report.balanced()


def test_jsonl_with_iso_timestamps_and_items_derived_from_interactions(tmp_path):
    jsonl(
        tmp_path / "j" / "clicks.jsonl",
        [
            {"u": "a", "i": "x", "t": "2024-03-01T10:00:00Z"},
            {"u": "b", "i": "y", "t": "2024-03-01 11:00:00"},
            {"u": None, "i": "y", "t": "2024-03-01 12:00:00"},
        ],
    )
    mapping = {"interactions": {"file": "clicks.jsonl", "user_id": "u", "item_id": "i", "timestamp": "t", "event_name": "click"}}
    valid, report = validate(read_generic(tmp_path / "j", mapping))
    assert valid.collect().interactions.select("user_id", "event").rows() == [("a", "click"), ("b", "click")]
    assert valid.items["item_id"].to_list() == ["x", "y"] and valid.items["title"].null_count() == 2
    assert report.refused["interactions"] == {"null id": 1}


def test_canonical_folder_needs_no_mapping(tmp_path):
    write(tmp_path / "c" / "interactions.csv", "user_id,item_id,timestamp,event,value\nu,i,1700000000,view,\n")
    write(tmp_path / "c" / "items.csv", "item_id,title,text\ni,I,an item\n")
    valid, report = validate(read_generic(tmp_path / "c"))
    assert valid.collect().interactions.height == 1 and valid.items["text"].to_list() == ["an item"]
    only, _ = validate(read_generic(tmp_path / "c" / "interactions.csv"))
    assert only.items["item_id"].to_list() == ["i"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"items": {"file": "x"}}, r"no \[interactions\] table"),
        ({"interactions": {"file": "e.csv", "user_id": "u"}}, r"\[interactions\] needs \['item_id', 'timestamp'\]"),
        ({"interactions": {"file": "e.csv", "user_id": "u", "item_id": "i", "timestamp": "t", "usr": "x"}}, r"unknown key\(s\) \['usr'\]"),
        ({"interactions": {"file": "e.csv", "user_id": 3, "item_id": "i", "timestamp": "t"}}, r"user_id must be a string"),
        ({"sessions": {}, "interactions": {}}, r"unknown table\(s\) \['sessions'\]"),
    ],
)
def test_bad_mappings_say_what_is_wrong(raw, message):
    with pytest.raises(DataError, match=message):
        Mapping.parse(raw)


def test_mapping_from_a_toml_file(tmp_path):
    write(tmp_path / "e.csv", "u,i,t\n1,2,1700000000\n")
    write(tmp_path / "map.toml", '[interactions]\nfile = "e.csv"\nuser_id = "u"\nitem_id = "i"\ntimestamp = "t"\n')
    valid, _ = validate(read_generic(tmp_path, tmp_path / "map.toml"))
    assert valid.collect().interactions["event"].to_list() == ["interaction"]
    with pytest.raises(DataError, match="not valid TOML"):
        read_generic(tmp_path, write(tmp_path / "bad.toml", "[interactions\n"))
