"""Unpickling DCP's checkpoint index without letting the file run anything.

torch.distributed.checkpoint (DCP) writes its index (`.metadata`) with `pickle` and reads it back with
`pickle.load`, and a pickle may name any importable callable (`os.system`, `builtins.exec`) and have it
called while it loads. The SHA-256 in meta.json does not help: whoever can write the run folder can
rewrite the hash as well. So the index is read by an unpickler that resolves only the names a DCP index
really holds (found by listing every global of the indexes this project writes) and refuses any other
name before importing it: nothing a crafted file names is ever imported or called.
"""
from __future__ import annotations

import pickle
from typing import IO, Any

import torch

_METADATA = "torch.distributed.checkpoint.metadata"

# Every (module, name) a DCP index may reference; each only builds plain data from its arguments.
DCP_INDEX_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        (_METADATA, "Metadata"),
        (_METADATA, "StorageMeta"),
        (_METADATA, "MetadataIndex"),
        (_METADATA, "TensorStorageMetadata"),
        (_METADATA, "BytesStorageMetadata"),
        (_METADATA, "ChunkStorageMetadata"),
        (_METADATA, "TensorProperties"),
        (_METADATA, "_MEM_FORMAT_ENCODING"),  # how TensorProperties stores a memory format
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),  # where each tensor lies in which file
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),  # how a torch.layout pickles: _get_layout("torch.strided")
        ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id
        ("collections", "OrderedDict"),
        *(("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool", "bytes")),
    }
)

# dtypes and memory formats pickle as attributes of `torch` (`torch.float32`); read from the module's
# namespace so that looking them up never triggers torch's lazy imports.
_TORCH_CONSTANTS: frozenset[str] = frozenset(
    name for name, value in vars(torch).items() if isinstance(value, (torch.dtype, torch.memory_format))
)


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle named something outside the allow-list; `module` and `name` say what it was."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"the pickle asks for '{module}.{name}', which is not allowed here")
        self.module = module
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only `allowed` names and torch's dtypes / memory formats."""

    def __init__(self, file: IO[bytes], allowed: frozenset[tuple[str, str]]) -> None:
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        """Every global of the pickle (GLOBAL, STACK_GLOBAL, extension codes) comes through here."""
        if (module, name) in self.allowed or (module == "torch" and name in _TORCH_CONSTANTS):
            return super().find_class(module, name)
        raise ForbiddenGlobal(module, name)


def load_dcp_index(file: IO[bytes]) -> Any:
    """Unpickle a DCP `.metadata` stream with only the names a DCP index holds; raises ForbiddenGlobal
    for any other name and pickle.UnpicklingError (or EOFError, ...) for a malformed stream."""
    return RestrictedUnpickler(file, DCP_INDEX_GLOBALS).load()
