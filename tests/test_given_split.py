"""A given split (one file per part, or a column naming each event's part) is used exactly as given."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from readers_fixtures import write
from tandemrec.config import DataConfig
from tandemrec.data.errors import DataError
from tandemrec.data.given_split import check_given
from tandemrec.data.prepared import prepare
from tandemrec.data.split import GIVEN_COLUMN, SplitConfig, split_by
from tandemrec.errors import ConfigError
from tandemrec.io.run_folder import RunFolder
from tandemrec.jobs import load_dataset

# Chosen so that no per-user protocol would make them: user a's test event is older than its training
# events, user b has only test events, user c only one training event (min_train would keep it whole).
PARTS = {
    "train": [("a", "i1", 1700000100), ("a", "i2", 1700000200), ("c", "i3", 1700000300), ("d", "i1", 1700000050)],
    "valid": [("a", "i3", 1700000400), ("d", "i2", 1700000060)],
    "test": [("a", "i4", 1700000000), ("b", "i2", 1700000500), ("c", "i1", 1700000600), ("d", "i4", 1700000070)],
}
KEY = ["user_id", "item_id", "timestamp"]


def _files(root: Path) -> dict[str, str]:
    """One generic (CSV) dataset folder per part."""
    for part, rows in PARTS.items():
        lines = "".join(f"{u},{i},{t},view\n" for u, i, t in rows)
        write(root / part / "interactions.csv", "user_id,item_id,timestamp,event\n" + lines)
        write(root / part / "items.csv", "item_id,title,text\n" + "".join(f"i{k},I{k},item {k}\n" for k in range(1, 5)))
    return {part: str(root / part) for part in PARTS}


def _events(part: str) -> set[tuple[str, str, int]]:
    return {(u, i, t) for u, i, t in PARTS[part]}


def test_files_are_read_with_the_configured_reader_and_every_event_stays_in_its_part(tmp_path: Path) -> None:
    config = DataConfig(source="generic", split=SplitConfig(files=_files(tmp_path), min_train=5))
    dataset = load_dataset(config, RunFolder(tmp_path / "run"))
    assert config.split.column == GIVEN_COLUMN
    interactions = dataset.interactions.with_columns(pl.col("timestamp").dt.epoch("s"))
    for part in PARTS:
        rows = interactions.filter(pl.col(GIVEN_COLUMN) == part).select(KEY).rows()
        assert set(rows) == _events(part)

    data = prepare(dataset, config.split, history_len=5)
    decoded = data.events.with_columns(
        pl.col("user_id").map_elements(lambda i: data.vocabs.users.ids[i], return_dtype=pl.String),
        pl.col("item_id").map_elements(lambda i: data.vocabs.items.ids[i], return_dtype=pl.String),
        pl.col("timestamp").dt.epoch("s"),
    )
    for part in PARTS:
        assert set(decoded.filter(pl.col("part") == part).select(KEY).rows()) == _events(part)
    assert len(data.train) == len(PARTS["train"])
    assert len(data.test.users) == 4 and len(data.valid.users) == 2  # one query per user with events there


def test_refit_trains_on_train_and_valid(tmp_path: Path) -> None:
    config = DataConfig(source="generic", split=SplitConfig(files=_files(tmp_path), refit=True))
    data = prepare(load_dataset(config, RunFolder(tmp_path / "run")), config.split, history_len=5)
    assert len(data.train) == len(PARTS["train"]) + len(PARTS["valid"])
    assert len(data.test.users) == 4  # the test part is untouched


def test_a_split_column_is_used_as_it_is() -> None:
    rows = [(u, i, t, part) for part, events in PARTS.items() for u, i, t in events]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "split"], orient="row").with_columns(
        pl.from_epoch("timestamp").dt.replace_time_zone("UTC")
    )
    split = split_by(frame, SplitConfig(column="split", min_train=5))
    for part in PARTS:
        got = getattr(split, part).with_columns(pl.col("timestamp").dt.epoch("s")).select(KEY).rows()
        assert set(got) == _events(part) and len(got) == len(PARTS[part])


def test_a_given_split_is_checked() -> None:
    with pytest.raises(DataError, match="values must be"):
        check_given(pl.DataFrame({"split": ["train", "holdout"]}), "split")
    with pytest.raises(DataError, match="no column"):
        check_given(pl.DataFrame({"part": ["train"]}), "split")
    with pytest.raises(ConfigError, match="excludes"):
        SplitConfig(column="split", test_fraction=0.2)
    with pytest.raises(ConfigError, match="files"):
        SplitConfig(files={"train": "a", "holdout": "b"})
