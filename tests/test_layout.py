"""Small files with one job each: no library module grows past MAX_LINES (split it by concept instead)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_FOLDERS = ("tandemrec", "data", "towers", "training", "retrieval")
MAX_LINES = 400


def test_no_library_module_is_over_the_line_limit() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for folder in LIBRARY_FOLDERS
        for path in (ROOT / folder).rglob("*.py")
    }
    assert len(sizes) > 100  # the folders were found
    over = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"
