"""Shapes and element types of tensor values, for torch `!torch.vtensor` and builtin tensors.

torch-mlir's Python bindings expose no class for `!torch.vtensor<[...],dtype>`, so its
shape is read from the type's printed form, which is short and fixed by torch-mlir's
type printer (`!torch.vtensor<[1,?,64],f32>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch_mlir import ir

_VTENSOR = re.compile(r"^!torch\.vtensor<\[([^\]]*)\],([^>]+)>$")

# Element type spellings that mean the same thing in torch and builtin types.
_BUILTIN_DTYPE = {"si8": "i8", "si16": "i16", "si32": "i32", "si64": "i64", "ui8": "i8"}


@dataclass(frozen=True)
class TensorInfo:
    """Static facts about a ranked tensor type; a dimension is None when dynamic."""

    shape: tuple[int | None, ...]
    dtype: str  # element type as printed: f32, si8, i8, ...
    is_torch: bool

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def storage_dtype(self) -> str:
        """Element type with torch's signedness dropped (si8 and i8 are both bytes)."""
        return _BUILTIN_DTYPE.get(self.dtype, self.dtype)

    def num_elements(self) -> int | None:
        n = 1
        for d in self.shape:
            if d is None:
                return None
            n *= d
        return n


def tensor_info(t: ir.Type) -> TensorInfo | None:
    """TensorInfo of a ranked `!torch.vtensor` or builtin `tensor`, else None."""
    t = t.maybe_downcast()
    if isinstance(t, ir.RankedTensorType):
        rt = t
        shape = tuple(None if rt.is_dynamic_dim(i) else rt.get_dim_size(i) for i in range(rt.rank))
        return TensorInfo(shape, str(rt.element_type), is_torch=False)
    m = _VTENSOR.match(str(t))
    if not m:
        return None
    dims = m.group(1)
    shape = tuple(None if d == "?" else int(d) for d in dims.split(",")) if dims else ()
    return TensorInfo(shape, m.group(2), is_torch=True)


def vtensor_type(shape, dtype: str) -> ir.Type:
    """The `!torch.vtensor` type of a shape and element type, in the current context."""
    dims = ",".join("?" if d is None else str(d) for d in shape)
    return ir.Type.parse(f"!torch.vtensor<[{dims}],{dtype}>")
