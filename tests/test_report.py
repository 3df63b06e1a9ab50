"""`tandemrec data import` for every format: the dataset folder, report.json, the console summary, and
rows in = rows out + refused on every table."""

import json
from pathlib import Path

import polars as pl
import pytest

from readers_fixtures import amazon, hm, retailrocket, write
from tandemrec.cli import main
from tandemrec.data import READERS, Dataset
from tandemrec.data.importer import import_dataset
from tandemrec.sources import IMPORT_FORMATS, SOURCES

ML_100K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens-100k"


def _generic(folder: Path) -> Path:
    write(folder / "events.csv", "u,i,t,kind\n1,a,1700000000,view\n2,a,bad,view\n3,zz,1700000000,buy\n")
    write(folder / "items.csv", "sku,name\na,A\n")
    write(
        folder / "map.toml",
        '[interactions]\nfile = "events.csv"\nuser_id = "u"\nitem_id = "i"\ntimestamp = "t"\nevent = "kind"\n'
        '[items]\nfile = "items.csv"\nitem_id = "sku"\ntitle = "name"\n',
    )
    return folder


FIXTURES = {
    "hm": (hm, {}),
    "retailrocket": (retailrocket, {}),
    "amazon": (amazon, {}),
    "generic": (_generic, {"mapping": "map.toml"}),
}


def test_the_cli_and_the_config_know_every_reader():
    assert set(IMPORT_FORMATS) == set(READERS)
    assert set(SOURCES) == {"synthetic", "dataset", *READERS}


@pytest.mark.parametrize("format", sorted(FIXTURES))
def test_every_reader_accounts_for_every_row(tmp_path, format):
    make, options = FIXTURES[format]
    src = make(tmp_path / "src")
    options = {k: src / v for k, v in options.items()}
    dest, report = import_dataset(format, src, tmp_path / "ds", **options)
    written = json.loads((dest / "report.json").read_text())
    assert written == json.loads(json.dumps(report.to_dict()))
    for table, rows_in in written["rows_in"].items():
        assert rows_in == written["rows_out"][table] + sum(written["refused"][table].values()), table
    assert sum(sum(reasons.values()) for reasons in written["refused"].values()) > 0  # fixtures hold bad rows
    loaded = Dataset.load(dest)
    assert loaded.interactions.height == written["rows_out"]["interactions"] == written["totals"]["interactions"]
    assert loaded.items.height == written["rows_out"]["items"]
    assert not [c for c in loaded.interactions.columns + loaded.items.columns if c.startswith("__")]


def test_cli_import_prints_the_report_and_writes_it(tmp_path, capsys):
    src = hm(tmp_path / "hm")
    assert main(["data", "import", "hm", str(src), str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "interactions: 7 rows in, 3 kept, 4 refused (unparsable id: 1, unparsable timestamp: 1, null id: 1, unknown item: 1)" in out
    assert "items: 3 rows in, 3 kept; repaired: missing image: 1, unreadable image: 1; 1 with an image" in out
    assert "dataset: 3 interactions by 2 users on 3 items" in out
    assert (tmp_path / "ds" / "report.json").is_file()


def test_cli_strict_fails_naming_where(tmp_path, capsys):
    src = hm(tmp_path / "hm")
    assert main(["data", "import", "hm", str(src), str(tmp_path / "ds"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "transactions_train.csv, row 4, column 't_dat': unparsable timestamp" in err
    assert not (tmp_path / "ds").exists()


def test_cli_generic_with_a_mapping_and_misplaced_options(tmp_path, capsys):
    src = _generic(tmp_path / "g")
    assert main(["data", "import", "generic", str(src), str(tmp_path / "ds"), "--map", str(src / "map.toml")]) == 0
    assert "interactions: 3 rows in, 1 kept, 2 refused (unparsable timestamp: 1, unknown item: 1)" in capsys.readouterr().out
    assert main(["data", "import", "hm", str(src), str(tmp_path / "x"), "--map", "m.toml"]) == 2
    assert "--map applies to the generic format only" in capsys.readouterr().err


def test_reimporting_replaces_the_dataset(tmp_path):
    src = retailrocket(tmp_path / "rr")
    import_dataset("retailrocket", src, tmp_path / "ds")
    (src / "events.csv").write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,355908,\n")
    _, report = import_dataset("retailrocket", src, tmp_path / "ds")
    assert pl.read_parquet(tmp_path / "ds" / "interactions.parquet").height == report.rows_out["interactions"] == 1


@pytest.mark.skipif(not ML_100K.is_dir(), reason=f"MovieLens 100K not found at {ML_100K}")
def test_movielens_100k_import(tmp_path, capsys):
    assert main(["data", "import", "movielens", str(ML_100K), str(tmp_path / "ml")]) == 0
    assert "dataset: 100,000 interactions by 943 users on 1,682 items (1,682 with interactions, 1,601 with an image)" in (
        capsys.readouterr().out
    )
    report = json.loads((tmp_path / "ml" / "report.json").read_text())
    assert report["refused"] == {"interactions": {}, "items": {}, "users": {}}
    assert report["totals"] == {
        "interactions": 100_000, "users": 943, "items": 1_682, "items with interactions": 1_682, "items with image": 1_601
    }
