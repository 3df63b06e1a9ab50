"""The only places the doctor touches the environment (tests replace them): imports, installed distributions,
module folders, tandemrec's declared requirements; and how a failed probe reads in one line."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
from pathlib import Path
from typing import Any


def import_quietly(name: str) -> Any:
    """Import a module quietly: a broken fbgemm logs its load errors at ERROR, the doctor reports them once."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        return importlib.import_module(name)
    finally:
        logging.disable(previous)


def dist_version(name: str) -> str | None:
    """The installed version of a distribution, None when absent: what pip installed, not what imports."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def module_folder(name: str) -> Path | None:
    """Where a top-level package lies, found without importing it (None: not installed), so a package that
    crashes on import can still be inspected."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def declared_requirements() -> list[str]:
    """tandemrec's own requirement strings (with extras' markers): the ranges the install must meet."""
    try:
        return importlib.metadata.requires("tandemrec") or []
    except importlib.metadata.PackageNotFoundError:
        return []


def short_error(err: BaseException) -> str:
    """The error in one line, its root cause first: torch wraps a missing library ("libnvidia-ml.so.1: cannot
    open shared object file") in "Could not load this library: .../fbgemm_gpu_py.so"."""
    root = err
    while (root.__cause__ or root.__context__) is not None and root is not (root.__cause__ or root.__context__):
        root = root.__cause__ or root.__context__
    parts = [str(root), str(err)] if root is not err and str(root) not in str(err) else [str(err)]
    text = " ".join("; ".join(parts).split()) or type(err).__name__
    return text if len(text) <= 240 else text[:237] + "..."
