"""The canonical tables every reader produces and every consumer reads, and their folder on disk.

A dataset folder holds `interactions.parquet`, `items.parquet`, optional `users.parquet`, `manifest.json`,
`images/` and, after an import, `report.json`. It is written into a temporary sibling and renamed into
place, so a crash never leaves a half-written dataset, and it carries its own images, so it can be moved as
one folder. Interactions may be held as a polars LazyFrame (a plan over files larger than memory: what the
readers return, and `Dataset.scan`); items and users are always in memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from tandemrec.data.errors import DataError
from tandemrec.data.intake import Intake, helper_columns
from tandemrec.data.report import ValidationReport
from tandemrec.io.atomic import disk_error, replace_folder

USER_ID = "user_id"
TIMESTAMP = pl.Datetime("us", "UTC")
INTERACTION_COLUMNS: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "timestamp": TIMESTAMP,
    "event": pl.String(),
    "value": pl.Float64(),
}
ITEM_COLUMNS: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "text": pl.String(),
    "category": pl.String(),
    "image": pl.String(),
}
USER_COLUMNS: dict[str, pl.DataType] = {USER_ID: pl.String()}
# Timestamps outside [earliest, latest) are refused: they are almost always a unit mistake (milliseconds
# read as seconds land in the 50th millennium, seconds read as milliseconds in January 1970).
TIME_RANGE = (datetime(1980, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
# Columns a table may lack: they are added, all null.
OPTIONAL_COLUMNS = frozenset({"value", "category", "image"})
FORMAT_VERSION = 1
IMAGES_DIR = "images"
_FILES = {"interactions": "interactions.parquet", "items": "items.parquet", "users": "users.parquet"}
REPORT_FILE = "report.json"

Frame = pl.DataFrame | pl.LazyFrame


def require_columns(frame: Frame, table: str, columns: dict[str, pl.DataType]) -> None:
    """Raise a DataError for the first expected column (not optional) that the frame lacks."""
    present = frame.collect_schema().names()
    for column in columns:
        if column not in present and column not in OPTIONAL_COLUMNS:
            raise DataError(
                f"{table}: missing column {column!r} (expected columns: {', '.join(columns)})"
            )


def conform_table(
    frame: Frame, table: str, columns: dict[str, pl.DataType], extras_as_string: bool
) -> Frame:
    """Return the frame (or plan) with the expected columns first, in their canonical types.

    Types are only cast when no information can be lost or invented (integer ids to String, naive or
    other-zone datetimes to UTC, integers to Float64); anything else is a DataError. Extra columns of
    items and users are categorical features, so they become String; a reader's helper columns
    (`__...`) are left as they are, for validation.
    """
    require_columns(frame, table, columns)
    schema = frame.collect_schema()
    exprs = []
    for column, target in columns.items():
        if column in schema:
            exprs.append(_cast(schema[column], target, table, column))
        else:
            exprs.append(pl.lit(None, dtype=target).alias(column))
    for column, dtype in schema.items():
        if column not in columns:
            if extras_as_string and dtype != pl.String and not helper_columns([column]):
                if dtype.is_nested() or dtype == pl.Object:
                    raise DataError.at(
                        table, f"has type {dtype}, expected a categorical (String) column", column=column
                    )
                exprs.append(pl.col(column).cast(pl.String))
            else:
                exprs.append(pl.col(column))
    return frame.select(exprs)


def _cast(dtype: pl.DataType, target: pl.DataType, table: str, column: str) -> pl.Expr:
    col = pl.col(column)
    if dtype == target:
        return col
    if dtype == pl.Null:
        return col.cast(target)
    if target == pl.String and (dtype.is_integer() or dtype.base_type() in (pl.Categorical, pl.Enum)):
        return col.cast(pl.String)
    if target == pl.Float64 and dtype.is_numeric():
        return col.cast(pl.Float64)
    if target == TIMESTAMP and dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if target == TIMESTAMP and isinstance(dtype, pl.Datetime):
        # A naive datetime is taken to be UTC already; an aware one is converted.
        if dtype.time_zone is None:
            return col.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    raise DataError.at(table, f"has type {dtype}, expected {target} (no safe conversion)", column=column)


@dataclass(eq=False)  # frames do not compare to a bool; compare the tables themselves
class Dataset:
    """Interactions, items and optional users in the canonical schema, plus where their images live.

    `intake` is set by readers: where each table's rows came from and the refusals their format needs;
    `validate` applies and clears it.
    """

    interactions: Frame
    items: pl.DataFrame
    users: pl.DataFrame | None = None
    root: Path | None = None
    name: str = "dataset"
    intake: Intake | None = None
    # Folders besides `root` that the user named for images (MovieLens `--posters DIR`); an image path of
    # the data that resolves anywhere else is refused, never opened.
    image_roots: tuple[Path, ...] = ()

    def image_path(self, relative: str) -> Path:
        """Where an item's `image` value points: relative to `root`, or as given when there is no root."""
        return (self.root or Path()) / relative

    def image_folders(self) -> list[Path] | None:
        """The folders images may be read from (None: no source folder, nothing to confine to)."""
        return None if self.root is None else [self.root, *self.image_roots]

    def user_attributes(self) -> list[str]:
        """The categorical user columns (sorted), the user tower's feature names besides the id."""
        if self.users is None:
            return []
        return sorted(c for c in self.users.columns if c != USER_ID)

    def conformed(self) -> Dataset:
        """A copy with every table in its canonical schema (DataError when a column is missing or unfit)."""
        return Dataset(
            interactions=conform_table(self.interactions, "interactions", INTERACTION_COLUMNS, False),
            items=conform_table(self.items, "items", ITEM_COLUMNS, True),
            users=None if self.users is None else conform_table(self.users, "users", USER_COLUMNS, True),
            root=self.root,
            name=self.name,
            intake=self.intake,
            image_roots=self.image_roots,
        )

    def collect(self) -> Dataset:
        """The same dataset with its interactions in memory (a no-op when they already are)."""
        if isinstance(self.interactions, pl.DataFrame):
            return self
        return dataclasses.replace(self, interactions=self.interactions.collect(engine="streaming"))

    def save(self, dest: str | Path, report: ValidationReport | None = None) -> Path:
        """Write the dataset folder at `dest` atomically and return its path.

        Images are copied (hard-linked when the file system allows) into `dest/images/` and the `image`
        column is rewritten to point there. Interactions held as a plan are streamed to Parquet, never
        whole in memory. `report` (a validation report) gets the totals of the written tables and goes
        to `report.json`; the rows of each table as written (from the Parquet footers) must be the rows
        the report kept, or nothing is published (a RuntimeError: the accounting has a bug). An existing
        `dest` is replaced only once the new folder is complete, and only if it is a dataset folder, so a
        typo cannot wipe an unrelated directory. A failed write (full disk, read-only folder) leaves no
        partial output and is an OSError naming `dest`.
        """
        dest = Path(dest).absolute()
        _check_replaceable(dest)
        data = self.conformed()
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex}")
        dest.parent.mkdir(parents=True, exist_ok=True)  # its OSError names the folder it could not make
        tmp.mkdir()
        try:
            items = data.items.with_columns(pl.col("image").replace(self._gather_images(data.items, tmp)))
            tables = {"interactions": data.interactions, "items": items, "users": data.users}
            for table, frame in tables.items():
                if frame is not None:
                    frame = frame.drop(helper_columns(frame.collect_schema().names()))
                    if isinstance(frame, pl.LazyFrame):
                        frame.sink_parquet(tmp / _FILES[table], engine="streaming")
                    else:
                        frame.write_parquet(tmp / _FILES[table])
            written = _write_manifest(tmp, self.name)
            if report is not None:
                _check_accounting(dest, report, written)
                report.totals = _totals(tmp, items)
                (tmp / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
            replace_folder(tmp, dest)
        except (OSError, pl.exceptions.PolarsError) as error:
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(error, dest, tmp) or error  # the disk's refusal names dest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def _gather_images(self, items: pl.DataFrame, folder: Path) -> dict[str, str]:
        """Link each distinct image file into `folder/images/`; map old `image` values to the new ones.

        A file that does not exist keeps its value: counting missing images is the content loader's job.
        """
        renamed: dict[str, str] = {}
        by_source: dict[str, str] = {}
        for value in items["image"].drop_nulls().unique(maintain_order=True).to_list():
            source = self.image_path(value)
            if not source.is_file():
                continue
            key = os.path.realpath(source)
            if key not in by_source:
                target = _free_name(folder / IMAGES_DIR, source.name)
                target.parent.mkdir(exist_ok=True)
                _link_or_copy(source, target)
                by_source[key] = f"{IMAGES_DIR}/{target.name}"
            renamed[value] = by_source[key]
        return renamed

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a dataset folder into memory, conforming every table to the canonical schema."""
        return cls._read(path, lazy=False)

    @classmethod
    def scan(cls, path: str | Path) -> Dataset:
        """Like `load`, but the interactions stay a LazyFrame over the Parquet file (out of core)."""
        return cls._read(path, lazy=True)

    @classmethod
    def _read(cls, path: str | Path, lazy: bool) -> Dataset:
        folder = Path(path)
        if not folder.exists():
            raise DataError(f"{folder}: no such dataset folder")
        if not folder.is_dir():
            raise DataError(f"{folder}: is a file, expected a dataset folder")
        manifest = _read_manifest(folder)
        frames: dict[str, pl.DataFrame | None] = {}
        for table, file in _FILES.items():
            file_path = folder / file
            if not file_path.is_file():
                if table != "users":
                    raise DataError(f"{folder}: not a dataset folder, {file} is missing")
                frames[table] = None
                continue
            try:
                if lazy and table == "interactions":
                    frames[table] = pl.scan_parquet(file_path)
                    frames[table].collect_schema()
                else:
                    frames[table] = pl.read_parquet(file_path)
            except (OSError, pl.exceptions.PolarsError) as error:
                raise DataError(f"{file_path}: unreadable Parquet file ({error})") from error
        raw = cls(
            interactions=frames["interactions"],
            items=frames["items"],
            users=frames["users"],
            root=folder.resolve(),
            name=manifest.get("name", folder.name),
        )
        return raw.conformed()


def _check_replaceable(dest: Path) -> None:
    if not dest.exists():
        return
    if not dest.is_dir():
        raise DataError(f"{dest}: exists and is not a folder; refusing to replace it with a dataset")
    if any(dest.iterdir()) and not (dest / "manifest.json").is_file():
        raise DataError(f"{dest}: is a non-empty folder without manifest.json; refusing to replace it")


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    counter = 1
    while target.exists():
        target = folder / f"{Path(name).stem}-{counter}{Path(name).suffix}"
        counter += 1
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_accounting(dest: Path, report: ValidationReport, written: dict[str, dict]) -> None:
    """Rows in = kept + refused for every table, and the rows written = the rows kept: a second count,
    from what is on disk, of the one the report gives. A mismatch is a bug, never the data's fault."""
    problems = [] if report.balanced() else [f"rows in != kept + refused ({report.to_dict()})"]
    for table, kept in report.rows_out.items():
        rows = written.get(table, {}).get("rows")
        if table in _FILES and rows != kept:
            problems.append(f"{table}: {rows} rows written, {kept} kept by validation")
    if problems:
        raise RuntimeError(
            f"{dest}: the import's accounting does not add up (a bug; nothing written): {'; '.join(problems)}"
        )


def _write_manifest(folder: Path, name: str) -> dict[str, dict]:
    """Rows and columns of each table as written (read back from the Parquet footers: no data read);
    returns the tables' entry."""
    tables = {}
    for table, file in _FILES.items():
        if (folder / file).is_file():
            scan = pl.scan_parquet(folder / file)
            rows = scan.select(pl.len()).collect().item()
            tables[table] = {"rows": rows, "columns": {c: str(t) for c, t in scan.collect_schema().items()}}
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tables": tables,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return tables


def _totals(folder: Path, items: pl.DataFrame) -> dict[str, int]:
    """What a written dataset holds: events, the users and items they involve, items with an image."""
    scan = pl.scan_parquet(folder / _FILES["interactions"])
    counts = scan.select(
        pl.len().alias("interactions"),
        pl.col(USER_ID).n_unique().alias("users"),
        pl.col("item_id").n_unique().alias("items with interactions"),
    ).collect(engine="streaming")
    totals = {name: int(value) for name, value in counts.row(0, named=True).items()}
    totals.update({"items": items.height, "items with image": int(items["image"].is_not_null().sum())})
    return totals


def _read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable manifest ({error})") from error
    version = manifest.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"{path}: format_version {version!r}, this code reads up to {FORMAT_VERSION}")
    return manifest
