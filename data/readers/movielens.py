"""Readers for the MovieLens families (100K; 1M/10M `.dat`; ml-latest, 20M, 25M, 32M `.csv`).

MovieLens is the public benchmark most recommender work is compared on, and its posters make it
multimodal. Every rating becomes an event "rating" with the rating as value; which ratings count as the
target domain is configuration (`data.domains`). Ratings files run to tens of millions of lines, so they
are scanned lazily by polars, a line that does not parse being refused and counted by validation; the small
movie and user files are parsed by Python, and any bad line in them is an error naming it.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from tandemrec.data.dataset import Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.intake import HELPER_PREFIX, ROW, Intake, Rule, TableSource, raw
from tandemrec.data.readers.files import has_data_after_header, last_line_if_cut, require_file
from tandemrec.data.readers.parse import age_band, epoch, integer_id, number, out_of_range, parse, unparsable

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# The occupation codes of the 1M users.dat (its README).
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)
_NO_GENRES = "(no genres listed)"
_RELEASE_YEAR = re.compile(r"\d{1,2}-[A-Za-z]{3}-(\d{4})$")
_RATING_COLUMNS = ("user_id", "item_id", "value", "timestamp")
# The rating scale of each family's ratings file: whole stars in 100K (and 1M), half stars from 0.5 in
# 10M (also a ratings.dat), ml-latest and 20M to 32M (their READMEs).
WHOLE_STARS = (1.0, 5.0)
HALF_STARS = (0.5, 5.0)


def read_movielens(path: str | Path, posters: str | Path | None = None) -> Dataset:
    """Read a MovieLens folder into the canonical tables, detecting the family from its files.

    `posters` is a folder of `<movie id>.jpg`; by default `path/posters` when it exists. The interactions
    are a lazy plan over the ratings file; `validate` counts what it refuses (`strict` there: the first
    refusal is an error naming the line).
    """
    folder = Path(path)
    if folder.is_file():
        raise DataError(f"{folder}: is a file, expected a MovieLens folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder, expected a MovieLens folder")
    if (folder / "u.data").is_file():
        ratings = _read_ratings(folder / "u.data", "\t", ("user id", "item id", "rating", "timestamp"), WHOLE_STARS)
        items, items_file, users_file = _read_u_item(folder), "u.item", "u.user"
        users = _read_u_user(folder / "u.user") if (folder / "u.user").is_file() else None
    elif (folder / "ratings.csv").is_file():
        header = ("userId", "movieId", "rating", "timestamp")
        ratings = _read_ratings(folder / "ratings.csv", ",", header, HALF_STARS, has_header=True)
        items, items_file, users_file = _read_movies_csv(folder / "movies.csv"), "movies.csv", ""
        users = None
    elif (folder / "ratings.dat").is_file():
        names = ("UserID", "MovieID", "Rating", "Timestamp")
        ratings = _read_ratings(folder / "ratings.dat", "::", names, HALF_STARS)
        items, items_file, users_file = _read_movies_dat(folder / "movies.dat"), "movies.dat", "users.dat"
        users = _read_users_dat(folder / "users.dat") if (folder / "users.dat").is_file() else None
    else:
        raise DataError(
            f"{folder}: no MovieLens ratings found; looked for u.data (100K), "
            "ratings.csv (ml-latest, 20M, 25M, 32M) and ratings.dat (1M, 10M)"
        )
    root = folder.resolve()
    items = items.with_columns(image=_poster_paths(items["item_id"], posters, root))
    image_roots = () if posters is None else (Path(posters).resolve(),)  # named by the user: allowed
    interactions, source = ratings
    tables = {"interactions": source, "items": TableSource(items_file, "line")}
    if users is not None:
        tables["users"] = TableSource(users_file, "line")
    intake = Intake(tables)
    return Dataset(
        interactions=interactions, items=items, users=users, root=root, name=root.name, intake=intake,
        image_roots=image_roots,
    )


def _bad_line(file: Path, line: int, problem: str, column: str | None = None) -> DataError:
    return DataError.at(str(file), problem, row=line, column=column, row_label="line")


def _read_ratings(
    file: Path,
    separator: str,
    names: tuple[str, str, str, str],
    scale: tuple[float, float],
    has_header: bool = False,
) -> tuple[pl.LazyFrame, TableSource]:
    """(user, item, rating, unix seconds) lines -> a plan of canonical interactions and its source.

    A line with a field missing or not a number, or a rating that is NaN or off the `scale` (lowest,
    highest), is refused by validation, counted by reason; a line with too many fields, or single ':'
    where '::' separates, is an error naming it.
    """
    require_file(file, f"MovieLens ratings ({separator.join(names)})")
    if has_header:
        _check_header(file, separator, names)
        if not has_data_after_header(file):
            raise DataError(f"{file}: has a header but no data rows, expected ratings")
    cut = last_line_if_cut(file)
    if cut is not None and cut[1].strip() and len(cut[1].split(separator)) < len(names):
        found = len(cut[1].split(separator))
        raise _bad_line(file, cut[0], f"{found} fields, expected {len(names)}: the file ends mid-line (truncated?)")
    fields, gaps = _scan_fields(file, separator, names, has_header)
    gap_rule = f"expected {len(names)} fields separated by '::'"
    user, item, rating, seconds = names
    frame = fields.select(
        ROW,
        *parse("user_id", user, integer_id(user)),
        *parse("item_id", item, integer_id(item)),
        *parse("timestamp", seconds, epoch(seconds, "s")),
        pl.lit("rating").alias("event"),
        *parse("value", rating, number(rating)),
        *gaps,
    )
    gap_rules = [Rule(gap_rule, None, pl.col(gap).is_not_null(), fatal=True) for gap in gaps]
    missing = [Rule("missing field", raw(c), pl.col(raw(c)).is_null()) for c in _RATING_COLUMNS]
    rules = [
        *gap_rules,
        *missing,
        unparsable("unparsable id", "user_id"),
        unparsable("unparsable id", "item_id"),
        unparsable("unparsable rating", "value"),
        *out_of_range("value", "rating", *scale),
        unparsable("unparsable timestamp", "timestamp"),
    ]
    source_names = dict(zip(_RATING_COLUMNS, (user, item, rating, seconds)))
    columns = {**source_names, **{raw(c): name for c, name in source_names.items()}}

    def locate(error: Exception) -> DataError | None:
        return _ragged_line(file, separator, len(names), 2 if has_header else 1)

    return frame, TableSource(file.name, "line", columns, rules, locate=locate)


def _scan_fields(
    file: Path, separator: str, names: tuple[str, ...], has_header: bool
) -> tuple[pl.LazyFrame, list[str]]:
    """The raw String fields of every non-blank line, with its line number in `__row`; and, for "::"
    files, the gaps between the fields as helper columns (a stray ':' fills one)."""
    first_line = 2 if has_header else 1
    # polars takes one-byte separators: "::" is read as ":", leaving an empty field between each pair.
    step = 2 if separator == "::" else 1
    width = step * (len(names) - 1) + 1
    scanned = pl.scan_csv(
        file,
        separator=separator[0],
        has_header=False,
        skip_lines=first_line - 1,
        schema={f"f{k}": pl.String for k in range(width)},
        quote_char=None,
        encoding="utf8-lossy",
    )
    # polars keeps blank lines as all-null rows, so row k is line first_line + k.
    scanned = scanned.with_row_index(ROW, offset=first_line)
    gaps = {f"f{k}": f"{HELPER_PREFIX}gap{k}" for k in range(1, width, step)} if step == 2 else {}
    fields = scanned.select(
        pl.col(ROW),
        *(pl.col(f"f{step * k}").alias(name) for k, name in enumerate(names)),
        *(pl.col(field).alias(gap) for field, gap in gaps.items()),
    )
    return fields.filter(pl.any_horizontal(pl.col(name).is_not_null() for name in names)), list(gaps.values())


def _check_header(file: Path, separator: str, names: tuple[str, ...]) -> None:
    with open(file, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n")
    if tuple(header.split(separator)) != names:
        raise _bad_line(file, 1, f"header {header!r}, expected {separator.join(names)!r}")


def _ragged_line(file: Path, separator: str, n_fields: int, first_line: int) -> DataError | None:
    """Locate the line polars refused for having too many fields; runs only on that error path."""
    with open(file, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            count = len(line.rstrip("\r\n").split(separator))
            if number >= first_line and line.strip() and count != n_fields:
                return _bad_line(file, number, f"{count} fields, expected {n_fields}")
    return None


def _decode(file: Path) -> str:
    """The file's text, as UTF-8 or else Latin-1 (the older MovieLens files)."""
    if not file.is_file():
        raise DataError(f"{file}: missing, expected it next to the ratings file")
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _records(file: Path, separator: str, names: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Numbered records of the non-blank lines, each checked for its number of fields."""
    # Not splitlines(): Latin-1 text may hold \x85 or \x1c, which it would take for line breaks.
    for number, line in enumerate(_decode(file).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split(separator)
        if len(fields) != len(names):
            raise _bad_line(file, number, f"{len(fields)} fields, expected {len(names)}")
        yield number, dict(zip(names, fields))


def _integer(file: Path, line: int, column: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _bad_line(file, line, f"expected an integer, got {value!r}", column) from None


def _items_frame(rows: list[tuple[str, str, list[str], str | None]]) -> pl.DataFrame:
    """(id, title, genres, release year) rows -> items: the text tells title, genres and year; the
    category is the first genre."""

    def text(title: str, genres: list[str], year: str | None) -> str:
        described = f"{title}. Genres: {', '.join(genres)}." if genres else f"{title}."
        return f"{described} Released {year}." if year else described

    return pl.DataFrame(
        {
            "item_id": [row[0] for row in rows],
            "title": [row[1] for row in rows],
            "text": [text(*row[1:]) for row in rows],
            "category": [row[2][0] if row[2] else None for row in rows],
        },
        schema={"item_id": pl.String, "title": pl.String, "text": pl.String, "category": pl.String},
    )


def _read_u_item(folder: Path) -> pl.DataFrame:
    genres = _read_u_genre(folder / "u.genre") if (folder / "u.genre").is_file() else GENRES_100K
    file = folder / "u.item"
    names = ("movie id", "movie title", "release date", "video release date", "IMDb URL", *genres)
    rows = []
    for number, record in _records(file, "|", names):
        flags = {genre: record[genre] for genre in genres}
        odd = next((genre for genre, flag in flags.items() if flag not in ("0", "1")), None)
        if odd is not None:
            raise _bad_line(file, number, f"expected 0 or 1, got {flags[odd]!r}", odd)
        year = _RELEASE_YEAR.match(record["release date"])
        rows.append(
            (
                str(_integer(file, number, "movie id", record["movie id"])),
                record["movie title"],
                [genre for genre, flag in flags.items() if flag == "1"],
                year.group(1) if year else None,
            )
        )
    return _items_frame(rows)


def _read_u_genre(file: Path) -> tuple[str, ...]:
    indexed = [
        (_integer(file, number, "index", record["index"]), record["genre"])
        for number, record in _records(file, "|", ("genre", "index"))
    ]
    return tuple(genre for _, genre in sorted(indexed))


def _read_movies_csv(file: Path) -> pl.DataFrame:
    names = ("movieId", "title", "genres")
    # StringIO splits lines on "\n" only, so reader.line_num is the line number in the file.
    reader = csv.reader(io.StringIO(_decode(file)))
    rows = []
    for record in reader:
        if reader.line_num == 1:
            if tuple(record) != names:
                raise _bad_line(file, 1, f"header {','.join(record)!r}, expected {','.join(names)!r}")
            continue
        if not record:
            continue
        if len(record) != len(names):
            raise _bad_line(file, reader.line_num, f"{len(record)} fields, expected {len(names)}")
        movie_id = str(_integer(file, reader.line_num, "movieId", record[0]))
        rows.append((movie_id, record[1], _split_genres(record[2]), None))
    return _items_frame(rows)


def _read_movies_dat(file: Path) -> pl.DataFrame:
    rows = []
    for number, record in _records(file, "::", ("MovieID", "Title", "Genres")):
        movie_id = str(_integer(file, number, "MovieID", record["MovieID"]))
        rows.append((movie_id, record["Title"], _split_genres(record["Genres"]), None))
    return _items_frame(rows)


def _split_genres(genres: str) -> list[str]:
    return [] if genres in ("", _NO_GENRES) else genres.split("|")


def _users_frame(rows: list[tuple[str, str, str, str, str | None]]) -> pl.DataFrame:
    """(id, age, gender, occupation, zip prefix) rows -> users, ages bucketed into bands."""
    columns = ("user_id", "age", "gender", "occupation", "zip_prefix")
    frame = pl.DataFrame(
        {column: [row[k] for row in rows] for k, column in enumerate(columns)},
        schema={column: pl.String for column in columns},
    )
    return frame.select("user_id", age_band("age").alias("age_band"), "gender", "occupation", "zip_prefix")


def _read_u_user(file: Path) -> pl.DataFrame:
    rows = []
    for number, record in _records(file, "|", ("user id", "age", "gender", "occupation", "zip code")):
        user_id = str(_integer(file, number, "user id", record["user id"]))
        age = str(_integer(file, number, "age", record["age"]))
        rows.append((user_id, age, record["gender"], record["occupation"], record["zip code"][:1] or None))
    return _users_frame(rows)


def _read_users_dat(file: Path) -> pl.DataFrame:
    rows = []
    for number, record in _records(file, "::", ("UserID", "Gender", "Age", "Occupation", "Zip-code")):
        user_id = str(_integer(file, number, "UserID", record["UserID"]))
        age = str(_integer(file, number, "Age", record["Age"]))
        code = _integer(file, number, "Occupation", record["Occupation"])
        if not 0 <= code < len(OCCUPATIONS_1M):
            expected = f"expected a code in 0..{len(OCCUPATIONS_1M) - 1}"
            raise _bad_line(file, number, f"{expected}, got {code}", "Occupation")
        rows.append((user_id, age, record["Gender"], OCCUPATIONS_1M[code], record["Zip-code"][:1] or None))
    return _users_frame(rows)


def _poster_paths(item_ids: pl.Series, posters: str | Path | None, root: Path) -> pl.Series:
    """`image` values: the poster path, relative to root when it lies inside, else absolute; null if none."""
    folder = root / "posters" if posters is None else Path(posters).resolve()
    if posters is not None and not folder.is_dir():
        raise DataError(f"{folder}: no such posters folder, expected a folder of <movie id>.jpg")
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    prefix = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else folder.as_posix()
    paths = [f"{prefix}/{item_id}.jpg" if f"{item_id}.jpg" in present else None for item_id in item_ids]
    return pl.Series("image", paths, dtype=pl.String)
