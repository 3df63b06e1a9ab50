"""Typed config fields, checked once where a config dataclass is built: the one check every config
section of a run (data, towers, training, retrieval, behaviour) goes through.

Each config field is checked when its dataclass is built (`__post_init__` calls `check_fields`):
against its type hint, and against the constraint declared next to it with `setting(...)` (allowed
values, bounds). So a TOML file, a `--set` override and a Python caller all get the same `ConfigError`;
it names the key relative to the dataclass (`lr`), and `from_dict` gives it the path of the section
being built (`train.lr`). `to_dict` is the way back, for JSON.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tandemrec.errors import ConfigError

T = TypeVar("T")

_CONSTRAINT = "constraint"  # the key of a field's Constraint in its dataclass metadata
_BAD = object()  # what `_conform` returns for a value its field cannot hold


@dataclass(frozen=True)
class Constraint:
    """What a field's values must satisfy beyond their type: one of `one_of`, and within the bounds
    (`ge`/`gt` from below, `le`/`lt` from above). For a list or a table, each element must."""

    one_of: tuple[Any, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def allows(self, value: Any) -> bool:
        return (not self.one_of or value in self.one_of) and all(
            _TESTS[name](value, bound) for name, bound in self._bounds()
        )

    def describe(self) -> str:
        """'one of [...]', '>= 1', '> 0' or 'in [0, 1)'; '' when anything of the type goes."""
        if self.one_of:
            return f"one of {list(self.one_of)}"
        bounds = self._bounds()
        if [name[0] for name, _ in bounds] == ["g", "l"]:
            (low_name, low), (high_name, high) = bounds
            return f"in {'[' if low_name == 'ge' else '('}{low:g}, {high:g}{']' if high_name == 'le' else ')'}"
        return " and ".join(f"{_SYMBOLS[name]} {bound:g}" for name, bound in bounds)

    def _bounds(self) -> list[tuple[str, float]]:
        return [(name, getattr(self, name)) for name in _TESTS if getattr(self, name) is not None]


_TESTS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
# How an error names a value of each type: alone, and as the elements of a list or table.
_NOUNS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "booleans"),
}


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
    one_of: tuple[Any, ...] = (),
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field (`default`, or `factory` for a mutable default) with its constraint declared
    next to it, for `check_fields`: `epochs: int = setting(8, ge=1)`."""
    return field(
        default=default,
        default_factory=factory,
        metadata={_CONSTRAINT: Constraint(one_of=one_of, ge=ge, gt=gt, le=le, lt=lt)},
    )


def check_fields(config: Any) -> None:
    """Check every field of dataclass `config` against its type hint and declared constraint, and store
    an int given for a float field as a float; a ConfigError names the first field that fails.

    A bool is not an int, an int is a float, None only goes where the hint allows it (unset), and the
    elements of a list or the values of a table are checked one by one."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        constraint = f.metadata.get(_CONSTRAINT, Constraint())
        value = getattr(config, f.name)
        conformed = _conform(hints[f.name], value, constraint)
        if conformed is _BAD:
            raise ConfigError(
                f"config key '{f.name}' must be {_describe(hints[f.name], constraint)}, got {value!r}", (f.name,)
            )
        object.__setattr__(config, f.name, conformed)  # frozen dataclasses too


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _conform(hint: Any, value: Any, constraint: Constraint) -> Any:
    """`value` as a field typed `hint` holds it (an int becomes a float for a float), or _BAD."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None if type(None) in args else _BAD
        arms = (_conform(arm, value, constraint) for arm in args if arm is not type(None))
        return next((conformed for conformed in arms if conformed is not _BAD), _BAD)
    if origin is list:
        if not isinstance(value, list):
            return _BAD
        elements = [_conform(args[0], element, constraint) for element in value]
        return _BAD if any(e is _BAD for e in elements) else elements
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return _BAD
        values = {key: _conform(args[1], element, constraint) for key, element in value.items()}
        return _BAD if any(v is _BAD for v in values.values()) else values
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        return _BAD
    return value if constraint.allows(value) else _BAD


def _describe(hint: Any, constraint: Constraint) -> str:
    """What a field typed `hint` with `constraint` takes, as the error says it: 'an integer >= 1',
    'a list of integers, each >= 1', 'one of ['mean', 'cls']', 'a number in [0, 1) or unset'."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = " or ".join(_describe(arm, constraint) for arm in args if arm is not type(None))
        return f"{arms} or unset" if type(None) in args else arms
    rule = constraint.describe()
    if typing.get_origin(hint) in (list, dict):
        kind = "a list" if typing.get_origin(hint) is list else "a table"
        element = _NOUNS.get(args[-1], ("", ""))[1]
        return f"{kind}{f' of {element}' if element else ''}{f', each {rule}' if rule else ''}"
    if dataclasses.is_dataclass(hint):
        return f"a table of {hint.__name__} fields"
    if constraint.one_of:
        return rule
    noun = _NOUNS.get(hint, ("a value", ""))[0]
    return f"{noun} {rule}" if rule else noun


def to_dict(config: Any) -> dict[str, Any]:
    """Config dataclass `config` as nested dicts, for JSON: what `from_dict` reads back."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from nested dicts; every error (an unknown key, a value its field does not
    take) names the key path, `where` being the path of `cls` itself ("train.")."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        paths = tuple(f"{where}{key}" for key in unknown)
        raise ConfigError(f"unknown config key(s) {list(paths)}; {cls.__name__} takes {sorted(names)}", paths)
    kwargs = {}
    for key, value in data.items():
        target = _dataclass_in(hints[key])
        optional = type(None) in typing.get_args(hints[key])
        if target is not None and value is False and optional:
            value = None  # TOML has no null: `image = false` switches an optional part off
        elif target is not None and isinstance(value, dict):
            value = from_dict(target, value, f"{where}{key}.")
        elif target is not None and value is not None and not isinstance(value, target):
            raise ConfigError(
                f"config key '{where}{key}' must be a table of {target.__name__} fields"
                + (" (or false to switch it off)" if optional else "")
                + f", got {value!r}",
                (f"{where}{key}",),
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:  # raised by cls's own checks: its keys are relative to cls
        raise err.within(where) from None


def _dataclass_in(hint: Any) -> type | None:
    """The config dataclass a field typed `hint` holds (alone or in a union), so nested tables recurse."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None
