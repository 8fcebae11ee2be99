"""Reading and creating constant tensors (weights) as numpy arrays.

Weights reach the passes in two forms:
* inline `dense<...>` attributes on `torch.vtensor.literal` (what harden-import writes);
  numpy reads them through the buffer protocol;
* `dense_resource<name>` blobs (what a plain torch-mlir import writes). The Python
  bindings cannot read a resource blob back, so the blobs are taken from the source
  text's `{-# dialect_resources: ... #-}` section when the module is parsed.
New constants are created inline, so the passes can read back what they wrote.
"""

from __future__ import annotations

import re

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d

from harden.core.graph import defining_op
from harden.core.tensor_types import tensor_info, vtensor_type

_NUMPY_DTYPE = {
    "f32": np.float32,
    "f64": np.float64,
    "f16": np.float16,
    "i8": np.int8,
    "si8": np.int8,
    "ui8": np.uint8,
    "i16": np.int16,
    "si16": np.int16,
    "i32": np.int32,
    "si32": np.int32,
    "i64": np.int64,
    "si64": np.int64,
    "i1": np.bool_,
}

# Discardable attribute naming a weight constant (e.g. "layers.0.attention.wq.weight"):
# it survives printing and parsing, unlike locations, so layer names reach every pass.
WEIGHT_NAME = "harden.name"

# One blob per line inside the builtin resources: `name: "0x<4-byte alignment><data>"`.
_RESOURCE_BLOB = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[\w.$\-]+)\s*:\s*"0x([0-9A-Fa-f]*)"', re.M)
_RESOURCE_NAME = re.compile(r"dense_resource<([^>]+)>")


def resource_blobs(source_text: str) -> dict[str, str]:
    """Hex blobs of the `dialect_resources` section of an MLIR source, by resource name."""
    start = source_text.rfind("{-#")
    if start < 0:
        return {}
    return {m.group(1).strip('"'): m.group(2) for m in _RESOURCE_BLOB.finditer(source_text, start)}


class WeightStore:
    """Numpy views of the constant tensors of one module (see the module docstring)."""

    def __init__(self, resources: dict[str, str] | None = None):
        self._resources = resources or {}

    def constant_op(self, value: ir.Value) -> ir.OpView | None:
        """The `torch.vtensor.literal` defining `value`, if it is one."""
        op = defining_op(value)
        return op if op is not None and op.operation.name == "torch.vtensor.literal" else None

    def value_of(self, value: ir.Value) -> np.ndarray | None:
        """The numpy value of a constant tensor value, or None when it is not a constant."""
        op = self.constant_op(value)
        if op is None:
            return None
        attr = op.operation.attributes["value"].maybe_downcast()
        info = tensor_info(value.type)
        dtype = _NUMPY_DTYPE.get(info.dtype) if info else None
        if dtype is None:
            return None
        if isinstance(attr, ir.DenseElementsAttr):
            if attr.is_splat:
                return np.full(info.shape, _splat_scalar(attr), dtype)
            return np.asarray(attr).astype(dtype, copy=False).reshape(info.shape)
        name = _RESOURCE_NAME.match(str(attr))
        blob = self._resources.get(name.group(1)) if name else None
        if blob is None:
            return None
        data = bytes.fromhex(blob[8:])  # the first 4 bytes give the blob's alignment
        return np.frombuffer(data, dtype).reshape(info.shape).copy()

    def literal(self, array: np.ndarray, torch_dtype: str, name: str | None = None) -> ir.Value:
        """A new `torch.vtensor.literal` holding `array` inline (torch dtype like f32 or si8),
        at the current insertion point, tagged with the weight `name` if given."""
        signless = not torch_dtype.startswith(("si", "ui"))
        attr = ir.DenseElementsAttr.get(np.ascontiguousarray(array), signless=signless)
        op = torch_d.ValueTensorLiteralOp(attr, results=[vtensor_type(array.shape, torch_dtype)])
        if name:
            op.operation.attributes[WEIGHT_NAME] = ir.StringAttr.get(name)
        return op.result

    def name_of(self, value: ir.Value) -> str | None:
        """The weight name a constant carries (`harden.name`, set by harden-import), if any."""
        op = defining_op(value)
        if op is None:
            return None
        attrs = op.operation.attributes
        if WEIGHT_NAME in attrs:
            return attrs[WEIGHT_NAME].maybe_downcast().value
        if op.operation.name == "harden.param":
            return attrs["param_name"].maybe_downcast().value
        return None


def _splat_scalar(dense: ir.DenseElementsAttr):
    return dense.get_splat_value().maybe_downcast().value


def erase_if_unused(op: ir.OpView | ir.Operation | None) -> None:
    """Erases a constant whose last use was just rewritten away."""
    if op is not None and all(len(list(r.uses)) == 0 for r in op.operation.results):
        op.operation.erase()
