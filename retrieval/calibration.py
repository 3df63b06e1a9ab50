"""Calibration metrics: does a predicted 30% happen 30% of the time?

Expected calibration error (ECE): the pairs are put in `bins` equal-width probability bins; per bin, the
gap between the mean prediction and the observed rate, weighted by the bin's share of pairs. The same
bins give the reliability curve of `plots/calibration.png`.
"""
from __future__ import annotations

import numpy as np


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Per non-empty bin: mean prediction, observed rate and pair count (bins [0, 1/b), ..., [1 - 1/b, 1])."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    filled = count > 0
    mean_p = np.bincount(which, weights=p, minlength=bins)[filled] / count[filled]
    rate = np.bincount(which, weights=y, minlength=bins)[filled] / count[filled]
    return {"predicted": mean_p.tolist(), "observed": rate.tolist(), "count": count[filled].astype(float).tolist()}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Sum over bins of (bin share) * |mean prediction - observed rate|; 0 for perfect calibration."""
    r = reliability(probabilities, labels, bins)
    count = np.asarray(r["count"])
    if count.sum() == 0:
        return 0.0
    gaps = np.abs(np.asarray(r["predicted"]) - np.asarray(r["observed"]))
    return float((count * gaps).sum() / count.sum())
