"""The one home of the retrieval API's argument checks.

Every public `Retriever` method checks its arguments here before any work, so that a caller's mistake is
a `RetrievalError` naming the argument and what was expected ("user_ids must be a list of user ids, got
None") instead of a TypeError from deep inside numpy, polars, FAISS or a tokenizer. Each check returns the
value in the form the caller's code goes on with (a list, a float32 matrix, a conformed table). One
exception to "before any work": a lone query vector's values are read from its search's scores
(`query_vectors`), a check that costs nothing where the values themselves cost a one-query search 2%.
"""
from __future__ import annotations

import math
import reprlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

from tandemrec.data.dataset import ITEM_COLUMNS
from tandemrec.retrieval import filters  # the module, not ItemFilter: filters.py imports this module back
from tandemrec.retrieval.errors import RetrievalError

_FLOAT32 = np.dtype(np.float32)  # numpy's one instance: compared by identity
_SHOWN = 10  # how many offending values a message lists
# `add_items` embeds an item from its title at least. The data contract (data/dataset.py OPTIONAL_COLUMNS)
# lets category and image be absent; add_items's documentation leaves out text too, as an item with a null
# text is embedded from its title alone. An absent optional column is taken as all null.
REQUIRED_ITEM_COLUMNS = ("item_id", "title")
OPTIONAL_ITEM_COLUMNS = tuple(c for c in ITEM_COLUMNS if c not in REQUIRED_ITEM_COLUMNS)
_ITEM_COLUMNS_HINT = f"{', '.join(REQUIRED_ITEM_COLUMNS)} and optionally {', '.join(OPTIONAL_ITEM_COLUMNS)}"
_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother = 40, 40


def describe(value: object) -> str:
    """A short description of a wrong value for a message: its type and a truncated repr."""
    if value is None:
        return "None"
    return f"{type(value).__name__} {_repr.repr(value)}"


def check_k(k: object, n_items: int) -> int:
    """k must be a positive integer (not a bool or a float) no larger than the items a search can return;
    returned as a Python int, which FAISS needs (a numpy integer is refused by its bindings)."""
    if type(k) is int and 0 < k <= n_items:  # the common case in one step (a bool's type is not int)
        return k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise RetrievalError(f"k must be a positive integer, got {k!r}")
    if k > n_items:
        raise RetrievalError(f"k={k} exceeds the {n_items} items in the index")
    return int(k)


