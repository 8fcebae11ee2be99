"""What each op of a harden-level graph reads, iterates over and computes.

This is the IR side of the cost model. For every op with tensor results it builds an
`OpModel`:

* the *iteration space*: the index space the op's work is spread over (its result shape,
  or its input shape for reductions), which is split into stream tiles;
* for each tensor operand, an *access map* from a box of the iteration space to the box of
  the operand that box reads: how a tile's dependences on its producers are found;
* for each result, how its dimensions sit in the iteration space (so a consumer knows
  which producer tiles wrote the part it reads);
* the work: multiply-accumulates, ternary additions or vector passes per element, and an
  operator class (see `machine.OPERATOR_CLASSES`).

Ops that only reinterpret their operand (view, reshape, unsqueeze, slice, select,
expand, repeat_interleave, ...) are *free*: they take no unit and no time, and their
result lives in their operand's buffer. On a streaming machine a reshape or a strided
slice is an address pattern of the consumer's stream, and grouped-query attention reads
each key/value head once for all the query heads that share it (so `repeat_interleave`
and `expand` are not materialized). Transposes and permutes are data movement through the
switch unit. Generators with constant arguments (`zeros`, `ones`, `arange`, ...) are
folded at load time: buffers present from cycle 0, not work.

Access maps are conservative (they may read more than the op needs, never less): a
dynamic index (`index_copy` at a runtime position) reads its whole operand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch_mlir import ir

from harden.core.graph import defining_op
from harden.core.tensor_types import TensorInfo
from harden.core.tensor_types import tensor_info as _uncached_tensor_info

Box = tuple[tuple[int, int], ...]
Access = Callable[[Box], "Box | None"]

# Ops whose value is known before the program runs: weights and literal tensors.
WEIGHT_OPS = {"torch.vtensor.literal", "harden.param", "arith.constant"}
# Generators that a compiler folds into initialized buffers (arguments are constants).
FOLDED_GENERATORS = {"zeros", "ones", "full", "empty", "arange", "new_zeros", "new_ones", "new_full", "new_empty",
                     "scalar_tensor", "zeros_like", "ones_like", "full_like", "empty_like"}

_ELEMENTWISE = {
    "add", "sub", "rsub", "mul", "div", "neg", "where", "masked_fill", "le", "lt", "ge", "gt", "eq", "ne",
    "abs", "maximum", "minimum", "clamp", "clamp_min", "clamp_max", "to", "_to_copy", "type_as", "relu",
    "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor", "logical_and", "logical_or", "logical_not",
    "fill", "floor", "ceil", "round", "remainder", "fmod", "square", "sign", "triu", "tril", "fill_", "lerp",
    "masked_fill_", "isnan", "isinf", "clamp_", "trunc",
}
_TRANSCENDENTAL = {
    "exp", "exp2", "log", "log2", "log1p", "rsqrt", "sqrt", "sigmoid", "silu", "gelu", "tanh", "cos", "sin",
    "erf", "reciprocal", "expm1", "softplus", "mish", "hardswish", "elu", "atan", "atan2",
}
_SOFTMAX = {"softmax", "_softmax", "_safe_softmax", "log_softmax", "_log_softmax"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "prod", "var", "std", "norm", "linalg_vector_norm",
               "argmax", "argmin", "all", "any", "logsumexp"}
_ROW_NORMS = {"rms_norm", "layer_norm", "native_layer_norm"}
_RESHAPES = {"view", "reshape", "_unsafe_view", "unsqueeze", "squeeze", "flatten", "unflatten", "contiguous",
             "clone", "alias", "detach", "lift_fresh_copy", "_reshape_alias", "view_as", "reshape_as"}
_BROADCASTS = {"expand", "expand_as", "broadcast_to"}
_INPLACE_UPDATES = {"index_copy", "index_put", "_index_put_impl", "index_put_", "select_scatter", "slice_scatter",
                    "copy", "scatter", "scatter_add", "masked_scatter", "index_copy_", "copy_"}
_GATHERS = {"embedding", "index_select", "gather", "index", "take_along_dim"}
_MATMULS = {"linear", "mm", "bmm", "matmul", "addmm", "baddbmm"}
_SDPA = {"scaled_dot_product_attention"}

# Names of ops that are attention cores, for finding layers.
ATTENTION_CORES = _SOFTMAX | _SDPA

_DTYPE_BYTES = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "si64": 8, "i64": 8, "ui64": 8, "si32": 4, "i32": 4,
                "si16": 2, "i16": 2, "si8": 1, "i8": 1, "ui8": 1, "i1": 1}


class ScheduleError(Exception):
    """A graph the scheduler cannot handle; `op` is where the diagnostic belongs."""

    def __init__(self, op, message: str):
        super().__init__(message)
        self.op = op
        self.message = message


@dataclass
class OperandUse:
    """A tensor an op reads: its value, shape and the box each iteration box reads of it."""

    value: ir.Value
    shape: tuple[int, ...]
    dtype: str
    access: Access
    counts_bytes: bool = True  # False: not streamed (a gather's table, an updated buffer)


@dataclass
class ResultUse:
    """A result's dimensions in the iteration space: `dims[i]` is the iteration dimension of
    result dimension i (None when collapsed, as a reduced dimension), plus an offset."""

    value: ir.Value
    shape: tuple[int, ...]
    dtype: str
    dims: tuple[int | None, ...]
    offsets: tuple[int, ...]


@dataclass
class OpModel:
    """The cost-model view of one op (see the module docstring)."""

    op_name: str  # e.g. "aten.linear", "harden.fused_qkv"
    operator_class: str | None  # None: free (a view)
    iteration: tuple[int, ...]
    operands: list[OperandUse]
    results: list[ResultUse]
    macs: int = 0  # multiply-accumulates, or additions for ternary_matmul
    weight_elements: int = 0  # logical weights of a matmul (sizes hardwired compute)
    vector_passes: float = 0.0  # basic vector passes per iteration element
    transcendentals: float = 0.0  # transcendental passes per iteration element
    moved_bytes: int | None = None  # bytes a move op streams, when not read + written boxes
    alias: int | None = None  # result 0 lives in the buffer of operands[alias]
    replication: float = 1.0  # result elements per stored element (expand, repeat_interleave)
    weight_names: tuple[str, ...] = ()
    attention_core: bool = False
    free_if_aliased_source: int | None = None  # a scatter of operands[k] already in place is free
    in_place: bool = False  # a functional update done in its first operand's buffer
    view_slot: tuple[int, int] | None = None  # a select: (dimension, index) of its operand
    stack_dim: int | None = None  # a stack: the new dimension
    note: str | None = None  # why the model is a conservative fallback
    code_bits: int = 0  # operands[1] holds n-bit codes carried in i8: stored at this many bits each


@dataclass
class Unscheduled:
    """An op that takes no schedule slot: constants, lists, scalars, folded generators."""

    kind: str  # "weight", "folded", "transparent"


_INFO_CACHE: dict = {}


def tensor_info(t: ir.Type) -> TensorInfo | None:
    """`core.tensor_types.tensor_info`, remembered per type (types are uniqued in a context,
    and reading a torch type means printing and parsing it)."""
    try:
        return _INFO_CACHE[t]
    except KeyError:
        info = _INFO_CACHE[t] = _uncached_tensor_info(t)
        return info


def dtype_bytes(dtype: str) -> int:
    return _DTYPE_BYTES.get(dtype, 4)


def numel(shape) -> int:
    return math.prod(shape)


def full_box(shape) -> Box:
    return tuple((0, d) for d in shape)


def box_numel(box: Box | None) -> int:
    if box is None:
        return 0
    n = 1
    for lo, hi in box:
        if hi <= lo:
            return 0
        n *= hi - lo
    return n


def op_name(op) -> str:
    """`aten.linear`, `harden.fused_qkv`, ...; `torch.operator` ops by their `name`."""
    name = op.operation.name
    if name == "torch.operator":
        name = ir.StringAttr(op.operation.attributes["name"]).value
    return name.removeprefix("torch.")


def _base(name: str) -> str:
    """`aten.add.Tensor` -> `add`."""
    return name.removeprefix("aten.").split(".")[0]


def _tensor(value: ir.Value, op):
    info = tensor_info(value.type)
    if info is None:
        return None
    if None in info.shape:
        raise ScheduleError(op, "has a dynamic shape; the static scheduler needs static shapes")
    return info


def _const(value: ir.Value):
    """The Python value of a torch constant (int, float, bool, None) or a list of them."""
    op = defining_op(value)
    if op is None:
        return _MISSING
    name = op.operation.name
    if name in ("torch.constant.int", "torch.constant.float", "torch.constant.bool"):
        attr = op.operation.attributes["value"]
        if name == "torch.constant.bool":
            return ir.BoolAttr(attr).value
        return ir.IntegerAttr(attr).value if name == "torch.constant.int" else ir.FloatAttr(attr).value
    if name == "torch.constant.none":
        return None
    if name == "torch.prim.ListConstruct":
        items = [_const(v) for v in op.operands]
        return _MISSING if any(i is _MISSING for i in items) else items
    return _MISSING


_MISSING = object()


def _dim(value: ir.Value, rank: int) -> int | None:
    d = _const(value)
    if not isinstance(d, int):
        return None
    return d + rank if d < 0 else d


def is_weight(value: ir.Value) -> bool:
    op = defining_op(value)
    return op is not None and op.operation.name in WEIGHT_OPS


def weight_name(value: ir.Value) -> str | None:
    """A weight's name: `harden.name` (harden-import) or a `harden.param`'s `param_name`."""
    op = defining_op(value)
    if op is None:
        return None
    attrs = op.operation.attributes
    for key in ("harden.name", "param_name"):
        if key in attrs:
            return ir.StringAttr(attrs[key]).value
    return None


def list_items(value: ir.Value) -> list[ir.Value] | None:
    """The tensors of a `torch.prim.ListConstruct` list, or None."""
    op = defining_op(value)
    if op is None or op.operation.name != "torch.prim.ListConstruct":
        return None
    return list(op.operands)


# ---------------------------------------------------------------------------------------
# Access maps


def identity_access(box: Box) -> Box:
    return box


def broadcast_access(out_shape, in_shape) -> Access:
    """Elementwise broadcasting (right-aligned): size-1 operand dimensions read index 0."""
    r = len(out_shape) - len(in_shape)
    if r < 0:
        return lambda box: full_box(in_shape)

    def access(box: Box) -> Box:
        return tuple((0, 1) if in_shape[j] == 1 else box[j + r] for j in range(len(in_shape)))

    return access


def _ravel(index, shape) -> int:
    flat = 0
    for i, d in zip(index, shape):
        flat = flat * d + i
    return flat


def _unravel(flat, shape) -> list[int]:
    index = []
    for d in reversed(shape):
        index.append(flat % d if d else 0)
        flat = flat // d if d else 0
    return index[::-1]


def bounding_box(lo: int, hi: int, shape) -> Box | None:
    """The smallest box of `shape` holding the row-major flat range [lo, hi)."""
    if hi <= lo:
        return None
    a, b = _unravel(lo, shape), _unravel(hi - 1, shape)
    box = []
    for k, d in enumerate(shape):
        if a[:k] == b[:k] and a[k] == b[k]:
            box.append((a[k], a[k] + 1))
        elif a[:k] == b[:k]:
            box.append((a[k], b[k] + 1))
        else:
            box.append((0, d))
    return tuple(box)


def reshape_access(out_shape, in_shape) -> Access:
    """A reshape keeps row-major order: map the flat range a box spans."""

    def access(box: Box) -> Box | None:
        if box_numel(box) == 0:
            return None
        lo = _ravel([b[0] for b in box], out_shape)
        hi = _ravel([b[1] - 1 for b in box], out_shape) + 1
        return bounding_box(lo, hi, in_shape)

    return access


def permute_access(perm) -> Access:
    """Result dimension i is operand dimension perm[i]."""
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return lambda box: tuple(box[inverse[j]] for j in range(len(perm)))


def _batch_access(out_batch, in_batch, box_batch):
    r = len(out_batch) - len(in_batch)
    return tuple((0, 1) if in_batch[j] == 1 else box_batch[j + r] for j in range(len(in_batch)))


# ---------------------------------------------------------------------------------------
# Op models


def model_op(op) -> OpModel | Unscheduled:
    """The OpModel of `op`, or Unscheduled for ops that take no schedule slot."""
    name = op.operation.name
    if name in WEIGHT_OPS:
        return Unscheduled("weight")
    if op.operation.regions and len(op.operation.regions):
        raise ScheduleError(op, "has regions; the static scheduler handles straight-line graphs only")
    results = [r for r in op.operation.results if tensor_info(r.type) is not None]
    if not results or name.startswith(("torch.constant.", "torch.prim.")) or name == "func.return":
        return Unscheduled("transparent")
    full = op_name(op)
    base = _base(full)
    if full.startswith("aten.") and base in FOLDED_GENERATORS and not any(
        tensor_info(v.type) is not None for v in op.operands
    ):
        return Unscheduled("folded")
    builder = _BUILDERS.get(full) or _BUILDERS.get(base) if full.startswith("aten.") else _BUILDERS.get(full)
    if builder is None:
        return _fallback(op, full, "no cost model for this op: costed as one vector pass, reading whole operands")
    return builder(op, full)


def _results(op, iteration=None) -> list[ResultUse]:
    out = []
    for r in op.operation.results:
        info = _tensor(r, op)
        if info is None:
            continue
        out.append(ResultUse(r, info.shape, info.dtype, tuple(range(len(info.shape))), (0,) * len(info.shape)))
    return out


def _operand(value: ir.Value, op, access: Access, counts_bytes=True) -> OperandUse | None:
    info = _tensor(value, op)
    if info is None:
        return None
    return OperandUse(value, info.shape, info.dtype, access, counts_bytes)


def _tensor_operands(op) -> list[ir.Value]:
    return [v for v in op.operands if tensor_info(v.type) is not None]


def _fallback(op, full: str, note: str | None) -> OpModel:
    results = _results(op)
    shape = results[0].shape
    operands = [_operand(v, op, (lambda s: lambda box: full_box(s))(tensor_info(v.type).shape)) for v in _tensor_operands(op)]
    return OpModel(full, "elementwise", shape, operands, results, vector_passes=1.0, note=note)


def _elementwise(op, full: str) -> OpModel:
    results = _results(op)
    shape = results[0].shape
    operands = [_operand(v, op, broadcast_access(shape, tensor_info(v.type).shape)) for v in _tensor_operands(op)]
    base = _base(full)
    if base == "where" and _is_masked_write(op, shape):
        return _masked_write(op, full)
    model = OpModel(full, "elementwise", shape, operands, results, vector_passes=1.0)
    if base in _TRANSCENDENTAL or (base == "pow" and not _is_square(op, full)):
        model.operator_class, model.transcendentals = "transcendental", 1.0
    if base in ("to", "_to_copy", "type_as") and results[0].dtype == (operands[0].dtype if operands else None):
        return _free(op, full, reshape_access(shape, operands[0].shape))
    return model


def _is_masked_write(op, shape) -> bool:
    """`where(mask, new, buffer)` with `new` smaller than `buffer` and `buffer` of the result's
    shape: the reference model's one-position KV-cache write (frontend/llama.py write_cache)."""
    values = _tensor_operands(op)
    if len(values) != 3:
        return False
    new, buffer = (tensor_info(v.type) for v in values[1:])
    return buffer.shape == shape and numel(new.shape) < numel(shape)


