"""Fitting the behaviour outcome scorers (see towers/outcome_model.py) and the bias baseline.

Candidates are fitted on the training pairs; the validation pairs are split in two halves by user: the
first fits the isotonic calibration, the second chooses the kind (lowest log-loss after calibration), so
neither the calibration nor the choice is made on the data that scores it. The test part is never
looked at here.
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl

from tandemrec.retrieval.metrics import log_loss
from tandemrec.towers.outcome_model import KINDS, Calibration, Scorer

log = logging.getLogger(__name__)


def fit_calibration(raw: np.ndarray, labels: np.ndarray) -> Calibration:
    """Isotonic regression of the labels on the raw scores, kept as its breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, labels)
    return Calibration(iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist())


def _fit_gbdt(x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    import lightgbm

    model = lightgbm.LGBMClassifier(
        n_estimators=300, learning_rate=0.03, num_leaves=31, min_child_samples=50, subsample=0.8,
        subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0, random_state=seed, n_jobs=1, verbose=-1,
    ).fit(x, y)
    return {"model": model.booster_.model_to_string()}


def _fit_logistic(x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    known = (~np.isnan(x)).sum(axis=0)
    # A column with no values at all (no ratings in a shop) gets mean 0: nanmean would warn on it.
    mean = np.where(known > 0, np.nansum(x, axis=0) / np.maximum(known, 1), 0.0)
    filled = np.where(np.isnan(x), mean, x)
    scale = filled.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((filled - mean) / scale, y)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0])}


FITTERS = {"gbdt": _fit_gbdt, "logistic": _fit_logistic}


def available_kinds(kinds: list[str]) -> tuple[str, ...]:
    """`kinds` less "gbdt" when LightGBM (the optional extra `tandemrec[behaviour]`) is not installed."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        log.warning("lightgbm is not installed (pip install 'tandemrec[behaviour]'): gbdt is left out")
        return tuple(k for k in kinds if k != "gbdt")
    return tuple(kinds)


def fit_scorer(
    kind: str, features: list[str], x: np.ndarray, y: np.ndarray, x_cal: np.ndarray, y_cal: np.ndarray, seed: int
) -> Scorer:
    """A `kind` scorer fitted on (x, y) and calibrated on (x_cal, y_cal)."""
    uncalibrated = Scorer(kind, features, FITTERS[kind](x, y.astype(np.int64), seed), Calibration([0.0, 1.0], [0.0, 1.0]))
    uncalibrated.calibration = fit_calibration(uncalibrated.raw(x_cal), y_cal)
    return uncalibrated


def choose_scorer(
    features: list[str],
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    valid_half: np.ndarray,
    seed: int,
    kinds: tuple[str, ...] = KINDS,
) -> tuple[Scorer, dict[str, float]]:
    """Fit each kind on `train`, calibrate on the valid rows with `valid_half` False, score on the others;
    returns the kind with the lowest calibrated log-loss and every kind's validation log-loss."""
    x_valid, y_valid = valid
    fitted, losses = {}, {}
    for kind in kinds:
        fitted[kind] = fit_scorer(kind, features, *train, x_valid[~valid_half], y_valid[~valid_half], seed)
        losses[kind] = log_loss(fitted[kind].predict(x_valid[valid_half]), y_valid[valid_half])
    best = min(losses, key=losses.get)
    return fitted[best], losses


def user_halves(users: np.ndarray, seed: int) -> np.ndarray:
    """A seeded half of the users (True), by user: one user's pairs never sit on both sides."""
    distinct = np.unique(users)
    chosen = np.random.default_rng(seed).permutation(distinct)[: len(distinct) // 2]
    return np.isin(users, chosen)


def bias_baseline(train: pl.DataFrame, pairs: pl.DataFrame, column: str, shrink: float = 10.0) -> np.ndarray:
    """The user + item bias model: the item's mean `column` over `train` shrunk toward the global mean
    with `shrink` pseudo-events, plus the user's mean offset from those item means in `train`; an unseen
    item or user contributes the global mean or no offset. `column`: the rating (`value`) where there is
    one, else the outcome. One score per row of `pairs` (user_id, item_id)."""
    known = train.filter(pl.col(column).is_not_null())
    mean = float(known[column].mean())
    items = known.group_by("item_id").agg(
        ((pl.col(column).sum() + shrink * mean) / (pl.len() + shrink)).alias("item_mean")
    )
    users = (
        known.join(items, on="item_id")
        .group_by("user_id")
        .agg((pl.col(column) - pl.col("item_mean")).mean().alias("user_offset"))
    )
    scored = (
        pairs.select("user_id", "item_id")
        .join(items, on="item_id", how="left", maintain_order="left")
        .join(users, on="user_id", how="left", maintain_order="left")
    )
    return (scored["item_mean"].fill_null(mean) + scored["user_offset"].fill_null(0.0)).to_numpy()