def flag(value: object, name: str) -> bool:
    """A yes/no option: only a bool, since a truthy string such as "no" would silently mean yes."""
    if not isinstance(value, (bool, np.bool_)):
        raise RetrievalError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def one_id(value: object, name: str, optional: bool = False) -> str | None:
    """One id: a string (or None where `optional`, e.g. a user described only by call-time features)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        expected = "a string id or None" if optional else "a string id"
        raise RetrievalError(f"{name} must be {expected}, got {describe(value)}")
    return value


def id_list(
    value: object, name: str, what: str = "item ids", *, empty: bool = False, unique: bool = False
) -> list[str]:
    """A list of string ids (a sequence, 1-D array or polars Series; never a bare string, which would be
    read as one id per character). `empty` allows no ids; `unique` refuses repeats."""
    ids = _listed(value, name, what, empty)
    not_str = [(i, v) for i, v in enumerate(ids) if not isinstance(v, str)]
    if not_str:
        i, v = not_str[0]
        raise RetrievalError(
            f"{name}[{i}] must be a string, got {describe(v)} ({len(not_str)} of {len(ids)} entries are not strings)"
        )
    if unique:
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        if repeated:
            raise RetrievalError(f"{name} must not repeat ids; repeated: {repeated[:_SHOWN]}")
    return ids


def text(value: object, name: str) -> str:
    """A text query: a string with something besides white space."""
    if not isinstance(value, str) or not value.strip():
        raise RetrievalError(f"{name} must be a non-empty string, got {describe(value)}")
    return value


def text_list(value: object, name: str) -> list[str]:
    """A list of text queries, each checked by `text` and named by its position."""
    texts = _listed(value, name, "text queries", False)
    for i, t in enumerate(texts):
        text(t, f"{name}[{i}]")
    return texts


def image(value: object, name: str) -> Image.Image | str | Path:
    """An image query: a PIL image, or the path (str or Path) of an existing file."""
    if isinstance(value, Image.Image):
        return value
    if not isinstance(value, (str, Path)):
        raise RetrievalError(f"{name} must be a PIL image or an image file path, got {describe(value)}")
    if not Path(value).is_file():
        raise RetrievalError(f"{name}: image file '{value}' does not exist")
    return value


def image_list(value: object, name: str) -> list[Image.Image | str | Path]:
    """A list of image queries, each checked by `image`; a lone picture or Path is refused, not iterated."""
    if isinstance(value, (Path, Image.Image)):
        raise RetrievalError(
            f"{name} must be a list of image queries, got a single {type(value).__name__} (wrap it in a list)"
        )
    images = _listed(value, name, "image queries", False)
    for i, img in enumerate(images):
        image(img, f"{name}[{i}]")
    return images


def matrix(value: object, name: str, dim: int | None) -> np.ndarray:
    """`value` as a C-contiguous float32 (n, d) matrix with n > 0 and finite values, checked against `dim`."""
    # A query as FAISS takes it (most one-query calls) skips numpy's two conversions.
    ready = type(value) is np.ndarray and value.dtype is _FLOAT32 and value.flags.c_contiguous
    try:
        x = value if ready else np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise RetrievalError(f"{name} must be a 2-D (n, d) matrix, got a ragged {type(value).__name__}") from err
    if x.ndim != 2:
        raise RetrievalError(
            f"{name} must be a 2-D (n, d) matrix, got shape {x.shape} (batch a single vector as (1, d))"
        )
    if x.size == 0:
        raise RetrievalError(f"{name} is empty (shape {x.shape})")
    if dim is not None and x.shape[1] != dim:
        raise RetrievalError(f"{name} has dimension {x.shape[1]}, the index has dimension {dim}")
    if not ready:
        if x.dtype.kind not in "fiu":
            raise RetrievalError(f"{name} must be numeric, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
    # A one-row query's finiteness from its dot product with itself: finite whenever every value is (bar
    # an overflow of huge values, which the full check below then clears), and a third of what
    # `isfinite(x).all()` costs a one-query search. A batch takes the full check, a sliver of its search.
    if (len(x) > 1 or not math.isfinite(np.vdot(x, x))) and not np.isfinite(x).all():
        raise RetrievalError(f"{name} holds NaN or infinite values")
    return x


def query_vectors(value: object, name: str, dim: int) -> np.ndarray:
    """`matrix` for a search's query vectors, but one float row of the index's dim passes without a look at
    its values (as float32, C-contiguous: as it is when FAISS takes it so, else converted): `check_found`
    reads their finiteness from the search's results at no cost, where checking them first costs a
    one-query search 2%. The caller must call it."""
    if type(value) is np.ndarray and value.shape == (1, dim):
        if value.dtype is _FLOAT32 and value.flags.c_contiguous:
            return value
        if value.dtype.kind == "f":
            return np.ascontiguousarray(value, dtype=np.float32)
    return matrix(value, name, dim)


def check_found(vectors: np.ndarray, first_scores: np.ndarray, name: str) -> None:
    """The end of `query_vectors`' check, after the search, given the first query's result scores. NaN or
    infinity anywhere in a query makes every inner product with it NaN or infinite, so one finite score
    proves the query finite; without one (NaN, for which FAISS finds nothing, or a finite query whose
    products overflow) the values themselves are checked."""
    if len(vectors) == 1 and not (len(first_scores) and math.isfinite(first_scores.item(0))):
        if not np.isfinite(vectors).all():
            raise RetrievalError(f"{name} holds NaN or infinite values")


def query(name: str, value: object, dim: int) -> object:
    """Check a query argument by its parameter name: one or a list of ids, texts or images, or vectors (a
    lone vector's values are checked after its search: `query_vectors`)."""
    if name == "vectors":
        return query_vectors(value, name, dim)
    return _QUERIES[name](value, name)


def item_filter(value: object, name: str = "filter") -> filters.ItemFilter | None:
    if value is not None and not isinstance(value, filters.ItemFilter):
        raise RetrievalError(
            f"{name} must be an ItemFilter (categories / allow / deny) or None, got {describe(value)}"
        )
    return value


def optional_name(value: object, name: str) -> str | None:
    """A name chosen among a run's (e.g. rerank's event type): a string or None; membership is the caller's."""
    if value is not None and not isinstance(value, str):
        raise RetrievalError(f"{name} must be a string or None, got {describe(value)}")
    return value


def attributes(value: object, name: str = "attributes") -> dict[str, str] | None:
    """User attributes given at call time: a mapping of attribute name (str) to value (str; an int is
    read as its digits, as the data readers store categorical numbers)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RetrievalError(f"{name} must be a mapping of attribute name to value, or None, got {describe(value)}")
    for key, v in value.items():
        if not isinstance(key, str):
            raise RetrievalError(f"{name}: attribute names must be strings, got {describe(key)}")
        if isinstance(v, bool) or not isinstance(v, (str, int, np.integer)):
            raise RetrievalError(f"{name}[{key!r}] must be a string value, got {describe(v)}")
    return {key: str(v) for key, v in value.items()}


def history(value: object, name: str = "history") -> list[str] | None:
    """Item ids a user had, oldest first, given at call time; None keeps the stored history, [] means none."""
    return None if value is None else id_list(value, name, "item ids", empty=True)


def user_description(
    user_id: object, history_: object, attributes_: object
) -> tuple[str | None, list[str] | None, dict[str, str] | None]:
    """The user of `recommend`, `profile` and `predict_behaviour`: an id (None for a visitor described
    only at call time), a history and attributes given at call time (None: the stored ones)."""
    return one_id(user_id, "user_id", optional=True), history(history_), attributes(attributes_)


def user_times(users: object, times_: object, n_users: int) -> tuple[np.ndarray, np.ndarray | None]:
    """User vocabulary indices and, optionally, one time per user (see `user_indices` and `times`)."""
    indices = user_indices(users, "users", n_users)
    return indices, times(times_, "times", len(indices))


def user_indices(value: object, name: str, n_users: int) -> np.ndarray:
    """A 1-D integer array of user vocabulary indices in [0, n_users) (0: the unknown user); it may be empty,
    as a batch job's selection of users can be."""
    users = np.asarray(value) if isinstance(value, (np.ndarray, Sequence)) and not isinstance(value, str) else None
    if users is None or users.ndim != 1 or (users.size and users.dtype.kind not in "iu"):
        raise RetrievalError(f"{name} must be a 1-D integer array of user indices, got {describe(value)}")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise RetrievalError(f"{name} must lie in [0, {n_users}), got values from {users.min()} to {users.max()}")
    return users.astype(np.int64, copy=False)


def times(value: object, name: str, n: int) -> np.ndarray | None:
    """None (everything logged), or one time per user: int64 UTC microseconds since the epoch (the event
    log's unit), or numpy datetime64 (converted)."""
    if value is None:
        return None
    t = np.asarray(value) if isinstance(value, (np.ndarray, Sequence)) and not isinstance(value, str) else None
    if t is None or t.ndim != 1 or (t.size and t.dtype.kind not in "iuM"):
        raise RetrievalError(
            f"{name} must be None or a 1-D array of int64 UTC microseconds (or datetime64), got {describe(value)}"
        )
    if len(t) != n:
        raise RetrievalError(f"{name} has {len(t)} entries, expected one per user ({n})")
    if t.dtype.kind == "M":
        if np.isnat(t).any():
            raise RetrievalError(f"{name} holds NaT (not a time)")
        t = t.astype("datetime64[us]")
    return t.astype(np.int64)


def path(value: object, name: str) -> Path:
    """A file system path given as str or Path (whether it exists is the caller's to say)."""
    if not isinstance(value, (str, Path)):
        raise RetrievalError(f"{name} must be a path (str or Path), got {describe(value)}")
    return Path(value)


def folder(value: object, name: str) -> Path | None:
    """None, or an existing folder given as str or Path."""
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        raise RetrievalError(f"{name} must be a folder path (str or Path) or None, got {describe(value)}")
    if not Path(value).is_dir():
        raise RetrievalError(f"{name}: folder '{value}' does not exist")
    return Path(value)


def device(value: object, name: str = "device") -> torch.device:
    """A torch device ("cpu", "cuda", "cuda:1", or a torch.device)."""
    try:
        return torch.device(value)  # type: ignore[arg-type]
    except (RuntimeError, TypeError) as err:
        raise RetrievalError(f"{name} must be a torch device such as 'cpu' or 'cuda:0', got {describe(value)}") from err


def item_table(value: object, name: str = "items") -> pl.DataFrame:
    """New items for `add_items`: a non-empty polars DataFrame with unique, non-null string item ids and a
    title; the optional columns are added, all null, when absent, so later code sees every item column."""
    if not isinstance(value, pl.DataFrame):
        raise RetrievalError(f"{name} must be a polars DataFrame ({_ITEM_COLUMNS_HINT}), got {describe(value)}")
    if value.is_empty():
        raise RetrievalError(f"{name} must be a non-empty polars DataFrame, got one with no rows")
    missing = [c for c in REQUIRED_ITEM_COLUMNS if c not in value.columns]
    if missing:
        raise RetrievalError(f"{name}: missing column(s) {missing}; expected {_ITEM_COLUMNS_HINT}")
    for column in ITEM_COLUMNS:
        dtype = value.schema.get(column)
        if dtype is not None and dtype not in (pl.String, pl.Null):
            raise RetrievalError(f"{name}.{column} must be a String column, got {dtype}")
    ids = value["item_id"]
    if ids.null_count():
        raise RetrievalError(f"{name}.item_id must not be null ({ids.null_count()} null ids)")
    repeated = ids.filter(ids.is_duplicated()).unique().sort().to_list()
    if repeated:
        raise RetrievalError(f"{name}.item_id must be unique; repeated: {repeated[:_SHOWN]}")
    return value.with_columns(  # all-null columns (dtype Null) become String, as the catalogue's are
        pl.col(c).cast(pl.String) if c in value.columns else pl.lit(None, dtype=pl.String).alias(c)
        for c in ITEM_COLUMNS
    )


def _listed(value: object, name: str, what: str, empty: bool) -> list:
    """`value` as a list when it is a sequence, 1-D array or polars Series (not a string)."""
    if isinstance(value, (str, bytes)):
        raise RetrievalError(
            f"{name} must be a list of {what}, got a single string {value!r} (it takes a list of {what}, even for one)"
        )
    if (isinstance(value, np.ndarray) and value.ndim == 1) or isinstance(value, (Sequence, pl.Series)):
        listed = list(value)
    else:
        raise RetrievalError(f"{name} must be a list of {what}, got {describe(value)}")
    if not listed and not empty:
        raise RetrievalError(f"{name}: no {what} given")
    return listed


_QUERIES: dict[str, Callable[[object, str], object]] = {
    "user_ids": lambda value, name: id_list(value, name, "user ids"),
    "item_id": one_id,
    "item_ids": id_list,
    "text": text,
    "texts": text_list,
    "image": image,
    "images": image_list,
}
