"""The `harden` dialect, defined at run time on torch-mlir's MLIR bindings.

The ops are declared with `torch_mlir.dialects.ext` (which emits IRDL and loads it), so
they parse and print in MLIR's generic form, e.g.

    %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 64 : i64, k_size = 32 : i64,
        v_size = 32 : i64, operandSegmentSizes = array<i32: 1, 1, 0>} : (...) -> (...)

IRDL checks operand and result counts and attribute kinds; the checks that need shapes
(packed sizes, scale shapes, q+k+v sizes) are the Python `verify_invariants` below. They
report a failure as an error diagnostic at the op, which MLIR's verifier turns into a
failed verification, never a Python exception.

Operands and results are tensors: `!torch.vtensor` on the graphs the passes rewrite, or
builtin tensors; the verifiers accept both.
"""

# No `from __future__ import annotations`: dialects.ext reads the op fields' annotations
# as live objects.
from typing import Any

from torch_mlir import ir
from torch_mlir.dialects import ext

from harden.core.tensor_types import TensorInfo, tensor_info
from harden.dialects.ternary_pack import SCALE_KINDS, packed_columns, scale_shape


class Harden(ext.Dialect, name="harden"):
    """Ops of hardened Llama graphs: fused projections and ternary weights."""


def _i64(value: int) -> ir.IntegerAttr:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), int(value))


