"""The doctor's findings and how they read: versions, kernels, encoders, notes, and one problem per part."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class Problem:
    """One thing wrong with the install, with the command that fixes it."""

    what: str  # the package or part at fault, e.g. "fbgemm", "torchrec"
    why: str
    fix: str  # the command that fixes it

    def line(self) -> str:
        """One line the user can act on: what is broken, why, and the command to run."""
        return f"{self.what}: {self.why}. Fix: {self.fix}"


@dataclass
class Report:
    """Everything the checks found, in (label, value) rows per section, ready for `text()`."""

    versions: list[tuple[str, str]] = field(default_factory=list)
    kernels: list[tuple[str, str]] = field(default_factory=list)
    encoders: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, what: str, why: str, fix: str) -> None:
        """One problem per part: the first cause found is the one to fix."""
        if all(p.what != what for p in self.problems):
            self.problems.append(Problem(what, why, fix))

    def text(self) -> str:
        """The whole report for stdout: aligned sections, then the problems with their fixes (or 'ok')."""
        lines = [f"tandemrec doctor: {sys.executable}"]
        for title, rows in (("versions", self.versions), ("kernels", self.kernels), ("encoders (offline)", self.encoders)):
            width = max((len(label) for label, _ in rows), default=0)
            lines += ["", title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)]
        if self.notes:
            lines += ["", "notes", *(f"  {note}" for note in self.notes)]
        lines.append("")
        if self.problems:
            lines.append(f"problems ({len(self.problems)}), one fix each:")
            lines += [f"  {p.line()}" for p in self.problems]
        else:
            lines.append("ok: no problems found")
        return "\n".join(lines)

    def summary(self) -> str | None:
        """The last line for stderr naming the parts at fault, so a script sees them without the report; None when
        the install is good."""
        if not self.problems:
            return None
        return f"tandemrec doctor: {len(self.problems)} problem(s): {', '.join(p.what for p in self.problems)}"
