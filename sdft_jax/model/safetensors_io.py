"""Minimal safetensors reader (memory-mapped, bf16 via ml_dtypes) and streaming writer.

Reading maps each file once and hands out NumPy views: a shard of a tensor is read by slicing
the view, so no full host copy of the model is ever made.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Callable, Iterable

import ml_dtypes
import numpy as np

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


class CheckpointFormatError(ValueError):
    pass


def read_header(path: str) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointFormatError(f"{path}: not a safetensors file (truncated header)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointFormatError(f"{path}: not a safetensors file, or truncated (its header does not "
                                        f"read as JSON)") from None
    header.pop("__metadata__", None)
    need = 8 + n + max((info["data_offsets"][1] for info in header.values()), default=0)
    size = os.path.getsize(path)
    if size < need:
        raise CheckpointFormatError(f"{path}: truncated: {size} bytes, its header describes {need} (an interrupted "
                                    f"download or copy?)")
    return header, 8 + n


class SafetensorsFolder:
    """All tensors of a HF folder (single file or sharded with an index), as lazy NumPy views."""

    def __init__(self, folder: str):
        index_path = os.path.join(folder, "model.safetensors.index.json")
        single = os.path.join(folder, "model.safetensors")
        if os.path.isfile(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            files = sorted(set(weight_map.values()))
        elif os.path.isfile(single):
            files = ["model.safetensors"]
        else:
            raise FileNotFoundError(
                f"{folder}: neither model.safetensors nor model.safetensors.index.json found")
        self._entries: dict[str, tuple[str, dict, int]] = {}
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: listed in the index but missing")
            header, offset = read_header(path)
            for key, info in header.items():
                self._entries[key] = (path, info, offset)
        self._maps: dict[str, np.memmap] = {}

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key][1]["shape"])

    def dtype(self, key: str) -> np.dtype:
        return np.dtype(DTYPES[self._entries[key][1]["dtype"]])

    def view(self, key: str) -> np.ndarray:
        path, info, offset = self._entries[key]
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        start, end = info["data_offsets"]
        raw = self._maps[path][offset + start: offset + end]
        return raw.view(DTYPES[info["dtype"]]).reshape(info["shape"])


def write_safetensors(path: str, tensors: Iterable[tuple[str, tuple[int, ...], np.dtype]],
                      fetch: Callable[[str], np.ndarray], metadata: dict | None = None) -> None:
    """Writes tensors one at a time: `tensors` gives (name, shape, dtype) up front for the
    header; `fetch(name)` produces each array only when it is written."""
    specs = list(tensors)
    header, offset = {}, 0
    for name, shape, dtype in specs:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": DTYPE_NAMES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype in specs:
            arr = np.ascontiguousarray(fetch(name), dtype=dtype)
            if arr.shape != tuple(shape):
                raise ValueError(f"{name}: produced shape {arr.shape}, header says {tuple(shape)}")
            f.write(arr.tobytes())
    os.replace(tmp, path)
