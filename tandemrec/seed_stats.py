"""Mean ± standard deviation over seeds, and when a difference between two such figures is noise.

One run says little: two seeds of one setting can differ by more than two settings do. The ablation and
the benchmark both report every figure this way and call a difference noise unless it clears twice the
larger of the two standard deviations.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

UNTESTED = "untested (1 seed)"


@dataclass(frozen=True)
class Stat:
    mean: float | None  # None: no seed has the figure
    std: float | None  # sample standard deviation (ddof=1); None with fewer than two values


def stat_of(values: Iterable[float | None]) -> Stat:
    """Over the values that exist: a block missing from one run's metrics must not zero the mean."""
    present = [v for v in values if v is not None]
    return Stat(
        statistics.fmean(present) if present else None,
        statistics.stdev(present) if len(present) > 1 else None,
    )


def difference(stat: Stat, reference: Stat, digits: int = 4) -> str:
    """`stat` against the reference: "noise" when |Δmean| < 2 × max(std), else the signed Δmean."""
    if stat.mean is None or reference.mean is None:
        return "-"
    if stat.std is None or reference.std is None:
        return UNTESTED
    delta = stat.mean - reference.mean
    return "noise" if abs(delta) < 2 * max(stat.std, reference.std) else f"{delta:+.{digits}f}"


def cell(stat: Stat, reference: Stat | None, digits: int) -> str:
    """'mean ± std', with the difference to `reference` in brackets where there is one to tell."""
    if stat.mean is None:
        return "-"
    text = f"{fmt(stat.mean, digits)} ± {fmt(stat.std, digits)}"
    told = "-" if reference is None else difference(stat, reference, digits)
    return text if told == "-" else f"{text} ({told})"


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
