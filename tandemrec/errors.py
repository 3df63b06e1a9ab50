"""The one error family: every error a user can fix derives from `TandemrecError`.

The CLI prints a `TandemrecError` as one line and exits 2; anything else is a bug and keeps its
traceback. Each part of the library has its own subclass (`DataError`, `RetrievalError`, ...), and each
also derives from the builtin a Python caller would expect (`ValueError` for bad values, `RuntimeError`
for a state that cannot go on), so `except ValueError` keeps working.
"""
from __future__ import annotations


class TandemrecError(Exception):
    """Bad input, config or state that the user can fix; the message names the culprit and what was expected."""


class ConfigError(TandemrecError, ValueError):
    """A config value of the wrong type or range, an unknown key, or an unreadable config file.

    `keys` are the key paths the message names, each quoted ('lr') before any value is: a config
    dataclass only knows its own field names, and the section building it (`from_dict`) puts its path
    in front with `within`.
    """

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.keys = keys

    def within(self, prefix: str) -> ConfigError:
        """This error with each of its key paths `k` named `prefix + k`."""
        message = str(self)
        for key in self.keys:
            message = message.replace(f"'{key}'", f"'{prefix}{key}'", 1)
        return ConfigError(message, tuple(prefix + key for key in self.keys))


class RunFolderError(TandemrecError, ValueError):
    """A run folder that is incomplete, not a folder, or in use by another job."""


class MissingFileError(TandemrecError, FileNotFoundError):
    """A file or folder that a job needs does not exist (a data path, a model's weights, a run's config.json)."""


class ArgumentError(TandemrecError, ValueError):
    """A job's or a command's argument outside what it takes (an unknown name, a flag that does not apply)."""
