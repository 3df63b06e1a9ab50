import io
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from polars.testing import assert_frame_equal

from tandemrec.data import INTERACTION_COLUMNS, DataError, Dataset, read_movielens, validate
from tandemrec.data.readers.movielens import GENRES_100K

def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 6), "red").save(buffer, "JPEG")
    return buffer.getvalue()


POSTER = _jpeg_bytes()
ML_100K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens-100k"


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _flags(*genres: str) -> str:
    return "|".join("1" if genre in genres else "0" for genre in GENRES_100K)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _poster(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(POSTER)


def _ml_100k(folder: Path, genre_file: bool = True) -> Path:
    _write(folder / "u.data", "1\t10\t4\t881250949\n2\t10\t5\t881250950\n1\t20\t3\t881250951\n\n")
    _write(
        folder / "u.item",
        f"10|Misérables, Les (1995)|01-Jan-1995||http://x|{_flags('Drama', 'Musical')}\n"
        f"20|Toy Story (1995)|01-Jan-1995||http://y|{_flags('Animation', 'Comedy')}\n"
        f"30|unknown||||{_flags()}\n",
        encoding="latin-1",
    )
    if genre_file:
        _write(folder / "u.genre", "".join(f"{genre}|{k}\n" for k, genre in enumerate(GENRES_100K)))
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    _poster(folder / "posters" / "10.jpg")
    return folder


def _ml_latest(folder: Path) -> Path:
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n7,11,3.5,1112486027\n8,12,4.0,1112484676\n")
    _write(
        folder / "movies.csv",
        'movieId,title,genres\n11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "12,Amélie (Fabuleux destin d'Amélie Poulain) (2001),(no genres listed)\n",
    )
    return folder


def _ml_dat(folder: Path, users: bool = True) -> Path:
    _write(folder / "ratings.dat", "1::1193::5::978300760\n2::2::3::978302109\n")
    _write(
        folder / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n2::Café Society (1995)::Comedy|Romance\n",
        encoding="latin-1",
    )
    if users:
        _write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def test_100k_tables(tmp_path):
    dataset = read_movielens(_ml_100k(tmp_path / "ml-100k")).collect()
    assert dataset.name == "ml-100k" and dataset.root == (tmp_path / "ml-100k").resolve()
    interactions = dataset.interactions.drop(pl.selectors.starts_with("__"))
    assert interactions.schema == pl.Schema(INTERACTION_COLUMNS)
    assert interactions.rows()[0] == ("1", "10", _utc(881250949), "rating", 4.0)
    assert interactions.height == 3
    items = dataset.items.rows(named=True)
    assert items[0] == {
        "item_id": "10",
        "title": "Misérables, Les (1995)",
        "text": "Misérables, Les (1995). Genres: Drama, Musical. Released 1995.",
        "category": "Drama",
        "image": "posters/10.jpg",
    }
    assert items[1]["category"] == "Animation" and items[1]["image"] is None
    assert items[2]["text"] == "unknown." and items[2]["category"] is None
    assert dataset.image_path(items[0]["image"]).read_bytes() == POSTER
    assert dataset.users.rows() == [("1", "18-24", "M", "technician", "8"), ("2", "50-55", "F", "other", "T")]
    assert dataset.user_attributes() == ["age_band", "gender", "occupation", "zip_prefix"]


def test_100k_without_genre_file_uses_the_standard_genres(tmp_path):
    dataset = read_movielens(_ml_100k(tmp_path / "ml", genre_file=False))
    assert dataset.items["category"].to_list() == ["Drama", "Animation", None]


def test_latest_tables_with_quoted_title_and_outside_posters(tmp_path):
    posters = tmp_path / "posters-elsewhere"
    _poster(posters / "12.jpg")
    dataset, _ = validate(read_movielens(_ml_latest(tmp_path / "ml-latest-small"), posters=posters))
    assert dataset.collect().interactions.rows() == [
        ("7", "11", _utc(1112486027), "rating", 3.5),
        ("8", "12", _utc(1112484676), "rating", 4.0),
    ]
    assert dataset.items.rows() == [
        (
            "11",
            "American President, The (1995)",
            "American President, The (1995). Genres: Comedy, Drama, Romance.",
            "Comedy",
            None,
        ),
        (
            "12",
            "Amélie (Fabuleux destin d'Amélie Poulain) (2001)",
            "Amélie (Fabuleux destin d'Amélie Poulain) (2001).",
            None,
            str((posters / "12.jpg").resolve()),
        ),
    ]
    assert dataset.users is None
    assert dataset.image_path(dataset.items["image"][1]).read_bytes() == POSTER


def test_dat_tables_for_1m_and_10m(tmp_path):
    one_m, _ = validate(read_movielens(_ml_dat(tmp_path / "ml-1m")))
    assert one_m.collect().interactions.rows()[0] == ("1", "1193", _utc(978300760), "rating", 5.0)
    assert one_m.items.select("item_id", "title", "category").rows() == [
        ("1193", "One Flew Over the Cuckoo's Nest (1975)", "Drama"),
        ("2", "Café Society (1995)", "Comedy"),
    ]
    assert one_m.users.rows() == [("1", "<18", "F", "K-12 student", "4"), ("2", "56+", "M", "self-employed", "7")]
    assert read_movielens(_ml_dat(tmp_path / "ml-10m", users=False)).users is None


