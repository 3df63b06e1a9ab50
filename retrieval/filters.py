"""Which items a query may return: categories, an allow list and a deny list, combined with AND."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tandemrec.retrieval import arguments


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
            what = "categories" if name == "categories" else "item ids"
            object.__setattr__(self, name, tuple(arguments.id_list(value, f"filter.{name}", what, empty=True)))

    @property
    def restricts(self) -> bool:
        return any(v is not None for v in (self.categories, self.allow, self.deny))
