"""The user's tandemrec cache: results that depend only on their inputs, kept across jobs and runs.

Frozen-backbone outputs (training/frozen_features.py) and the baselines' tuned settings
(retrieval/baseline_split.py) live here, each in a folder of its own, under names that hash everything
their content depends on. The root is `$TANDEMREC_CACHE`, else `$XDG_CACHE_HOME/tandemrec`, else
`~/.cache/tandemrec` (as `HF_HOME` is for model hubs); where it cannot be written, results are computed
and not kept.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where tandemrec keeps its cache (see the module docstring)."""
    if os.environ.get("TANDEMREC_CACHE"):
        return Path(os.environ["TANDEMREC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tandemrec"


def cache_folder(name: str) -> Path | None:
    """The cache's folder `name`, created; None (with a warning) where it cannot be written."""
    folder = cache_root() / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        log.warning("cache folder %s cannot be written (%s): results are computed, not kept", folder, error)
        return None
    return folder if os.access(folder, os.W_OK) else None
