import json
import os
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tandemrec.data import INTERACTION_COLUMNS, ITEM_COLUMNS, DataError, Dataset


def _ts(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=timezone.utc)


def _dataset(root: Path | None = None, images: list[str | None] | None = None) -> Dataset:
    interactions = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["a", "b", "a"],
            "timestamp": [_ts(1), _ts(2), _ts(3)],
            "event": ["view", "purchase", "view"],
            "value": [None, 2.0, None],
        },
        schema=INTERACTION_COLUMNS,
    )
    items = pl.DataFrame(
        {
            "item_id": ["a", "b"],
            "title": ["Red mug", "Blue lamp"],
            "text": ["A red mug.", "A blue lamp."],
            "category": ["mugs", None],
            "image": images or [None, None],
            "brand": ["acme", "zeta"],
        },
        schema={**ITEM_COLUMNS, "brand": pl.String},
    )
    users = pl.DataFrame({"user_id": ["u1", "u2"], "region": ["north", "south"], "age_band": ["18-24", None]})
    return Dataset(interactions, items, users, root=root, name="tiny")


def _write_image(path: Path, payload: bytes = b"png-bytes") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def test_round_trip_keeps_frames_and_manifest(tmp_path):
    dataset = _dataset()
    dest = dataset.save(tmp_path / "ds")
    loaded = Dataset.load(dest)
    assert_frame_equal(loaded.interactions, dataset.interactions)
    assert_frame_equal(loaded.items, dataset.items)
    assert_frame_equal(loaded.users, dataset.users)
    assert loaded.name == "tiny"
    assert loaded.root == (tmp_path / "ds").resolve()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["name"] == "tiny"
    assert manifest["tables"]["interactions"]["rows"] == 3
    assert manifest["tables"]["items"]["columns"]["brand"] == "String"
    assert datetime.fromisoformat(manifest["created"]).utcoffset().total_seconds() == 0


def test_user_attributes_and_image_path(tmp_path):
    dataset = _dataset(root=tmp_path)
    assert dataset.user_attributes() == ["age_band", "region"]
    assert Dataset(dataset.interactions, dataset.items).user_attributes() == []
    assert dataset.image_path("images/a.png") == tmp_path / "images" / "a.png"


def test_images_outside_dest_are_gathered_into_images_folder(tmp_path):
    source = tmp_path / "source"
    _write_image(source / "posters" / "1.jpg", b"one")
    _write_image(source / "other" / "1.jpg", b"other one")
    dataset = _dataset(root=source, images=["posters/1.jpg", "other/1.jpg"])
    dest = dataset.save(tmp_path / "ds")
    loaded = Dataset.load(dest)
    assert loaded.items["image"].to_list() == ["images/1.jpg", "images/1-1.jpg"]
    assert loaded.image_path("images/1.jpg").read_bytes() == b"one"
    assert loaded.image_path("images/1-1.jpg").read_bytes() == b"other one"
    assert (source / "posters" / "1.jpg").read_bytes() == b"one"


def test_absolute_and_shared_image_paths_and_missing_files(tmp_path):
    shared = tmp_path / "elsewhere" / "shared.png"
    _write_image(shared)
    dataset = _dataset(root=tmp_path / "source", images=[str(shared), str(shared)])
    loaded = Dataset.load(dataset.save(tmp_path / "ds"))
    assert loaded.items["image"].to_list() == ["images/shared.png", "images/shared.png"]
    assert len(os.listdir(tmp_path / "ds" / "images")) == 1

    missing = _dataset(root=tmp_path / "source", images=["posters/none.jpg", None])
    loaded = Dataset.load(missing.save(tmp_path / "ds2"))
    assert loaded.items["image"].to_list() == ["posters/none.jpg", None]
    assert not (tmp_path / "ds2" / "images").exists()


def test_resaving_onto_itself_keeps_images(tmp_path):
    _write_image(tmp_path / "source" / "a.png", b"a")
    Dataset.load(_dataset(root=tmp_path / "source", images=["a.png", None]).save(tmp_path / "ds"))
    loaded = Dataset.load(tmp_path / "ds")
    loaded.save(tmp_path / "ds")
    again = Dataset.load(tmp_path / "ds")
    assert again.items["image"].to_list() == ["images/a.png", None]
    assert again.image_path("images/a.png").read_bytes() == b"a"


def test_save_replaces_an_existing_dataset(tmp_path):
    dest = _dataset().save(tmp_path / "ds")
    smaller = _dataset()
    smaller.users = None
    smaller.interactions = smaller.interactions.head(1)
    smaller.save(dest)
    loaded = Dataset.load(dest)
    assert loaded.users is None
    assert loaded.interactions.height == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_failed_save_leaves_existing_dest_untouched(tmp_path, monkeypatch):
    dest = _dataset().save(tmp_path / "ds")
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    original = pl.DataFrame.write_parquet

    def failing(frame, file, *args, **kwargs):
        if Path(file).name == "items.parquet":
            raise OSError("disk full")
        return original(frame, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", failing)
    changed = _dataset()
    changed.interactions = changed.interactions.head(1)
    with pytest.raises(OSError, match="disk full"):
        changed.save(dest)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_save_refuses_to_replace_what_is_not_a_dataset(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(DataError, match="manifest.json"):
        _dataset().save(tmp_path / "notes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        _dataset().save(tmp_path / "file")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such dataset folder"),
        (lambda p: p.write_text("x"), "is a file"),
        (lambda p: p.mkdir(), "interactions.parquet is missing"),
    ],
)
def test_load_names_the_path_when_it_is_not_a_dataset(tmp_path, make, message):
    path = tmp_path / "thing"
    make(path)
    with pytest.raises(DataError, match=message) as error:
        Dataset.load(path)
    assert str(path) in str(error.value)


def test_load_casts_safe_types_and_fills_optional_columns(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    pl.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [10, 20],
            "timestamp": [datetime(2026, 1, 1), datetime(2026, 1, 2)],
            "event": ["view", "view"],
            "value": [1, 2],
        }
    ).write_parquet(folder / "interactions.parquet")
    items = pl.DataFrame({"item_id": [10, 20], "title": ["x", "y"], "text": ["x", "y"], "stock": [3, 4]})
    items.write_parquet(folder / "items.parquet")
    loaded = Dataset.load(folder)
    assert loaded.interactions.schema == pl.Schema(INTERACTION_COLUMNS)
    assert loaded.interactions["user_id"].to_list() == ["1", "2"]
    assert loaded.interactions["timestamp"][0] == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert loaded.items.columns == [*ITEM_COLUMNS, "stock"]
    assert loaded.items["stock"].to_list() == ["3", "4"]
    assert loaded.items["image"].null_count() == 2
    assert loaded.name == "raw"
    assert loaded.users is None


def test_load_refuses_unsafe_types(tmp_path):
    dataset = _dataset()
    folder = tmp_path / "raw"
    folder.mkdir()
    float_ids = dataset.interactions.with_columns(item_id=pl.Series([1.0, 2.0, 1.0]))
    float_ids.write_parquet(folder / "interactions.parquet")
    dataset.items.write_parquet(folder / "items.parquet")
    with pytest.raises(DataError, match=r"interactions, column 'item_id': has type Float64, expected String"):
        Dataset.load(folder)


def test_other_time_zones_are_converted_to_utc():
    dataset = _dataset()
    local = dataset.interactions.with_columns(pl.col("timestamp").dt.convert_time_zone("Europe/Paris"))
    conformed = Dataset(local, dataset.items).conformed()
    assert_frame_equal(conformed.interactions, dataset.interactions)
