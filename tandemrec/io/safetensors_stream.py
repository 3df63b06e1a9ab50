"""One safetensors file written in place by many processes, each from the pieces it holds.

safetensors' own writer takes whole tensors in one process's memory; a sharded embedding table may not fit
there. The format is simple enough to lay out ahead (a JSON header with every tensor's shape and byte
range, then the raw little-endian data): one process writes the header and sizes the file, then each
writes its pieces at their byte offsets, a block of rows at a time, so no process ever holds more than
its own shards. The result is a plain safetensors file that `safetensors.torch.load_file` reads.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
BLOCK_BYTES = 32 << 20  # of rows written in one call


@dataclass(frozen=True)
class Piece:
    """Part of tensor `key`, starting at `offsets` (one per dimension) of the whole tensor."""

    key: str
    offsets: tuple[int, ...]
    tensor: torch.Tensor


@dataclass(frozen=True)
class Layout:
    """Where each tensor lies in the file: the header to write first, and each tensor's shape, dtype and
    first byte."""

    header: bytes
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    starts: dict[str, int]
    size: int  # of the whole file

    @classmethod
    def of(cls, tensors: dict[str, tuple[tuple[int, ...], torch.dtype]], metadata: dict[str, str] | None = None) -> "Layout":
        """The layout of `tensors` (key -> (shape, dtype)), in their order."""
        entries: dict[str, object] = {"__metadata__": metadata} if metadata else {}
        ends, end = {}, 0
        for key, (shape, dtype) in tensors.items():
            if dtype not in DTYPES:
                raise TypeError(f"tensor '{key}': dtype {dtype} has no safetensors name")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            entries[key] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [end, end + nbytes]}
            ends[key], end = end, end + nbytes
        text = json.dumps(entries, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors' writer does
        header = struct.pack("<Q", len(text)) + text
        starts = {key: len(header) + offset for key, offset in ends.items()}
        return cls(header, {k: tuple(s) for k, (s, _) in tensors.items()}, {k: d for k, (_, d) in tensors.items()}, starts, len(header) + end)

    def create(self, path: Path) -> None:
        """Write the header and size the file (its data is then written by `write`)."""
        with open(path, "wb") as f:
            f.write(self.header)
            f.truncate(self.size)

    def write(self, path: Path, pieces: list[Piece]) -> None:
        """Write `pieces` at their places in the file `create` made; pieces of other processes may be
        written at the same time (they never overlap)."""
        fd = os.open(path, os.O_WRONLY)
        try:
            for piece in pieces:
                self._write_piece(fd, piece)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_piece(self, fd: int, piece: Piece) -> None:
        shape, tensor = self.shapes[piece.key], piece.tensor
        if tensor.dtype != self.dtypes[piece.key] or len(piece.offsets) != len(shape) or any(
            o + n > s for o, n, s in zip(piece.offsets, tensor.shape, shape)
        ):
            raise ValueError(
                f"piece of '{piece.key}' at {piece.offsets} with shape {tuple(tensor.shape)} {tensor.dtype} does not fit "
                f"the tensor's {shape} {self.dtypes[piece.key]}"
            )
        item = tensor.element_size()
        if not shape:
            _pwrite(fd, tensor.reshape(1), self.starts[piece.key])
            return
        row = math.prod(shape[1:]) * item  # bytes of one row of the whole tensor
        start = self.starts[piece.key] + piece.offsets[0] * row
        if tuple(tensor.shape[1:]) == shape[1:]:  # whole rows: one contiguous range, a block at a time
            step = max(1, BLOCK_BYTES // max(row, 1))
            for r in range(0, tensor.shape[0], step):
                _pwrite(fd, tensor[r : r + step], start + r * row)
        elif len(shape) == 2:  # a column range of each row
            for r in range(tensor.shape[0]):
                _pwrite(fd, tensor[r], start + r * row + piece.offsets[1] * item)
        else:
            raise ValueError(f"piece of '{piece.key}': only 2-D tensors may be split along their second dimension")


def _pwrite(fd: int, tensor: torch.Tensor, offset: int) -> None:
    data = memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    while len(data):
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
