"""How wide an approximate index searches: IVF's `nprobe`, HNSW's `efSearch` (flat search has neither).

The values are tuned at build time and kept with the index (its manifest). They are also set on the FAISS
index as its own defaults, so a first pass over every row passes no parameter object (one costs a one-query
search about a microsecond in SWIG); a filtered or widened pass gets its own object per call, which FAISS
only reads, so concurrent searches never race on index state.
"""
from __future__ import annotations

import faiss
import numpy as np

from tandemrec.retrieval.errors import RetrievalError


class SearchWidth:
    def __init__(self, index: "faiss.Index", factory: str | None, values: dict[str, int] | None) -> None:
        self._index = index
        self._factory = factory
        self._ivf = faiss.try_extract_index_ivf(index) if isinstance(index, faiss.Index) else None
        if self._ivf is not None:
            self._values = {"nprobe": int(self._ivf.nprobe)}
        elif isinstance(index, faiss.IndexHNSW):
            self._values = {"efSearch": int(index.hnsw.efSearch)}
        else:
            self._values = {}
        self.set(**(values or {}))

    @property
    def values(self) -> dict[str, int]:
        """The search parameters by name (a copy)."""
        return dict(self._values)

    def limits(self, rows: int) -> dict[str, int]:
        """The value of each parameter past which search gets no wider (all lists; all `rows`)."""
        if self._ivf is not None:
            return {"nprobe": int(self._ivf.nlist)}
        return {name: rows for name in self._values}

    def set(self, **params: int) -> None:
        """Set `nprobe` (IVF) or `efSearch` (HNSW): more is slower and closer to exact. Not while searches run."""
        unknown = sorted(params.keys() - self._values.keys())
        if unknown:
            raise RetrievalError(
                f"search parameters {unknown} do not apply to this index ({self._factory}); "
                f"it takes {sorted(self._values) or 'none'}"
            )
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise RetrievalError(f"search parameter {name} must be a positive integer, got {value!r}")
        if self._ivf is not None and params.get("nprobe", 0) > self._ivf.nlist:
            raise RetrievalError(f"nprobe={params['nprobe']} exceeds the {self._ivf.nlist} lists of this index")
        self._values.update({name: int(value) for name, value in params.items()})
        for name, value in self._values.items():
            faiss.ParameterSpace().set_index_parameter(self._index, name, value)

    def parameters(self, selector, scale: int, boost: int, rows: int):
        """FAISS search parameters for one pass (None where the index's own defaults do) and whether the pass
        is exhaustive: the values times `scale` (a widening search) and, for a graph, `boost` (a filter that
        leaves few of the `rows`), restricted by an ID `selector` (None: every row)."""
        if self._ivf is not None:
            nprobe = min(self._ivf.nlist, self._values["nprobe"] * scale)
            exhaustive = nprobe == self._ivf.nlist
            if selector is None and nprobe == self._values["nprobe"]:  # the index's own
                return None, exhaustive
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe), exhaustive
        if "efSearch" in self._values:
            ef = self._values["efSearch"] * scale * boost
            if selector is None and ef == self._values["efSearch"]:  # the index's own
                return None, ef >= rows
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef), ef >= rows
        return (None if selector is None else faiss.SearchParameters(sel=selector)), True
