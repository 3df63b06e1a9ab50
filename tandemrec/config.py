"""The run config: one TOML file with [data], [model], [train] and [eval]; any key overridable."""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tandemrec.data.domains import DomainConfig
from tandemrec.data.split import SplitConfig
from tandemrec.retrieval.config import IndexConfig
from tandemrec.towers.config import TwoTowerConfig, from_dict, to_dict
from tandemrec.training.config import TrainConfig
from tandemrec.training.behaviour_config import BehaviourConfig


@dataclass
class DataConfig:
    # synthetic | dataset (a canonical dataset folder) | a format: movielens, amazon, hm, retailrocket, generic
    source: str = "synthetic"
    path: str | None = None  # the source's folder; for synthetic, where to write the shop (default: in the run)
    synthetic: dict[str, Any] = field(default_factory=dict)  # SyntheticShopConfig fields
    mapping: dict[str, Any] | None = None  # generic: [data.mapping.interactions] etc. (see data/readers/mapping.py)
    events: list[str] | None = None  # keep only these event types (None: all)
    split: SplitConfig = field(default_factory=SplitConfig)
    domains: DomainConfig = field(default_factory=DomainConfig)  # which events are source, which target


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [10, 50])
    examples: int = 3  # users whose recommendations the demo prints


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML config (None: the embedded demo default) and apply `section.key=value` overrides.

    A config may start with `extends = "demo"` (the embedded default) or `extends = "other.toml"`
    (relative to the file): it then holds only what differs from that base.
    """
    raw = _read_toml(path)
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw)


def _read_toml(path: str | Path | None) -> dict[str, Any]:
    if path is None or path == "demo":
        text = resources.files("tandemrec.configs").joinpath("demo.toml").read_text()
        source = "the embedded demo config"
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file '{path}' does not exist")
        text, source = path.read_text(), str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from err
    base = raw.pop("extends", None)
    if base is None:
        return raw
    return _merge(_read_toml(base if base == "demo" else Path(path).parent / base), raw)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def read_run_config(path: str | Path) -> RunConfig:
    """The resolved config a run saved (JSON, table sizes filled in)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run config '{path}' does not exist: is this a run folder?")
    return from_dict(RunConfig, json.loads(path.read_text()))


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override '{item}' must look like section.key=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override '{item}': '{part}' is not a section")
    try:
        node[leaf] = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        node[leaf] = value.strip()  # a bare string


def override_section(section: Any, name: str, overrides: list[str] | tuple[str, ...]) -> Any:
    """A copy of config section `name` (a dataclass, e.g. a run's saved [behaviour]) with `name.key=value`
    overrides applied; an override of another section is an error."""
    raw = {name: to_dict(section)}
    for item in overrides:
        if not item.strip().startswith(f"{name}."):
            raise ValueError(f"override '{item}': only {name}.KEY=VALUE applies here")
        _apply_override(raw, item)
    return from_dict(type(section), raw[name], f"{name}.")
