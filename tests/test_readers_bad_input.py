"""Bad input: each a clear DataError that names the file, and the line, row or column when there is one."""

import polars as pl
import pytest

from readers_fixtures import amazon, hm, jsonl, retailrocket, write
from tandemrec.data import DataError, read_amazon, read_generic, read_hm, read_retailrocket, validate


def _import(reader, folder, strict=False):
    """Read and validate, collecting the plan: errors surface where a user would meet them."""
    valid, report = validate(reader(folder), strict=strict)
    valid.collect()
    return report


def test_truncated_csv(tmp_path):
    folder = hm(tmp_path / "hm")
    with open(folder / "transactions_train.csv", "a") as handle:
        handle.write("2018-09-23,0000423b00ade91418cceaf3b2")
    with pytest.raises(DataError, match=r"transactions_train\.csv, line 9: 2 fields, expected 5: the file ends in the middle of a row"):
        read_hm(folder)


def test_truncated_jsonl(tmp_path):
    folder = amazon(tmp_path / "amazon")
    with open(folder / "All_Beauty.jsonl", "a") as handle:
        handle.write('{"rating": 5.0, "parent_asin": "P1", "user_')
    with pytest.raises(DataError, match=r"All_Beauty\.jsonl, line 7: the file ends in the middle of a record"):
        read_amazon(folder)


def test_invalid_json_line_in_the_middle(tmp_path):
    folder = amazon(tmp_path / "amazon")
    lines = (folder / "All_Beauty.jsonl").read_text().splitlines(keepends=True)
    (folder / "All_Beauty.jsonl").write_text("".join([lines[0], "{not json}\n", *lines[1:]]))
    with pytest.raises(DataError, match=r"All_Beauty\.jsonl, line 2: invalid JSON"):
        _import(read_amazon, folder)


def test_field_of_the_wrong_shape(tmp_path):
    folder = amazon(tmp_path / "amazon")
    with open(folder / "meta_All_Beauty.jsonl", "a") as handle:
        handle.write('{"parent_asin": "P6", "title": "x", "features": "one feature"}\n')  # taken as a list of one
        handle.write('{"parent_asin": "P7", "title": "x", "features": {"not": "a list"}}\n')
    with pytest.raises(DataError, match=r"meta_All_Beauty\.jsonl, line 7: field 'features': expected a list"):
        read_amazon(folder)


def test_wrong_delimiter(tmp_path):
    folder = retailrocket(tmp_path / "rr")
    write(folder / "events.csv", "timestamp;visitorid;event;itemid;transactionid\n1433221332117;257597;view;355908;\n")
    with pytest.raises(DataError, match=r"events\.csv, line 1: header has columns .* missing .* is the separator ';'\?"):
        read_retailrocket(folder)


@pytest.mark.parametrize("extra", ["355,908,4000", "355908,4000,x,y"], ids=["one-more", "several-more"])
def test_too_many_fields_on_a_row(tmp_path, extra):
    folder = retailrocket(tmp_path / "rr")
    with open(folder / "events.csv", "a") as handle:
        handle.write(f"1433221332117,257597,transaction,{extra}\n")  # e.g. a separator inside a value
    with pytest.raises(DataError, match=r"events\.csv, row 8: more fields than the 5 of the header"):
        _import(read_retailrocket, folder)  # an error even when not strict: every field after it is shifted


def test_wrong_encoding(tmp_path):
    write(tmp_path / "e.csv", "u,i,t\n1,caf\u00e9,1700000000\n", encoding="latin-1")
    mapping = {"interactions": {"file": "e.csv", "user_id": "u", "item_id": "i", "timestamp": "t"}}
    with pytest.raises(DataError, match=r"e\.csv, line 2: byte 0xe9 at column 6 is not valid utf-8 \(set encoding = 'latin-1'"):
        _import(lambda f: read_generic(f, mapping), tmp_path)


def test_header_only_file(tmp_path):
    folder = hm(tmp_path / "hm")
    write(folder / "transactions_train.csv", "t_dat,customer_id,article_id,price,sales_channel_id\n")
    with pytest.raises(DataError, match=r"transactions_train\.csv: has a header but no data rows"):
        read_hm(folder)


def test_empty_file(tmp_path):
    folder = hm(tmp_path / "hm")
    write(folder / "articles.csv", "")
    with pytest.raises(DataError, match=r"articles\.csv: empty file, expected H&M articles"):
        read_hm(folder)


