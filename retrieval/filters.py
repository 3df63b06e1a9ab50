"""Which items a query may return: categories, an allow list and a deny list, combined with AND."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tandemrec.retrieval.errors import RetrievalError


@dataclass(frozen=True)
class ItemFilter:
    """`categories`: only items of these categories; `allow`: only these item ids; `deny`: never these.

    A field left None does not restrict. Searches still return k items whenever k items pass the filter.
    """

    categories: Sequence[str] | None = None
    allow: Sequence[str] | None = None
    deny: Sequence[str] | None = None

    def __post_init__(self) -> None:
        for name in ("categories", "allow", "deny"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise RetrievalError(f"filter.{name} must be a list of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))

    @property
    def restricts(self) -> bool:
        return any(v is not None for v in (self.categories, self.allow, self.deny))
