"""The accounting of an import or a validation: per table, rows in, rows kept, and why the others went.

Rows in = rows out + rows refused, for every table, always. Repaired rows are kept rows whose value was
changed (an image path that points nowhere is set to null, ...), counted by reason as well, so that a
user can see from `report.json` alone what happened to their data.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ValidationReport:
    """What validation kept, refused and repaired, per table (refused/repaired: table -> reason -> rows).

    `sources` names the file each table was read from, `images` counts the kept items with and without a
    usable image, and `totals` (set when the dataset is written) what the written folder holds.
    """

    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    refused: dict[str, dict[str, int]] = field(default_factory=dict)
    repaired: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def total_refused(self, table: str) -> int:
        return sum(self.refused.get(table, {}).values())

    def record(self, table: str, rows_in: int, refused: dict[str, int]) -> None:
        """Account one table: `rows_in` rows of which `refused` (reason -> rows) were refused."""
        self.rows_in[table] = rows_in
        self.refused[table] = dict(refused)
        self.rows_out[table] = rows_in - sum(refused.values())

    def add_repairs(self, table: str, repairs: dict[str, int]) -> None:
        counts = self.repaired.setdefault(table, {})
        for reason, rows in repairs.items():
            if rows:
                counts[reason] = counts.get(reason, 0) + rows

    def balanced(self) -> bool:
        """Rows in = rows out + refused for every table (the invariant tests and users can check)."""
        return all(self.rows_in[t] == self.rows_out[t] + self.total_refused(t) for t in self.rows_in)

    def to_dict(self) -> dict:
        return {
            "rows_in": dict(self.rows_in),
            "rows_out": dict(self.rows_out),
            "refused": {table: dict(reasons) for table, reasons in self.refused.items()},
            "repaired": {table: dict(reasons) for table, reasons in self.repaired.items() if reasons},
            "sources": dict(self.sources),
            "images": dict(self.images),
            "totals": dict(self.totals),
        }

    def summary(self) -> str:
        lines = []
        for table, rows_in in self.rows_in.items():
            line = f"{table}: {rows_in} rows in, {self.rows_out[table]} kept"
            if self.refused.get(table):
                line += f", {self.total_refused(table)} refused ({_detail(self.refused[table])})"
            if self.repaired.get(table):
                line += f"; repaired: {_detail(self.repaired[table])}"
            if table == "items" and self.images:
                line += f"; {self.images.get('with image', 0)} with an image"
            lines.append(line)
        if self.totals:
            t = self.totals
            lines.append(
                f"dataset: {t['interactions']:,} interactions by {t['users']:,} users on {t['items']:,} items "
                f"({t['items with interactions']:,} with interactions, {t['items with image']:,} with an image)"
            )
        return "\n".join(lines)


def _detail(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {count}" for reason, count in counts.items())