def test_directory_where_a_file_is_expected(tmp_path):
    folder = hm(tmp_path / "hm")
    (folder / "articles.csv").unlink()
    (folder / "articles.csv").mkdir()
    with pytest.raises(DataError, match=r"articles\.csv: is a directory, expected H&M articles"):
        read_hm(folder)
    with pytest.raises(DataError, match=r"is a file, expected the H&M folder"):
        read_hm(folder / "customers.csv")


def test_missing_file(tmp_path):
    folder = retailrocket(tmp_path / "rr")
    (folder / "events.csv").unlink()
    with pytest.raises(DataError, match=r"events\.csv: no such file, expected RetailRocket events"):
        read_retailrocket(folder)


def test_json_ids_that_mix_types(tmp_path):
    folder = amazon(tmp_path / "amazon")
    with open(folder / "All_Beauty.jsonl", "a") as handle:
        handle.write('{"rating": 5.0, "parent_asin": "P1", "user_id": 12345, "timestamp": 1588687728923}\n')
    with pytest.raises(DataError, match=r"All_Beauty\.jsonl, line 7: field 'user_id' is a JSON number here, a string on the first record"):
        _import(read_amazon, folder)  # an error even when not strict: the file, not the row, is wrong


def test_parquet_ids_that_mix_types(tmp_path):
    (tmp_path / "ev").mkdir()
    pl.DataFrame({"u": [1], "i": ["a"], "t": [1700000000]}).write_parquet(tmp_path / "ev" / "a.parquet")
    pl.DataFrame({"u": ["x"], "i": ["a"], "t": [1700000000]}).write_parquet(tmp_path / "ev" / "b.parquet")
    mapping = {"interactions": {"file": "ev", "user_id": "u", "item_id": "i", "timestamp": "t"}}
    with pytest.raises(DataError, match=r"b\.parquet, column 'u': text values, but a\.parquet has integer values"):
        read_generic(tmp_path, mapping)


def test_float_ids_are_refused(tmp_path):
    pl.DataFrame({"u": [1.0], "i": ["a"], "t": [1700000000]}).write_parquet(tmp_path / "e.parquet")
    mapping = {"interactions": {"file": "e.parquet", "user_id": "u", "item_id": "i", "timestamp": "t"}}
    with pytest.raises(DataError, match=r"column 'u': float values, expected integer or text ids"):
        read_generic(tmp_path, mapping)


def test_timestamps_out_of_range(tmp_path):
    write(tmp_path / "e.csv", "u,i,t\n1,a,1700000000\n2,a,1700000000000000000000\n3,a,-5\n")
    mapping = {"interactions": {"file": "e.csv", "user_id": "u", "item_id": "i", "timestamp": "t", "timestamp_unit": "s"}}
    valid, report = validate(read_generic(tmp_path, mapping))
    assert report.refused["interactions"] == {"unparsable timestamp": 1, "timestamp out of range": 1}
    with pytest.raises(DataError, match=r"^e\.csv, row 2, column 't': unparsable timestamp \(value '1700000000000000000000'\)"):
        validate(read_generic(tmp_path, mapping), strict=True)
    write(tmp_path / "e.csv", "u,i,t\n1,a,1700000000\n3,a,1700000000000\n")
    with pytest.raises(DataError, match=r"^e\.csv, row 2, column 't': timestamp out of range \(value '1700000000000'\)"):
        validate(read_generic(tmp_path, mapping), strict=True)


def test_nothing_left_is_an_error_with_the_report(tmp_path):
    write(tmp_path / "e.csv", "u,i,t\n1,a,1700000000000\n")
    mapping = {"interactions": {"file": "e.csv", "user_id": "u", "item_id": "i", "timestamp": "t", "timestamp_unit": "s"}}
    with pytest.raises(DataError, match=r"(?s)interactions: no rows left after validation\n.*timestamp out of range: 1"):
        validate(read_generic(tmp_path, mapping))


def test_unknown_format_folder(tmp_path):
    jsonl(tmp_path / "x" / "data.json", [{"a": 1}])
    mapping = {"interactions": {"file": "data.json", "user_id": "u", "item_id": "i", "timestamp": "t"}}
    with pytest.raises(DataError, match="cannot tell the format"):
        read_generic(tmp_path / "x", mapping)
