"""The run config: one TOML file with [data], [model], [train] and [eval]; any key overridable.

Every value is checked once, when its section's dataclass is built (see tandemrec/config_schema.py: `setting`),
so a file, a `--set` override and a Python caller get the same `ConfigError`, naming the key path.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tandemrec.config_schema import check_fields, from_dict, setting, to_dict
from tandemrec.data.domains import DomainConfig
from tandemrec.data.split import SplitConfig
from tandemrec.data.synthetic import SyntheticShopConfig
from tandemrec.errors import ConfigError, MissingFileError
from tandemrec.retrieval.config import IndexConfig
from tandemrec.sources import SOURCES
from tandemrec.towers.config import TwoTowerConfig
from tandemrec.training.behaviour_config import BehaviourConfig
from tandemrec.training.config import TrainConfig


@dataclass
class DataConfig:
    # synthetic | dataset (a canonical dataset folder) | a format: movielens, amazon, hm, retailrocket, generic
    source: str = setting("synthetic", one_of=SOURCES)
    path: str | None = None  # the source's folder; for synthetic, where to write the shop (default: in the run)
    synthetic: dict[str, Any] = field(default_factory=dict)  # SyntheticShopConfig fields
    mapping: dict[str, Any] | None = None  # generic: [data.mapping.interactions] etc. (see data/readers/mapping.py)
    events: list[str] | None = None  # keep only these event types (None: all)
    split: SplitConfig = field(default_factory=SplitConfig)
    domains: DomainConfig = field(default_factory=DomainConfig)  # which events are source, which target

    def __post_init__(self) -> None:
        check_fields(self)
        from_dict(SyntheticShopConfig, self.synthetic, "synthetic.")  # its keys, as the job will use them


@dataclass
class EvalConfig:
    ks: list[int] = setting(factory=lambda: [10, 50], ge=1)  # the cut-offs of the ranking metrics
    examples: int = setting(3, ge=0)  # users whose recommendations the demo prints

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.ks:
            raise ConfigError("config key 'ks' must be a non-empty list of integers, each >= 1, got []", ("ks",))


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)

    def __post_init__(self) -> None:
        check_fields(self)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML config (None: the embedded demo default) and apply `section.key=value` overrides.

    A config may start with `extends = "demo"` (the embedded default) or `extends = "other.toml"`
    (relative to the file): it then holds only what differs from that base.
    """
    raw = _read_toml(path)
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw)


def _read_toml(path: str | Path | None, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The TOML file at `path` (None or "demo": the embedded default) merged over what it extends;
    `chain` holds the files that extend it, so that a cycle is an error rather than a hang."""
    if path is None or path == "demo":
        data = resources.files("tandemrec.configs").joinpath("demo.toml").read_bytes()
        source = "the embedded demo config"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' {'is not a file' if path.exists() else 'does not exist'}")
        source = str(path)
        if source in chain:
            raise ConfigError(f"config file '{source}' extends itself (through {list(chain)})")
        data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from None
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{source}: extends must be \"demo\" or the path of a TOML file, got {base!r}")
    try:
        return _merge(_read_toml(base if base == "demo" else Path(path).parent / base, (*chain, source)), raw)
    except ConfigError as err:
        raise ConfigError(f"{source}: extends {base!r}: {err}") from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def read_run_config(path: str | Path) -> RunConfig:
    """The resolved config a run saved (JSON, table sizes filled in)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"run config '{path}' does not exist: is this a run folder?")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"run config '{path}' is not valid JSON: {err}") from None
    try:
        return from_dict(RunConfig, raw)
    except ConfigError as err:
        raise ConfigError(f"run config '{path}': {err}") from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' must look like section.key=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
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
            raise ConfigError(f"override '{item}': only {name}.KEY=VALUE applies here")
        _apply_override(raw, item)
    return from_dict(type(section), raw[name], f"{name}.")
