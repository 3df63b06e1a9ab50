"""The one exception type of the data layer, so callers can tell bad input from bugs."""

from __future__ import annotations

from tandemrec.errors import TandemrecError


class DataError(TandemrecError, ValueError):
    """Bad input data. The message names the file or table, the row and column when known, and what
    was expected, so that the user can go and fix the source."""

    @classmethod
    def at(
        cls,
        source: str,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        row_label: str = "row",
    ) -> DataError:
        """An error located as ``source, row N, column 'c': problem``; row_label is "line" for text files."""
        where = [source]
        if row is not None:
            where.append(f"{row_label} {row}")
        if column is not None:
            where.append(f"column {column!r}")
        return cls(f"{', '.join(where)}: {problem}")