def test_read_validate_save_load_round_trip(tmp_path):
    dataset, report = validate(read_movielens(_ml_100k(tmp_path / "ml")))
    assert report.total_refused("interactions") == 0
    loaded = Dataset.load(dataset.save(tmp_path / "saved"))
    assert_frame_equal(loaded.interactions, dataset.collect().interactions)
    assert loaded.items["image"].to_list() == ["images/10.jpg", None, None]
    assert loaded.image_path("images/10.jpg").read_bytes() == POSTER


def test_folder_without_movielens_files_lists_what_was_looked_for(tmp_path):
    with pytest.raises(DataError) as error:
        read_movielens(tmp_path)
    assert all(name in str(error.value) for name in ("u.data", "ratings.csv", "ratings.dat"))
    with pytest.raises(DataError, match="no such folder"):
        read_movielens(tmp_path / "absent")


T = "881250949"  # a valid timestamp


@pytest.mark.parametrize(
    ("family", "file", "text", "message"),
    [
        ("100k", "u.data", f"1\t10\t4\t{T}\n1\t10\t4\n", r"u\.data, line 2, column 'timestamp': missing field"),
        ("100k", "u.data", f"1\t10\t4\t{T}\n\n1\t10\t4\t1\t9\n", r"u\.data, line 3: 5 fields, expected 4"),
        ("100k", "u.data", f"1\t10\t4\t{T}\n\n1\t10\tx\t{T}\n", r"u\.data, line 3, column 'rating': unparsable rating \(value 'x'\)"),
        ("100k", "u.data", f"1\tten\t4\t{T}\n", r"u\.data, line 1, column 'item id': unparsable id \(value 'ten'\)"),
        ("100k", "u.data", f"1\t10\t4\t{T}000\n", r"u\.data, line 1, column 'timestamp': timestamp out of range"),
        ("100k", "u.data", f"1\t10\t4\t{T}\n1\t10\t4", r"u\.data, line 2: 3 fields, expected 4: the file ends mid-line"),
        ("100k", "u.item", f"10|T|||u|{_flags()}|0\n", r"u\.item, line 1: 25 fields, expected 24"),
        ("100k", "u.item", f"10|T|||u|{_flags()[:-1]}2\n", r"u\.item, line 1, column 'Western': expected 0 or 1"),
        ("100k", "u.user", "1|old|M|x|1\n", r"u\.user, line 1, column 'age': expected an integer, got 'old'"),
        ("latest", "ratings.csv", "user,movie,rating,timestamp\n", r"ratings\.csv, line 1: header"),
        ("latest", "ratings.csv", "userId,movieId,rating,timestamp\n", r"ratings\.csv: has a header but no data rows"),
        ("latest", "ratings.csv", f"userId,movieId,rating,timestamp\n1,11,3,{T}\n1,11,x,{T}\n", r"csv, line 3, column 'rating'"),
        ("latest", "movies.csv", 'movieId,title,genres\n1,"A, B",Drama,extra\n', r"movies\.csv, line 2: 4 fields"),
        ("dat", "ratings.dat", f"1::1193::3::{T}\n1:2::3::{T}\n", r"ratings\.dat, line 2: expected 4 fields separated by '::'"),
        ("dat", "users.dat", "1::F::1::99::48067\n", r"users\.dat, line 1, column 'Occupation': expected a code in"),
    ],
)
def test_bad_lines_name_file_line_and_column(tmp_path, family, file, text, message):
    folder = {"100k": _ml_100k, "latest": _ml_latest, "dat": _ml_dat}[family](tmp_path / "ml")
    _write(folder / file, text)
    with pytest.raises(DataError, match=message):
        validate(read_movielens(folder), strict=True)


def test_bad_values_are_refused_and_counted_unless_strict(tmp_path):
    folder = _ml_100k(tmp_path / "ml")
    _write(folder / "u.data", f"1\t10\t4\t{T}\n1\tten\t4\t{T}\n2\t10\tx\t{T}\n2\t10\t5\n\n2\t99\t5\t{T}\n1\t20\t3\t{T}\n")
    valid, report = validate(read_movielens(folder))
    assert report.refused["interactions"] == {
        "missing field": 1,
        "unparsable id": 1,
        "unparsable rating": 1,
        "unknown item": 1,
    }
    assert report.rows_in["interactions"] == 6  # the blank line is not a row
    assert report.rows_out["interactions"] == 2 == valid.collect().interactions.height
    assert report.balanced()


def test_missing_movie_file_and_missing_posters_folder(tmp_path):
    folder = _ml_latest(tmp_path / "ml")
    with pytest.raises(DataError, match="not-there"):
        read_movielens(folder, posters=tmp_path / "not-there")
    (folder / "movies.csv").unlink()
    with pytest.raises(DataError, match=r"movies\.csv: missing"):
        read_movielens(folder)


@pytest.mark.skipif(not ML_100K.is_dir(), reason=f"MovieLens 100K not found at {ML_100K}")
def test_real_movielens_100k():
    dataset, report = validate(read_movielens(ML_100K))
    dataset = dataset.collect()
    assert report.rows_out == {"interactions": 100_000, "items": 1_682, "users": 943}
    assert dataset.interactions["user_id"].n_unique() == 943
    assert dataset.items["image"].is_not_null().sum() == 1_601
    assert dataset.items.filter(pl.col("item_id") == "543")["title"].item() == "Misérables, Les (1995)"
    assert dataset.interactions["timestamp"].min().year == 1997
