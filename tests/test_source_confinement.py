"""Image paths come from the data: one that leaves the source folder (`../`, an absolute path, a symlink
out) or names something other than a regular file (a named pipe, a directory) is refused with its
reason, counted, and never opened; its item is kept without the image."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from readers_fixtures import jpeg, write
from tandemrec.data import images
from tandemrec.data.content import load_images
from tandemrec.data.images import NOT_REGULAR, OUTSIDE, image_problem
from tandemrec.data.importer import import_dataset

MAPPING = {
    "interactions": {"file": "events.csv", "user_id": "user", "item_id": "item", "timestamp": "ts"},
    "items": {"file": "items.csv", "item_id": "item", "title": "name", "image": "picture"},
}
# item -> (its image value, the reason it is refused or None); {outside} is filled in by `shop`.
PICTURES = {
    "inside": ("img/inside.jpg", None),
    "dotdot": ("../outside.jpg", OUTSIDE),
    "absolute": ("{outside}", OUTSIDE),
    "symlink": ("img/link.jpg", OUTSIDE),
    "fifo": ("img/pipe.jpg", NOT_REGULAR),
    "folder": ("img/folder.jpg", NOT_REGULAR),
}


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A source folder `shop/` whose items name each kind of image path; a real image lies outside it."""
    outside = jpeg(tmp_path / "outside.jpg", "blue")
    src = tmp_path / "shop"
    jpeg(src / "img" / "inside.jpg")
    (src / "img" / "link.jpg").symlink_to(outside)
    os.mkfifo(src / "img" / "pipe.jpg")
    (src / "img" / "folder.jpg").mkdir()
    rows = "".join(f"{item},{item.title()},{picture.format(outside=outside)}\n" for item, (picture, _) in PICTURES.items())
    write(src / "items.csv", f"item,name,picture\n{rows}")
    write(src / "events.csv", "user,item,ts\n" + "".join(f"u1,{item},{1700000000 + i}\n" for i, item in enumerate(PICTURES)))
    return src


def within(seconds: float, work: Callable[[], Any], fifos: list[Path]) -> Any:
    """`work()`, failing (not hanging) when it takes longer; a reader stuck on a FIFO is then released."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as error:  # re-raised below, in the test's thread
            result.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:  # a writer end releases an open() blocked on the pipe
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still running after {seconds} s: an image path was opened without checking it")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real paths images.open_image opens, in order."""
    paths: list[str] = []
    real_open = os.open

    def recording(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        paths.append(os.path.realpath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(images.os, "open", recording)
    return paths


def test_image_problem_names_each_refusal_inside_the_source_folder(shop: Path, opened: list[str]) -> None:
    outside = shop.parent / "outside.jpg"
    problems = {
        item: within(30, lambda: image_problem(shop / picture.format(outside=outside), [shop]), [shop / "img" / "pipe.jpg"])
        for item, (picture, _) in PICTURES.items()
    }
    assert problems == {item: reason for item, (_, reason) in PICTURES.items()}
    assert opened == [str((shop / "img" / "inside.jpg").resolve())]  # nothing refused was opened


def test_decoding_refuses_each_path_outside_the_root_or_not_a_file(shop: Path, opened: list[str]) -> None:
    outside = shop.parent / "outside.jpg"
    paths = [picture.format(outside=outside) for picture, _ in PICTURES.values()]
    pixels, ok, problems = within(30, lambda: load_images(paths, shop, 8), [shop / "img" / "pipe.jpg"])
    assert ok.tolist() == [True, False, False, False, False, False]
    assert pixels[0].any() and not pixels[1:].any()
    assert problems == {OUTSIDE: 3, NOT_REGULAR: 2}
    assert opened == [str((shop / "img" / "inside.jpg").resolve())]


def test_import_refuses_pipes_and_folders_keeps_their_items_and_counts_them(shop: Path, tmp_path: Path) -> None:
    dest, report = within(60, lambda: import_dataset("generic", shop, tmp_path / "dataset", mapping=MAPPING), [shop / "img" / "pipe.jpg"])
    assert report.repaired["items"][NOT_REGULAR] == 2
    assert report.rows_in["items"] == report.rows_out["items"] == len(PICTURES)  # no item is lost
    assert report.balanced()
    copied = {p.name for p in (dest / "images").iterdir()}
    assert "inside.jpg" in copied and not copied & {"pipe.jpg", "folder.jpg"}


def test_import_refuses_images_outside_the_source_folder_and_never_copies_them(
    shop: Path, tmp_path: Path, opened: list[str]
) -> None:
    dest, report = within(60, lambda: import_dataset("generic", shop, tmp_path / "dataset", mapping=MAPPING), [shop / "img" / "pipe.jpg"])
    assert report.repaired["items"] == {OUTSIDE: 3, NOT_REGULAR: 2}
    assert report.images == {"with image": 1, "without image": len(PICTURES) - 1}
    assert report.rows_out["items"] == len(PICTURES) and report.balanced()
    assert [p.name for p in (dest / "images").iterdir()] == ["inside.jpg"]
    assert str((shop.parent / "outside.jpg").resolve()) not in opened