def _masked_write(op, full: str) -> OpModel:
    """`where(mask, new, buffer)`: an in-place update of operand 2 from operand 1."""
    return _inplace_update(op, full, buffer_index=2, source_index=1)


def _is_square(op, full: str) -> bool:
    return full == "aten.pow.Tensor_Scalar" and _const(op.operands[1]) in (2, 2.0)


def _free(op, full: str, access: Access, replication: float = 1.0) -> OpModel:
    results = _results(op)
    source = _tensor_operands(op)[0]
    operand = _operand(source, op, access)
    return OpModel(full, None, results[0].shape, [operand], results, alias=0, replication=replication)


def _reshape(op, full: str) -> OpModel:
    out = _results(op)[0].shape
    return _free(op, full, reshape_access(out, tensor_info(op.operands[0].type).shape))


def _broadcast(op, full: str) -> OpModel:
    out = _results(op)[0].shape
    src = tensor_info(op.operands[0].type).shape
    return _free(op, full, broadcast_access(out, src), replication=numel(out) / max(1, numel(src)))


def _repeat_interleave(op, full: str) -> OpModel:
    src = tensor_info(op.operands[0].type).shape
    repeats, d = _const(op.operands[1]), _dim(op.operands[2], len(src)) if len(op.operands) > 2 else None
    if full != "aten.repeat_interleave.self_int" or not isinstance(repeats, int) or d is None:
        return _move(op, full)

    def access(box: Box) -> Box:
        lo, hi = box[d]
        return box[:d] + ((lo // repeats, (hi - 1) // repeats + 1),) + box[d + 1:]

    return _free(op, full, access, replication=float(repeats))


def _select(op, full: str) -> OpModel:
    src = tensor_info(op.operands[0].type).shape
    d, index = _dim(op.operands[1], len(src)), _const(op.operands[2])
    if d is None or not isinstance(index, int):
        return _free(op, full, lambda box: full_box(src))
    index = index + src[d] if index < 0 else index
    model = _free(op, full, lambda box: box[:d] + ((index, index + 1),) + box[d:])
    model.view_slot = (d, index)
    return model


def _slice(op, full: str) -> OpModel:
    src = tensor_info(op.operands[0].type).shape
    d = _dim(op.operands[1], len(src))
    start = _const(op.operands[2])
    step = _const(op.operands[4]) if len(op.operands) > 4 else 1
    if d is None or not isinstance(step, int) or step <= 0:
        return _free(op, full, lambda box: full_box(src))
    start = 0 if start is None else start
    if not isinstance(start, int):
        return _free(op, full, lambda box: full_box(src))
    start = max(0, min(start + src[d] if start < 0 else start, src[d]))

    def access(box: Box) -> Box | None:
        lo, hi = box[d]
        if hi <= lo:
            return None
        return box[:d] + ((start + lo * step, start + (hi - 1) * step + 1),) + box[d + 1:]

    return _free(op, full, access)


def _transpose(op, full: str) -> OpModel:
    src = tensor_info(op.operands[0].type).shape
    rank = len(src)
    base = _base(full)
    if base == "transpose":
        a, b = _dim(op.operands[1], rank), _dim(op.operands[2], rank)
        if a is None or b is None:
            return _move(op, full)
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]
    elif base == "permute":
        dims = _const(op.operands[1])
        if not isinstance(dims, list):
            return _move(op, full)
        perm = [d + rank if d < 0 else d for d in dims]
    else:  # aten.t
        perm = list(range(rank))[::-1]
    if _moves_only_units(src, perm):
        # Swapping size-1 dimensions keeps row-major order: a reshape, not a data movement.
        return _reshape(op, full)
    results = _results(op)
    operand = _operand(op.operands[0], op, permute_access(perm))
    return OpModel(full, "move", results[0].shape, [operand], results)


def _moves_only_units(shape, perm) -> bool:
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def _move(op, full: str) -> OpModel:
    """Data movement with whole operands read (a conservative map)."""
    results = _results(op)
    operands = [_operand(v, op, (lambda s: lambda box: full_box(s))(tensor_info(v.type).shape)) for v in _tensor_operands(op)]
    return OpModel(full, "move", results[0].shape, operands, results)


def _cat(op, full: str) -> OpModel:
    items = list_items(op.operands[0])
    results = _results(op)
    out = results[0].shape
    d = _dim(op.operands[1], len(out)) if len(op.operands) > 1 else 0
    if items is None or d is None:
        return _move(op, full)
    operands, offset = [], 0
    for value in items:
        shape = tensor_info(value.type).shape
        if len(shape) != len(out):  # legacy empty tensors in cat
            continue
        operands.append(_operand(value, op, _cat_access(d, offset, shape[d])))
        offset += shape[d]
    return OpModel(full, "move", out, operands, results)


def _cat_access(d, offset, size) -> Access:
    def access(box: Box) -> Box | None:
        lo, hi = max(box[d][0], offset), min(box[d][1], offset + size)
        if hi <= lo:
            return None
        return box[:d] + ((lo - offset, hi - offset),) + box[d + 1:]

    return access


def _stack(op, full: str) -> OpModel:
    items = list_items(op.operands[0])
    results = _results(op)
    out = results[0].shape
    d = _dim(op.operands[1], len(out)) if len(op.operands) > 1 else 0
    if items is None or d is None:
        return _move(op, full)

    def access_for(k):
        return lambda box: box[:d] + box[d + 1:] if box[d][0] <= k < box[d][1] else None

    operands = [_operand(v, op, access_for(k)) for k, v in enumerate(items)]
    return OpModel(full, "move", out, operands, results, stack_dim=d)


def _inplace_update(op, full: str, buffer_index: int = 0, source_index: int | None = None) -> OpModel:
    """A functional update of operand `buffer_index` (the KV-cache write): done in place,
    moving the source (operand `source_index`, by default the op's own source operand)."""
    results = _results(op)
    out = results[0].shape
    values = list(op.operands)
    if source_index is None:
        source_index = {"index_copy": 3, "index_copy_": 3, "index_put": 2, "_index_put_impl": 2, "index_put_": 2,
                        "select_scatter": 1, "slice_scatter": 1, "copy": 1, "copy_": 1, "scatter": 3,
                        "scatter_add": 3, "masked_scatter": 2}.get(_base(full), 1)
    operands: list[OperandUse] = [_operand(values[buffer_index], op, identity_access, counts_bytes=False)]
    source_position = None
    for i, value in enumerate(values):
        if i == buffer_index:
            continue
        tensors = list_items(value) if tensor_info(value.type) is None else [value]
        for v in tensors or []:
            use = _operand(v, op, (lambda s: lambda box: full_box(s))(tensor_info(v.type).shape))
            if use is None:
                continue
            if i == source_index:
                source_position = len(operands)
            operands.append(use)
    source = operands[source_position] if source_position is not None else None
    moved = 2 * numel(source.shape) * dtype_bytes(source.dtype) if source else 0
    return OpModel(full, "move", out, operands, results, moved_bytes=moved, alias=0,
                   free_if_aliased_source=source_position, in_place=True)


def _gather(op, full: str) -> OpModel:
    results = _results(op)
    out = results[0].shape
    base = _base(full)
    operands = []
    if base == "embedding":
        table, indices = op.operands[0], op.operands[1]
        operands.append(_operand(table, op, lambda box: full_box(tensor_info(table.type).shape), counts_bytes=False))
        index_shape = tensor_info(indices.type).shape
        operands.append(_operand(indices, op, lambda box: box[: len(index_shape)]))
    else:
        for v in _tensor_operands(op):
            s = tensor_info(v.type).shape
            operands.append(_operand(v, op, (lambda s: lambda box: full_box(s))(s), counts_bytes=not is_weight(v)))
    moved = 2 * numel(out) * dtype_bytes(results[0].dtype)
    names = tuple(n for n in (weight_name(op.operands[0]),) if n)
    return OpModel(full, "move", out, operands, results, moved_bytes=moved, weight_names=names)


def _reduction(op, full: str) -> OpModel:
    src_value = op.operands[0]
    src = tensor_info(src_value.type).shape
    rank = len(src)
    results = _results(op)
    base = _base(full)
    dims = _const(op.operands[1]) if len(op.operands) > 1 else None
    if base in ("argmax", "argmin", "max", "min") and isinstance(dims, int):
        dims = [dims]
    if dims is None or dims is _MISSING or not isinstance(dims, list) or not dims:
        reduced = set(range(rank)) if dims in (None, []) else None
    else:
        reduced = {d + rank if d < 0 else d for d in dims}
    if reduced is None:
        return _fallback(op, full, "reduction with non-constant dimensions: reads whole operands")
    keep = len(results[0].shape) == rank
    for r in results:
        if keep:
            r.dims = tuple(None if i in reduced else i for i in range(rank))
        else:
            r.dims = tuple(i for i in range(rank) if i not in reduced)
        r.offsets = (0,) * len(r.shape)
    operands = [_operand(src_value, op, identity_access)]
    passes = 2.0 if base in ("var", "std", "norm", "linalg_vector_norm") else 1.0
    return OpModel(full, "reduction", src, operands, results, vector_passes=passes)


def _row_normalize(op, full: str) -> OpModel:
    """softmax and fused norms: each output row reads its whole input row."""
    results = _results(op)
    shape = results[0].shape
    base = _base(full)
    if base in _SOFTMAX:
        d = _dim(op.operands[1], len(shape))
        rows = {d} if d is not None else set(range(len(shape)))
        passes, transcendental = 3.0, 1.0
    else:
        normalized = _const(op.operands[1])
        count = len(normalized) if isinstance(normalized, list) else 1
        rows = set(range(len(shape) - count, len(shape)))
        passes, transcendental = 3.0, 0.0

    def access(box: Box) -> Box:
        return tuple((0, shape[i]) if i in rows else b for i, b in enumerate(box))

    operands = [_operand(op.operands[0], op, access)]
    for v in _tensor_operands(op)[1:]:
        operands.append(_operand(v, op, broadcast_access(shape, tensor_info(v.type).shape)))
    return OpModel(full, "transcendental" if transcendental else "reduction", shape, operands, results,
                   vector_passes=passes, transcendentals=transcendental, attention_core=base in _SOFTMAX)


def _linear_like(op, full: str) -> OpModel:
    """linear (x [..., K] . W[N, K]^T), mm/addmm/bmm/matmul: weights when the right side is constant."""
    base = _base(full)
    results = _results(op)
    out = results[0].shape
    if base == "linear":
        x, w = op.operands[0], op.operands[1]
        bias = op.operands[2] if len(op.operands) > 2 and tensor_info(op.operands[2].type) is not None else None
        xs, ws = tensor_info(x.type).shape, tensor_info(w.type).shape
        k = xs[-1]
        operands = [_operand(x, op, lambda box: box[:-1] + ((0, k),))]
        if len(ws) == 2:
            operands.append(_operand(w, op, lambda box: (box[-1], (0, k))))
        else:
            operands.append(_operand(w, op, lambda box: full_box(ws)))
        if bias is not None:
            operands.append(_operand(bias, op, broadcast_access(out, tensor_info(bias.type).shape)))
        macs = numel(out) * k
        weighted = is_weight(w)
        return OpModel(full, "matmul" if weighted else "attention", out, operands, results, macs=macs,
                       weight_elements=numel(ws) if weighted else 0,
                       weight_names=tuple(n for n in (weight_name(w),) if n))
    tensors = _tensor_operands(op)
    if base in ("addmm", "baddbmm"):
        bias, a, b = tensors[0], tensors[1], tensors[2]
    else:
        bias, a, b = None, tensors[0], tensors[1]
    a_shape, b_shape = tensor_info(a.type).shape, tensor_info(b.type).shape
    if len(a_shape) < 2 or len(b_shape) < 2:
        model = _fallback(op, full, None)
        model.operator_class, model.vector_passes = "attention", 0.0
        model.macs = numel(out) * a_shape[-1]
        return model
    k = a_shape[-1]
    out_batch = out[:-2]
    operands = [
        _operand(a, op, lambda box: _batch_access(out_batch, a_shape[:-2], box[:-2]) + (box[-2], (0, k))),
        _operand(b, op, lambda box: _batch_access(out_batch, b_shape[:-2], box[:-2]) + ((0, k), box[-1])),
    ]
    if bias is not None:
        operands.append(_operand(bias, op, broadcast_access(out, tensor_info(bias.type).shape)))
    weighted = is_weight(b)
    return OpModel(full, "matmul" if weighted else "attention", out, operands, results, macs=numel(out) * k,
                   weight_elements=numel(b_shape) if weighted else 0,
                   weight_names=tuple(n for n in (weight_name(b),) if n))


def _sdpa(op, full: str) -> OpModel:
    results = _results(op)
    out = results[0].shape
    q, k, v = op.operands[0], op.operands[1], op.operands[2]
    qs, ks, vs = (tensor_info(t.type).shape for t in (q, k, v))
    if len(qs) != 4 or len(ks) != 4 or len(vs) != 4:
        model = _fallback(op, full, None)
        model.operator_class, model.vector_passes = "attention", 0.0
        model.macs, model.attention_core = numel(qs[:-1]) * ks[-2] * (qs[-1] + vs[-1]), True
        return model
    heads, kv_heads = qs[1], ks[1]

    def kv_access(shape):
        def access(box: Box) -> Box:
            lo, hi = box[1]
            h = (lo * kv_heads // heads, (hi - 1) * kv_heads // heads + 1)
            return ((0, 1) if shape[0] == 1 else box[0], h, (0, shape[2]), (0, shape[3]))

        return access

    operands = [
        _operand(q, op, lambda box: box[:-1] + ((0, qs[-1]),)),
        _operand(k, op, kv_access(ks)),
        _operand(v, op, kv_access(vs)),
    ]
    if len(op.operands) > 3 and tensor_info(op.operands[3].type) is not None:
        mask = op.operands[3]
        ms = tensor_info(mask.type).shape
        scores = out[:-1] + (ks[-2],)
        operands.append(_operand(mask, op, lambda box: broadcast_access(scores, ms)(box[:-1] + ((0, ks[-2]),))))
    macs = numel(out[:-1]) * ks[-2] * (qs[-1] + vs[-1])
    return OpModel(full, "attention", out, operands, results, macs=macs, attention_core=True)


def _fused_qkv(op, full: str) -> OpModel:
    x, w = op.operands[0], op.operands[1]
    xs, ws = tensor_info(x.type).shape, tensor_info(w.type).shape
    k = xs[-1]
    total = ws[0]
    iteration = xs[:-1] + (total,)
    results = _results(op)
    offset = 0
    for r in results:
        r.offsets = (0,) * (len(r.shape) - 1) + (offset,)
        offset += r.shape[-1]
    operands = [
        _operand(x, op, lambda box: box[:-1] + ((0, k),)),
        _operand(w, op, lambda box: (box[-1], (0, k))),
    ]
    attrs = op.operation.attributes
    if "operandSegmentSizes" in attrs and len(op.operands) > 2:
        operands.append(_operand(op.operands[2], op, lambda box: (box[-1],)))
    return OpModel(full, "matmul", iteration, operands, results, macs=numel(iteration) * k,
                   weight_elements=numel(ws), weight_names=tuple(n for n in (weight_name(w),) if n))


def _ternary_linear(op, full: str) -> OpModel:
    x, codes, scales = op.operands[0], op.operands[1], op.operands[2]
    attrs = op.operation.attributes
    in_f = ir.IntegerAttr(attrs["in_features"]).value
    out_f = ir.IntegerAttr(attrs["out_features"]).value
    planes = ir.IntegerAttr(attrs["planes"]).value
    results = _results(op)
    out = results[0].shape
    cs, ss = tensor_info(codes.type).shape, tensor_info(scales.type).shape
    operands = [
        _operand(x, op, lambda box: box[:-1] + ((0, in_f),)),
        _operand(codes, op, lambda box: ((0, cs[0]), box[-1], (0, cs[2]))),
        _operand(scales, op, lambda box: ((0, ss[0]), box[-1] if ss[1] > 1 else (0, 1), (0, ss[2]))),
    ]
    if len(op.operands) > 3:
        operands.append(_operand(op.operands[3], op, lambda box: (box[-1],)))
    names = tuple(n for n in (weight_name(codes),) if n)
    return OpModel(full, "ternary_matmul", out, operands, results, macs=numel(out) * in_f * planes,
                   weight_elements=planes * out_f * in_f, weight_names=names)


def _int8_linear(op, full: str) -> OpModel:
    """A layer kept in int8: a matmul like any other, reading one byte per weight."""
    x, w, scales = op.operands[0], op.operands[1], op.operands[2]
    out_f, in_f = tensor_info(w.type).shape
    results = _results(op)
    out = results[0].shape
    operands = [
        _operand(x, op, lambda box: box[:-1] + ((0, in_f),)),
        _operand(w, op, lambda box: (box[-1], (0, in_f))),
        _operand(scales, op, lambda box: (box[-1], (0, 1))),
    ]
    if len(op.operands) > 3:
        operands.append(_operand(op.operands[3], op, lambda box: (box[-1],)))
    return OpModel(full, "matmul", out, operands, results, macs=numel(out) * in_f,
                   weight_elements=out_f * in_f, weight_names=tuple(n for n in (weight_name(w),) if n))


def _int_linear(op, full: str) -> OpModel:
    """n-bit codes in groups: a matmul reading `bits` per weight plus an f16 scale (and min)
    per group, so a hardwired chip sizes it like any multiply-accumulate layer and a streaming
    one moves the stored bits, not the i8 carrier."""
    x, w, scales = op.operands[0], op.operands[1], op.operands[2]
    out_f, in_f = tensor_info(w.type).shape
    groups = tensor_info(scales.type).shape[1]
    results = _results(op)
    out = results[0].shape
    operands = [
        _operand(x, op, lambda box: box[:-1] + ((0, in_f),)),
        _operand(w, op, lambda box: (box[-1], (0, in_f))),
    ]
    has_mins, has_bias = _segments(op)[3:5]
    per_group = op.operands[2 : 3 + has_mins]  # scales (and mins)
    operands += [_operand(v, op, lambda box: (box[-1], (0, groups))) for v in per_group]
    if has_bias:
        operands.append(_operand(op.operands[-1], op, lambda box: (box[-1],)))
    return OpModel(full, "matmul", out, operands, results, macs=numel(out) * in_f, weight_elements=out_f * in_f,
                   weight_names=tuple(n for n in (weight_name(w),) if n), code_bits=_int_value(op, "bits"))


def _segments(op) -> list[int]:
    return list(ir.DenseI32ArrayAttr(op.operation.attributes["operandSegmentSizes"]))


def _int_value(op, name: str) -> int:
    return ir.IntegerAttr(op.operation.attributes[name]).value


def _int_embedding(op, full: str) -> OpModel:
    """A lookup in an n-bit table: moves the rows it gathers, like aten.embedding."""
    indices, table = op.operands[0], op.operands[1]
    results = _results(op)
    out = results[0].shape
    index_shape = tensor_info(indices.type).shape
    operands = [
        _operand(indices, op, lambda box: box[: len(index_shape)]),
        _operand(table, op, lambda box: full_box(tensor_info(table.type).shape), counts_bytes=False),
    ]
    operands += [_operand(v, op, (lambda s: lambda box: full_box(s))(tensor_info(v.type).shape), counts_bytes=False) for v in op.operands[2:]]
    moved = 2 * numel(out) * dtype_bytes(results[0].dtype)
    return OpModel(full, "move", out, operands, results, moved_bytes=moved,
                   weight_names=tuple(n for n in (weight_name(table),) if n), code_bits=_int_value(op, "bits"))


def _build_table() -> dict[str, Callable]:
    table: dict[str, Callable] = {}
    for names, builder in (
        (_ELEMENTWISE | _TRANSCENDENTAL | {"pow"}, _elementwise),
        (_RESHAPES, _reshape),
        (_BROADCASTS, _broadcast),
        ({"repeat_interleave"}, _repeat_interleave),
        ({"select"}, _select),
        ({"slice", "narrow"}, _slice),
        ({"transpose", "permute", "t"}, _transpose),
        ({"cat", "concat", "concatenate"}, _cat),
        ({"stack"}, _stack),
        (_INPLACE_UPDATES, _inplace_update),
        (_GATHERS, _gather),
        (_REDUCTIONS, _reduction),
        (_SOFTMAX | _ROW_NORMS, _row_normalize),
        (_MATMULS, _linear_like),
        (_SDPA, _sdpa),
        ({"repeat", "roll", "flip", "constant_pad_nd", "pad", "tile"}, _move),
    ):
        for name in names:
            table[name] = builder
    table["harden.fused_qkv"] = _fused_qkv
    table["harden.ternary_linear"] = _ternary_linear
    table["harden.int8_linear"] = _int8_linear
    table["harden.int_linear"] = _int_linear
    table["harden.int_embedding"] = _int_embedding
    return table


_BUILDERS = _build_table()
