"""Reading and creating constant tensors (weights) as numpy arrays.

Weights reach the passes in three forms:
* inline `dense<...>` attributes on `torch.vtensor.literal` (what harden-import writes
  for small models); numpy reads them through the buffer protocol;
* `dense_resource<name>` blobs (what a plain torch-mlir import writes). The Python
  bindings cannot read a resource blob back, so the blobs are taken from the source
  text's `{-# dialect_resources: ... #-}` section when the module is parsed;
* `harden.param` ops naming tensors of a safetensors file (large models): the module
  attribute `harden.params` gives the file, relative to the MLIR file.
New constants follow the module: inline literals, or (for a module with a parameter
file) new named parameters that `write_parameters` stores beside the output.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d

from harden.core.graph import body_ops, defining_op, functions
from harden.core.safetensors_writer import write_safetensors
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

# The op naming a tensor of the parameter file: `harden.param {param_name = "..."}`.
PARAM_OP = "harden.param"

# Module attribute naming the safetensors file of the module's `harden.param` tensors.
PARAMS_ATTR = "harden.params"

# Symbol prefix of the external `ml_program.global` that holds parameter `name` once
# the lowering has replaced its `harden.param` ops: `@param.<name>`.
PARAM_SYMBOL_PREFIX = "param."

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


class WeightError(Exception):
    """A weight that cannot be read (missing parameter file or tensor); names it."""


class ParameterFile:
    """The tensors of a safetensors file, read one at a time on demand.

    safetensors maps the whole file and copies a tensor out of the mapping; the pages it
    touched stay resident while the mapping is open. Opening the file for each read (the
    header is parsed again, a few microseconds) unmaps them at once, so reading an 8B
    model's 32 GB tensor by tensor keeps only the tensors in use in memory."""

    def __init__(self, path: Path):
        if not path.exists():
            raise WeightError(f"parameter file '{path}' not found")
        self.path = path
        with self._open() as f:
            self._names = set(f.keys())

    def _open(self):
        from safetensors import safe_open

        return safe_open(str(self.path), framework="np")

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def tensor(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise WeightError(f"tensor '{name}' is not in parameter file '{self.path}'")
        with self._open() as f:
            return f.get_tensor(name)


def parameter_file_of(module: ir.Operation, source_dir: Path) -> ParameterFile | None:
    """The parameter file a module names in `harden.params` (relative to its directory)."""
    if PARAMS_ATTR not in module.attributes:
        return None
    return ParameterFile(source_dir / module.attributes[PARAMS_ATTR].maybe_downcast().value)


class WeightStore:
    """Numpy views of the constant tensors of one module (see the module docstring)."""

    def __init__(self, resources: dict[str, str] | None = None, params: ParameterFile | None = None):
        self._resources = resources or {}
        self.params = params
        self.new_params: dict[str, np.ndarray] = {}

    @property
    def external(self) -> bool:
        """Whether the module keeps its weights in a parameter file."""
        return self.params is not None

    def constant_op(self, value: ir.Value) -> ir.OpView | None:
        """The `torch.vtensor.literal` or `harden.param` defining `value`, if it is one."""
        op = defining_op(value)
        if op is not None and op.operation.name in ("torch.vtensor.literal", PARAM_OP):
            return op
        return None

    def value_of(self, value: ir.Value) -> np.ndarray | None:
        """The numpy value of a constant tensor value, or None when it is not a constant."""
        op = self.constant_op(value)
        if op is None:
            return None
        info = tensor_info(value.type)
        dtype = _NUMPY_DTYPE.get(info.dtype) if info else None
        if dtype is None:
            return None
        if op.operation.name == PARAM_OP:
            return self._parameter(op.operation.attributes["param_name"].maybe_downcast().value)
        attr = op.operation.attributes["value"].maybe_downcast()
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

    def _parameter(self, name: str) -> np.ndarray:
        if name in self.new_params:
            return self.new_params[name]
        if self.params is None:
            raise WeightError(f"'harden.param' '{name}' needs a parameter file (module attribute {PARAMS_ATTR})")
        return self.params.tensor(name)

    def literal(self, array: np.ndarray, torch_dtype: str, name: str | None = None) -> ir.Value:
        """A new constant holding `array` (torch dtype like f32 or si8) at the current
        insertion point: an inline literal tagged with the weight `name`, or a new
        parameter when the module keeps its weights in a parameter file."""
        array = np.ascontiguousarray(array)
        result_type = vtensor_type(array.shape, torch_dtype)
        if self.external:
            return param_op(self._new_parameter_name(name or "weight", array), result_type).result
        signless = not torch_dtype.startswith(("si", "ui"))
        attr = ir.DenseElementsAttr.get(array, signless=signless)
        op = torch_d.ValueTensorLiteralOp(attr, results=[result_type])
        if name:
            op.operation.attributes[WEIGHT_NAME] = ir.StringAttr.get(name)
        return op.result

    def _new_parameter_name(self, name: str, array: np.ndarray) -> str:
        """`name`, or `name#2`...: identical tensors (prefill's and decode's) share a name."""
        candidate, n = name, 1
        while True:
            existing = self.new_params.get(candidate)
            if existing is None and (self.params is None or candidate not in self.params):
                self.new_params[candidate] = array
                return candidate
            if existing is not None and existing.dtype == array.dtype and np.array_equal(existing, array):
                return candidate
            n += 1
            candidate = f"{name}#{n}"

    def forget_unused(self, module: ir.Operation) -> None:
        """Drops new parameters no op of the module uses any more (a fused f32 q/k/v weight
        once its ternary codes replaced it): at 8B they would hold gigabytes to the end."""
        if self.new_params:
            used = parameter_names(module)
            for name in [n for n in self.new_params if n not in used]:
                del self.new_params[name]

    def name_of(self, value: ir.Value) -> str | None:
        """The weight name a constant carries (`harden.name`, set by harden-import), if any."""
        op = defining_op(value)
        if op is None:
            return None
        attrs = op.operation.attributes
        if WEIGHT_NAME in attrs:
            return attrs[WEIGHT_NAME].maybe_downcast().value
        if op.operation.name == PARAM_OP:
            return attrs["param_name"].maybe_downcast().value
        return None

    def write_parameters(self, module: ir.Operation, path: Path) -> None:
        """Writes every parameter the module uses to the safetensors file `path` and
        points the module's `harden.params` at it (by file name: it sits beside the MLIR)."""
        names = sorted(parameter_names(module))
        entries = [(name, self._parameter(name).dtype, self._parameter(name).shape) for name in names]
        write_safetensors(path, entries, self._parameter)
        module.attributes[PARAMS_ATTR] = ir.StringAttr.get(path.name)


def param_op(name: str, result_type: ir.Type) -> ir.Operation:
    """A `harden.param {param_name = name}` op at the current insertion point. Built in the
    generic form, so this low module needs no import of the dialect that verifies it
    (dialects/harden.py ParamOp)."""
    return ir.Operation.create(PARAM_OP, results=[result_type], attributes={"param_name": ir.StringAttr.get(name)})


def parameter_names(module: ir.Operation) -> set[str]:
    """The parameters a module uses: `harden.param` ops, or their lowered globals."""
    names = set()
    for op in module.regions[0].blocks[0].operations:
        if op.operation.name == "ml_program.global":
            symbol = op.operation.attributes["sym_name"].maybe_downcast().value
            if symbol.startswith(PARAM_SYMBOL_PREFIX):
                names.add(symbol[len(PARAM_SYMBOL_PREFIX):])
    for func in functions(module):
        for op in body_ops(func):
            if op.operation.name == PARAM_OP:
                names.add(op.operation.attributes["param_name"].maybe_downcast().value)
    return names


def _splat_scalar(dense: ir.DenseElementsAttr):
    return dense.get_splat_value().maybe_downcast().value


def erase_if_unused(op: ir.OpView | ir.Operation | None) -> None:
    """Erases a constant whose last use was just rewritten away."""
    if op is not None and all(len(list(r.uses)) == 0 for r in op.operation.results):
        op.operation.erase()
