"""The behaviour outcome model: calibrated classifiers over features the towers do not carry.

Two scorers, each a fitted classifier plus an isotonic calibration map:
- `conditional`: P(outcome | the user interacts with the item), trained on observed pairs only (the
  shop's question: given that the user touches it, will they buy it / rate it highly?);
- `relevance`: P(interaction | a retrieved candidate), trained on observed pairs against the retriever's
  own top candidates that the user did not touch (what a rerank sees).
Their product is P(outcome) for a candidate, what `recommend(rerank=...)` orders by.

Saved as JSON only (no pickle): a LightGBM model as its text dump, a logistic regression as its arrays,
an isotonic map as its breakpoints. The file records the towers' model hash and the feature list, and
`OutcomeModel.load` refuses a model made for other towers or other features.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tandemrec.errors import MissingFileError
from tandemrec.io.atomic import atomic_write_json
from tandemrec.towers.errors import EncoderLoadError

OUTCOME_MODEL = "outcome_model.json"
KINDS = ("gbdt", "logistic")


@dataclass
class Calibration:
    """A monotone map from raw scores to probabilities: linear between the breakpoints (x, y), flat beyond
    them; the isotonic regression of scikit-learn stored as its thresholds."""

    x: list[float]
    y: list[float]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=np.float64), self.x, self.y)


@dataclass
class Scorer:
    """A classifier (`kind`: gbdt or logistic) over `features` (names; see data/behaviour_features.py) with
    its calibration. `params`: gbdt {"model": LightGBM text dump}; logistic {"mean", "scale", "coef",
    "intercept"} over NaN-filled-with-mean standardised features."""

    kind: str
    features: list[str]
    params: dict[str, Any]
    calibration: Calibration

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EncoderLoadError(f"unknown outcome scorer kind {self.kind!r}; known: {list(KINDS)}")
        self._booster = None

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated scores of the (n, len(features)) matrix `x` (a probability, or a logit)."""
        if self.kind == "gbdt":
            if self._booster is None:
                import lightgbm  # optional extra: only a gbdt scorer needs it

                self._booster = lightgbm.Booster(model_str=self.params["model"])
            return self._booster.predict(x)
        mean = np.asarray(self.params["mean"])
        z = (np.where(np.isnan(x), mean, x) - mean) / np.asarray(self.params["scale"])
        return z @ np.asarray(self.params["coef"]) + float(self.params["intercept"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of `x`."""
        return self.calibration.apply(self.raw(x))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "features": self.features, "params": self.params,
                "calibration": {"x": self.calibration.x, "y": self.calibration.y}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scorer":
        return cls(d["kind"], list(d["features"]), d["params"], Calibration(**d["calibration"]))


@dataclass
class OutcomeModel:
    """P(`outcome`) for (user, item) pairs from their feature rows; see the module docstring."""

    outcome: str  # the output it predicts: an event type or "target"
    label: dict[str, Any]  # how the outcome is read from events: {"events": [...], "min_value": ...}
    features: list[str]
    settings: dict[str, Any]  # FeatureSettings as fitted (priors, shrinkage): serving computes the same
    model_hash: str
    conditional: Scorer
    relevance: Scorer
    summary: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(outcome), P(outcome | interaction)) of each feature row of `x` (columns: `features`)."""
        conditional = self.conditional.predict(x)
        return self.relevance.predict(x) * conditional, conditional

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / OUTCOME_MODEL, {
            "outcome": self.outcome, "label": self.label, "features": self.features, "settings": self.settings,
            "model_hash": self.model_hash, "conditional": self.conditional.to_dict(),
            "relevance": self.relevance.to_dict(), "summary": self.summary,
        })

    @classmethod
    def load(
        cls, folder: str | Path, expect_model_hash: str | None = None, expect_features: list[str] | None = None
    ) -> "OutcomeModel":
        """Read RUN/behaviour/outcome_model.json; refuse one fitted on other towers (model hash) or over
        other features than `expect_features` (the features this code computes)."""
        path = Path(folder) / OUTCOME_MODEL
        if not path.is_file():
            raise MissingFileError(f"behaviour folder '{folder}' has no {OUTCOME_MODEL}")
        try:
            d = json.loads(path.read_text())
            model = cls(
                d["outcome"], d["label"], list(d["features"]), d["settings"], d["model_hash"],
                Scorer.from_dict(d["conditional"]), Scorer.from_dict(d["relevance"]), d.get("summary", {}),
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise EncoderLoadError(f"outcome model '{path}' is not valid: {err}") from err
        if expect_model_hash is not None and model.model_hash != expect_model_hash:
            raise EncoderLoadError(
                f"outcome model '{path}' was fitted on other towers (model hash {model.model_hash[:12]}, the run's "
                f"model is {expect_model_hash[:12]}): refit it with `tandemrec behaviour RUN`"
            )
        if expect_features is not None and model.features != list(expect_features):
            raise EncoderLoadError(
                f"outcome model '{path}' uses features {model.features}, this version computes "
                f"{list(expect_features)}: refit it with `tandemrec behaviour RUN`"
            )
        return model


def has_outcome_model(folder: str | Path) -> bool:
    return (Path(folder) / OUTCOME_MODEL).is_file()