def _shape_str(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _check_last_dim(what: str, info: TensorInfo | None, expected: int) -> str | None:
    if info is None or info.rank == 0:
        return f"{what} must be a ranked tensor"
    last = info.shape[-1]
    if last is not None and last != expected:
        return f"{what} has last dimension {last}, expected {expected}"
    return None


def _check_shape(what: str, info: TensorInfo | None, expected: tuple[int, ...]) -> str | None:
    if info is None:
        return f"{what} must be a ranked tensor"
    if len(info.shape) != len(expected) or any(
        d is not None and d != e for d, e in zip(info.shape, expected)
    ):
        return f"{what} has shape {_shape_str(info.shape)}, expected {_shape_str(expected)}"
    return None


def _check_rows_match(input_info: TensorInfo, result_info: TensorInfo, what: str) -> str | None:
    """Leading (batch, sequence) dimensions pass through a linear unchanged."""
    if result_info.rank != input_info.rank:
        return f"{what} has rank {result_info.rank}, expected {input_info.rank} like the input"
    for d_in, d_out in zip(input_info.shape[:-1], result_info.shape[:-1]):
        if d_in is not None and d_out is not None and d_in != d_out:
            return (
                f"{what} has leading dimensions {_shape_str(result_info.shape[:-1])}, "
                f"expected {_shape_str(input_info.shape[:-1])} like the input"
            )
    return None


def _check_dtype(what: str, info: TensorInfo | None, storage: str, expected: str) -> str | None:
    """`storage` is the builtin element type (i8 for torch's si8 too)."""
    if info is not None and info.storage_dtype != storage:
        return f"{what} must hold {expected}, got element type {info.dtype}"
    return None


def _first_error(*checks) -> str | None:
    """Runs checks (callables returning an error string or None) and stops at the first error."""
    for check in checks:
        error = check()
        if error:
            return error
    return None


def _linear_operands_error(op, in_f: int, out_f: int, weight: tuple, scales: tuple) -> str | None:
    """Operand and result checks shared by the quantized linears: weight = (what, shape,
    what its i8 elements hold), scales = (what, shape) of f32."""
    x = tensor_info(op.input.type)
    w = tensor_info(op.weight.type)
    s = tensor_info(op.scales.type)
    y = tensor_info(op.output.type)
    (weight_what, weight_shape, codes), (scales_what, scales_shape) = weight, scales
    checks = [
        lambda: _check_last_dim("input", x, in_f),
        lambda: _check_shape(weight_what, w, weight_shape),
        lambda: _check_dtype("weight", w, "i8", codes),
        lambda: _check_shape(scales_what, s, scales_shape),
        lambda: _check_dtype("scales", s, "f32", "f32"),
        lambda: _check_last_dim("result", y, out_f),
        lambda: _check_rows_match(x, y, "result"),
    ]
    if op.bias is not None:
        checks.append(lambda: _check_shape("bias", tensor_info(op.bias.type), (out_f,)))
    return _first_error(*checks)


def _attribute_error(op: ir.OpView, ints: tuple[str, ...], strings: tuple[str, ...] = ()) -> str | None:
    """The Python verifier may run before IRDL's own checks: make sure attributes exist."""
    attrs = op.operation.attributes
    for name in ints + strings:
        if name not in attrs:
            return f"attribute '{name}' is required"
        kind = ir.IntegerAttr if name in ints else ir.StringAttr
        if not isinstance(attrs[name].maybe_downcast(), kind):
            return f"attribute '{name}' must be {'an integer' if name in ints else 'a string'}"
    return None


def _arity_error(op: ir.OpView) -> str | None:
    """Operand and result counts against the op's definition. IRDL checks them too, but may
    run after this verifier, whose accessors would then index past the operands (a module
    with an operand deleted by hand)."""
    for kind, values, segment_attr in (("operand", op.operation.operands, "operandSegmentSizes"),
                                       ("result", op.operation.results, "resultSegmentSizes")):
        definition = ext.OperandDef if kind == "operand" else ext.ResultDef
        optional = [f.variadicity == ext.Variadicity.optional for f in type(op)._fields if isinstance(f, definition)]
        required = optional.count(False)
        if not required <= len(values) <= len(optional):
            expected = required if required == len(optional) else f"{required} to {len(optional)}"
            return f"expects {expected} {kind}s, got {len(values)}"
        if required < len(optional):  # the segment sizes say which optional ones are present
            attrs = op.operation.attributes
            attr = attrs[segment_attr].maybe_downcast() if segment_attr in attrs else None
            sizes = list(attr) if isinstance(attr, ir.DenseI32ArrayAttr) else None
            if (sizes is None or len(sizes) != len(optional) or sum(sizes) != len(values)
                    or any(n not in ((0, 1) if opt else (1,)) for n, opt in zip(sizes, optional))):
                return f"attribute '{segment_attr}' does not match its {len(values)} {kind}s"
    return None


def _report(op: ir.OpView, error: str | None) -> bool:
    if error:
        op.location.emit_error(f"'{op.OPERATION_NAME}' op {error}")
        return False
    return True


class FusedQKVOp(Harden.Operation, name="fused_qkv"):
    """q, k, v = x @ W^T (+ b) split along the output features into q_size, k_size, v_size.

    `weight` is [q_size + k_size + v_size, in_features] (the q, k and v weights stacked),
    `bias` (optional) is [q_size + k_size + v_size].
    """

    input: ext.Operand[Any]
    weight: ext.Operand[Any]
    q_size: ir.IntegerAttr
    k_size: ir.IntegerAttr
    v_size: ir.IntegerAttr
    q: ext.Result[Any]
    k: ext.Result[Any]
    v: ext.Result[Any]
    bias: ext.Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        return _report(self, _arity_error(self) or self._error())

    def _error(self) -> str | None:
        missing = _attribute_error(self, ("q_size", "k_size", "v_size"))
        if missing:
            return missing
        sizes = [self.q_size.value, self.k_size.value, self.v_size.value]
        if min(sizes) <= 0:
            return f"q/k/v sizes must be positive, got {sizes}"
        total = sum(sizes)
        x = tensor_info(self.input.type)
        w = tensor_info(self.weight.type)
        if x is None or x.rank == 0 or x.shape[-1] is None:
            return "input must be a ranked tensor with a static last dimension"
        in_features = x.shape[-1]
        checks = [lambda: _check_shape("weight", w, (total, in_features))]
        if self.bias is not None:
            checks.append(lambda: _check_shape("bias", tensor_info(self.bias.type), (total,)))
        for name, result, size in zip("qkv", (self.q, self.k, self.v), sizes):
            info = tensor_info(result.type)
            checks.append(lambda name=name, info=info, size=size: _check_last_dim(f"result {name}", info, size))
            checks.append(lambda name=name, info=info: _check_rows_match(x, info, f"result {name}"))
        return _first_error(*checks)


class TernaryLinearOp(Harden.Operation, name="ternary_linear"):
    """y = x @ W^T (+ b) with W = sum over planes p of scales[p] * T[p], T in {-1, 0, +1}.

    `weight` holds the 2-bit codes of T packed four per byte: i8 [planes, out_features,
    ceil(in_features / 4)]; `scales` is f32 [planes, 1, 1] (scale_kind "tensor"),
    [planes, out_features, 1] ("channel") or [planes, out_features, ceil(in_features /
    group_size)] ("group"). The byte and code layout is documented in ternary_pack.py.
    For "tensor" and "channel" scales group_size equals in_features.
    """

    input: ext.Operand[Any]
    weight: ext.Operand[Any]
    scales: ext.Operand[Any]
    in_features: ir.IntegerAttr
    out_features: ir.IntegerAttr
    group_size: ir.IntegerAttr
    planes: ir.IntegerAttr
    scale_kind: ir.StringAttr
    output: ext.Result[Any]
    bias: ext.Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        return _report(self, _arity_error(self) or self._error())

    def _error(self) -> str | None:
        missing = _attribute_error(
            self, ("in_features", "out_features", "group_size", "planes"), ("scale_kind",)
        )
        if missing:
            return missing
        in_f, out_f = self.in_features.value, self.out_features.value
        group, planes, kind = self.group_size.value, self.planes.value, self.scale_kind.value
        if in_f <= 0 or out_f <= 0:
            return f"in_features and out_features must be positive, got {in_f} and {out_f}"
        if planes not in (1, 2):
            return f"planes must be 1 or 2, got {planes}"
        if kind not in SCALE_KINDS:
            return f"scale_kind must be one of {', '.join(SCALE_KINDS)}, got '{kind}'"
        if group <= 0 or group > in_f:
            return f"group_size must be in [1, in_features = {in_f}], got {group}"
        if kind != "group" and group != in_f:
            return f"group_size must equal in_features ({in_f}) for scale_kind '{kind}', got {group}"
        return _linear_operands_error(
            self, in_f, out_f,
            ("packed weight", (planes, out_f, packed_columns(in_f)), "i8 packed codes"),
            (f"scales ({kind})", scale_shape(kind, planes, out_f, in_f, group)),
        )


class Int8LinearOp(Harden.Operation, name="int8_linear"):
    """y = x @ (scales * W)^T (+ b): a layer kept out of ternary in int8 (keep-as=int8).

    `weight` is i8 [out_features, in_features] (codes in [-127, 127], nn.Linear's layout),
    `scales` is f32 [out_features, 1] (one per output channel), `bias` (optional)
    [out_features]. See int8_quant.py.
    """

    input: ext.Operand[Any]
    weight: ext.Operand[Any]
    scales: ext.Operand[Any]
    in_features: ir.IntegerAttr
    out_features: ir.IntegerAttr
    output: ext.Result[Any]
    bias: ext.Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        return _report(self, _arity_error(self) or self._error())

    def _error(self) -> str | None:
        missing = _attribute_error(self, ("in_features", "out_features"))
        if missing:
            return missing
        in_f, out_f = self.in_features.value, self.out_features.value
        if in_f <= 0 or out_f <= 0:
            return f"in_features and out_features must be positive, got {in_f} and {out_f}"
        return _linear_operands_error(self, in_f, out_f, ("weight", (out_f, in_f), "i8 codes"), ("scales", (out_f, 1)))


def _int_grid_error(op, rows: int, in_f: int) -> str | None:
    """Checks of the n-bit grid shared by int_linear and int_embedding: bits, group_size,
    codes i8 [rows, in_f], scales (and mins) f16 [rows, in_f / group_size]."""
    missing = _attribute_error(op, ("bits", "group_size"))
    if missing:
        return missing
    bits, group = op.bits.value, op.group_size.value
    if not 2 <= bits <= 8:
        return f"bits must be in [2, 8], got {bits}"
    if group <= 0 or in_f % group:
        return f"group_size must divide {in_f}, got {group}"
    if op.mins is not None and bits > 7:
        return f"an affine grid (with mins) holds at most 7-bit codes in i8, got bits = {bits}"
    groups = in_f // group
    checks = [
        lambda: _check_shape("weight", tensor_info(op.weight.type), (rows, in_f)),
        lambda: _check_dtype("weight", tensor_info(op.weight.type), "i8", f"{bits}-bit codes in i8"),
        lambda: _check_shape("scales", tensor_info(op.scales.type), (rows, groups)),
        lambda: _check_dtype("scales", tensor_info(op.scales.type), "f16", "f16"),
    ]
    if op.mins is not None:
        checks += [
            lambda: _check_shape("mins", tensor_info(op.mins.type), (rows, groups)),
            lambda: _check_dtype("mins", tensor_info(op.mins.type), "f16", "f16"),
        ]
    return _first_error(*checks)


class IntLinearOp(Harden.Operation, name="int_linear"):
    """y = x @ W^T (+ b) with W = scales * Q (+ mins) per group of `group_size` input columns.

    `weight` holds the `bits`-bit integer codes Q, one per i8 element: i8 [out_features,
    in_features] (nn.Linear's layout), in [-2^(bits-1), 2^(bits-1) - 1] without mins
    (symmetric) or in [0, 2^bits - 1] with them (affine). `scales` and the optional `mins`
    are f16 [out_features, in_features / group_size]; `bias` (optional) [out_features]. The
    stored size counts `bits` per code (quant/intn.py): the i8 element is the IR's carrier.
    """

    input: ext.Operand[Any]
    weight: ext.Operand[Any]
    scales: ext.Operand[Any]
    in_features: ir.IntegerAttr
    out_features: ir.IntegerAttr
    bits: ir.IntegerAttr
    group_size: ir.IntegerAttr
    output: ext.Result[Any]
    mins: ext.Operand[Any] | None = None
    bias: ext.Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        return _report(self, _arity_error(self) or self._error())

    def _error(self) -> str | None:
        missing = _attribute_error(self, ("in_features", "out_features"))
        if missing:
            return missing
        in_f, out_f = self.in_features.value, self.out_features.value
        if in_f <= 0 or out_f <= 0:
            return f"in_features and out_features must be positive, got {in_f} and {out_f}"
        x, y = tensor_info(self.input.type), tensor_info(self.output.type)
        checks = [
            lambda: _int_grid_error(self, out_f, in_f),
            lambda: _check_last_dim("input", x, in_f),
            lambda: _check_last_dim("result", y, out_f),
            lambda: _check_rows_match(x, y, "result"),
        ]
        if self.bias is not None:
            checks.append(lambda: _check_shape("bias", tensor_info(self.bias.type), (out_f,)))
        return _first_error(*checks)


class IntEmbeddingOp(Harden.Operation, name="int_embedding"):
    """Rows of an n-bit table: result[..., d] = scales[i, d / group_size] * Q[i, d] (+ mins) for
    i = indices[...]. The table is stored as `harden.int_linear`'s weight is (codes i8
    [num_embeddings, dim], f16 scales and optional mins [num_embeddings, dim / group_size]),
    so a classifier tied to the embedding reads the same constants: stored once."""

    indices: ext.Operand[Any]
    weight: ext.Operand[Any]
    scales: ext.Operand[Any]
    bits: ir.IntegerAttr
    group_size: ir.IntegerAttr
    output: ext.Result[Any]
    mins: ext.Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        return _report(self, _arity_error(self) or self._error())

    def _error(self) -> str | None:
        w, idx, y = tensor_info(self.weight.type), tensor_info(self.indices.type), tensor_info(self.output.type)
        if w is None or w.rank != 2 or None in w.shape:
            return "weight must be a static 2-D tensor of codes"
        if idx is None or y is None:
            return "indices and result must be ranked tensors"
        rows, dim = w.shape
        return _first_error(
            lambda: _int_grid_error(self, rows, dim),
            lambda: None if idx.storage_dtype in ("i64", "i32") else f"indices must be integers, got {idx.dtype}",
            lambda: _check_shape("result", y, (*idx.shape, dim)),
        )


class ParamOp(Harden.Operation, name="param"):
    """A weight kept outside the IR: tensor `name` of the module's parameter file.

    Large models keep their weights in a safetensors file beside the MLIR (named by the
    module attribute `harden.params`), so the IR stays small; passes read and write the
    tensors through the weight store, and the lowering turns each one into an IREE
    parameter (`#stream.parameter.named`).
    """

    param_name: ir.StringAttr
    result: ext.Result[Any]

    def verify_invariants(self) -> bool:
        return _report(self, _arity_error(self) or self._error())

    def _error(self) -> str | None:
        missing = _attribute_error(self, (), ("param_name",))
        if missing:
            return missing
        info = tensor_info(self.result.type)
        if info is None or info.num_elements() is None:
            return "result must be a tensor of static shape"
        return None


def build_fused_qkv(x, weight, sizes, result_types, bias=None, loc=None, ip=None) -> FusedQKVOp:
    """Creates a `harden.fused_qkv`; sizes = (q_size, k_size, v_size)."""
    q, k, v = (_i64(s) for s in sizes)
    return FusedQKVOp(x, weight, q, k, v, *result_types, bias=bias, loc=loc, ip=ip)


def build_param(param_name: str, result_type, loc=None, ip=None) -> ParamOp:
    """Creates a `harden.param` reading tensor `param_name` of the parameter file."""
    return ParamOp(ir.StringAttr.get(param_name), result_type, loc=loc, ip=ip)


def build_ternary_linear(
    x,
    packed,
    scales,
    *,
    in_features: int,
    out_features: int,
    group_size: int,
    planes: int,
    scale_kind: str,
    result_type,
    bias=None,
    loc=None,
    ip=None,
) -> TernaryLinearOp:
    """Creates a `harden.ternary_linear` from packed codes and scales (already values in the IR)."""
    return TernaryLinearOp(
        x,
        packed,
        scales,
        _i64(in_features),
        _i64(out_features),
        _i64(group_size),
        _i64(planes),
        ir.StringAttr.get(scale_kind),
        result_type,
        bias=bias,
        loc=loc,
        ip=ip,
    )


def build_int8_linear(x, weight, scales, *, result_type, bias=None, loc=None, ip=None) -> Int8LinearOp:
    """Creates a `harden.int8_linear` from i8 codes [out, in] and f32 scales [out, 1]."""
    out_features, in_features = tensor_info(weight.type).shape
    return Int8LinearOp(x, weight, scales, _i64(in_features), _i64(out_features), result_type, bias=bias, loc=loc, ip=ip)


def build_int_linear(x, weight, scales, *, bits: int, group_size: int, result_type, mins=None, bias=None, loc=None, ip=None) -> IntLinearOp:
    """Creates a `harden.int_linear` from i8 codes [out, in] and f16 scales (and mins) [out, groups]."""
    out_features, in_features = tensor_info(weight.type).shape
    return IntLinearOp(
        x, weight, scales, _i64(in_features), _i64(out_features), _i64(bits), _i64(group_size), result_type,
        mins=mins, bias=bias, loc=loc, ip=ip,
    )


def build_int_embedding(indices, weight, scales, *, bits: int, group_size: int, result_type, mins=None, loc=None, ip=None) -> IntEmbeddingOp:
    """Creates a `harden.int_embedding` gathering rows of an n-bit table."""
    return IntEmbeddingOp(indices, weight, scales, _i64(bits), _i64(group_size), result_type, mins=mins, loc=loc, ip=ip)
