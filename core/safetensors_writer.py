"""Writing safetensors files one tensor at a time.

The `safetensors` library serializes a dictionary of tensors that are all in memory at
once; a parameter file of a multi-gigabyte model must be written while each tensor is
produced (read from a checkpoint, generated, or quantized) and then dropped. So the file
is written here in the library's format (8-byte little-endian header length, the JSON
header with dtype, shape and data offsets, 8-byte aligned data), atomically, and read
back through the library (header only) before it is put in place: a file the library
cannot read is never left behind. Reading always goes through the library.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from harden.core.files import atomic_path

_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("float64"): "F64",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("int16"): "I16",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("bool"): "BOOL",
}


def write_safetensors(
    path: str | Path,
    entries: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
    tensor: Callable[[str], np.ndarray],
    on_tensor: Callable[[str], None] | None = None,
) -> None:
    """Writes the tensors `entries` (name, dtype, shape), each produced by `tensor(name)`
    only when it is written, to the safetensors file `path` (atomically).
    `on_tensor(name)` is called after each (progress). Raises ValueError when a produced
    tensor does not have its declared dtype and shape."""
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in entries:
        size = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": _DTYPES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(len(encoded).to_bytes(8, "little"))
            f.write(encoded)
            for name, dtype, shape in entries:
                array = np.ascontiguousarray(tensor(name))
                if array.dtype != np.dtype(dtype) or array.shape != tuple(shape):
                    raise ValueError(f"tensor '{name}' is {array.dtype} {list(array.shape)}, declared {np.dtype(dtype)} {list(shape)}")
                f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).data)
                if on_tensor is not None:
                    on_tensor(name)
        _check_readable(tmp)


def _check_readable(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        f.keys()
