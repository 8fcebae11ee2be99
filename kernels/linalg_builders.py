"""Builders for the linalg/tensor/arith IR the harden lowering emits.

Small, shape-checked helpers on builtin tensors; the lowering passes compose them.
Affine maps and iterator types are written in MLIR's own syntax and parsed, which
reads like the IR it produces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch_mlir import ir
from torch_mlir.dialects import arith, linalg, math, tensor

from harden.core.tensor_types import tensor_info, vtensor_type


def f32() -> ir.Type:
    return ir.F32Type.get()


def ranked(shape: Sequence[int], element_type: ir.Type) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(list(shape), element_type)


def to_builtin(value: ir.Value) -> ir.Value:
    """`torch_c.to_builtin_tensor` of a `!torch.vtensor` (builtin tensors pass through)."""
    info = tensor_info(value.type)
    if not info.is_torch:
        return value
    element = ir.Type.parse(info.storage_dtype)
    op = ir.Operation.create(
        "torch_c.to_builtin_tensor", results=[ranked(info.shape, element)], operands=[value]
    )
    return op.result


def from_builtin(value: ir.Value, like: ir.Type) -> ir.Value:
    """`torch_c.from_builtin_tensor` back to the torch type `like` (or `value` itself)."""
    info = tensor_info(like)
    if not info.is_torch:
        return value
    op = ir.Operation.create(
        "torch_c.from_builtin_tensor", results=[vtensor_type(info.shape, info.dtype)], operands=[value]
    )
    return op.result


def collapse_rows(x: ir.Value) -> ir.Value:
    """[d0, ..., dn-1, K] -> [d0 * ... * dn-1, K]: the rows a linear maps independently."""
    shape = tensor_info(x.type).shape
    if len(shape) == 2:
        return x
    rows = 1
    for d in shape[:-1]:
        rows *= d
    groups = ir.ArrayAttr.get(
        [
            ir.ArrayAttr.get([_i64(i) for i in range(len(shape) - 1)]),
            ir.ArrayAttr.get([_i64(len(shape) - 1)]),
        ]
    )
    element = ir.RankedTensorType(x.type).element_type
    return tensor.CollapseShapeOp(ranked([rows, shape[-1]], element), x, groups).result


def expand_rows(y: ir.Value, leading: Sequence[int]) -> ir.Value:
    """Inverse of collapse_rows: [M, N] -> [*leading, N]."""
    if len(leading) == 1:
        return y
    n = tensor_info(y.type).shape[-1]
    rank = len(leading) + 1
    groups = ir.ArrayAttr.get(
        [
            ir.ArrayAttr.get([_i64(i) for i in range(rank - 1)]),
            ir.ArrayAttr.get([_i64(rank - 1)]),
        ]
    )
    shape = [*leading, n]
    element = ir.RankedTensorType(y.type).element_type
    return tensor.ExpandShapeOp(ranked(shape, element), y, groups, [], shape).result


def _i64(v: int) -> ir.IntegerAttr:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), v)


def zeros(shape: Sequence[int], element_type: ir.Type | None = None) -> ir.Value:
    """A tensor of zeros, the init of a reduction."""
    element_type = element_type or f32()
    empty = tensor.EmptyOp(list(shape), element_type).result
    zero = arith.ConstantOp(element_type, 0.0 if isinstance(element_type, ir.FloatType) else 0).result
    return linalg.fill(zero, outs=[empty])


def generic(
    inputs: Sequence[ir.Value],
    init: ir.Value,
    maps: Sequence[str],
    iterators: Sequence[str],
    body: Callable[..., ir.Value],
) -> ir.Value:
    """A `linalg.generic` with one output; `body(*block_args)` returns the yielded value.

    `maps` are affine maps in MLIR syntax (one per input, then the output), `iterators`
    are "parallel" / "reduction".
    """
    op = linalg.GenericOp(
        [init.type],
        list(inputs),
        [init],
        ir.ArrayAttr.get([ir.Attribute.parse(f"affine_map<{m}>") for m in maps]),
        ir.ArrayAttr.get([ir.Attribute.parse(f"#linalg.iterator_type<{it}>") for it in iterators]),
    )
    element_types = [ir.RankedTensorType(v.type).element_type for v in [*inputs, init]]
    block = op.regions[0].blocks.append(*element_types)
    with ir.InsertionPoint(block):
        linalg.YieldOp([body(*block.arguments)])
    return op.result


def matmul_transposed(x: ir.Value, w: ir.Value) -> ir.Value:
    """y[m, n] = sum_k x[m, k] * w[n, k] (the layout of torch.nn.Linear weights)."""
    m = tensor_info(x.type).shape[0]
    n = tensor_info(w.type).shape[0]
    return generic(
        [x, w],
        zeros([m, n]),
        ["(m, n, k) -> (m, k)", "(m, n, k) -> (n, k)", "(m, n, k) -> (m, n)"],
        ["parallel", "parallel", "reduction"],
        lambda a, b, acc: arith.addf(acc, arith.mulf(a, b)),
    )


def add_bias(y: ir.Value, bias: ir.Value) -> ir.Value:
    """y[m, n] + bias[n]."""
    m, n = tensor_info(y.type).shape
    return generic(
        [y, bias],
        tensor.EmptyOp([m, n], f32()).result,
        ["(m, n) -> (m, n)", "(m, n) -> (n)", "(m, n) -> (m, n)"],
        ["parallel", "parallel"],
        lambda a, b, _out: arith.addf(a, b),
    )


def scale_columns(y: ir.Value, scales: ir.Value) -> ir.Value:
    """y[m, n] * scales[n, 0] (one scale per output channel, as [N, 1])."""
    m, n = tensor_info(y.type).shape
    return generic(
        [y, scales],
        tensor.EmptyOp([m, n], f32()).result,
        ["(m, n) -> (m, n)", "(m, n) -> (n, 0)", "(m, n) -> (m, n)"],
        ["parallel", "parallel"],
        lambda a, s, _out: arith.mulf(a, s),
    )


def column_slice(y: ir.Value, start: int, size: int) -> ir.Value:
    """y[:, start:start+size]."""
    m = tensor_info(y.type).shape[0]
    element = ir.RankedTensorType(y.type).element_type
    return tensor.ExtractSliceOp(
        ranked([m, size], element), y, [], [], [], [0, start], [m, size], [1, 1]
    ).result


INT8_LEVELS = 127.0


def fake_quantize_int8_rows(x: ir.Value) -> ir.Value:
    """Per-row (per-token) absmax int8 quantization of x [M, K], returned dequantized:
    q = clamp(round_even(x * 127 / amax), -127, 127) * amax / 127, as BitNet b1.58 does."""
    m, k = tensor_info(x.type).shape
    amax = generic(
        [x],
        zeros([m]),
        ["(m, k) -> (m, k)", "(m, k) -> (m)"],
        ["parallel", "reduction"],
        lambda v, acc: arith.maximumf(acc, math.absf(v)),
    )

    def quantize(v, a, _out):
        levels = arith.ConstantOp(f32(), INT8_LEVELS).result
        step = arith.divf(arith.maximumf(a, arith.ConstantOp(f32(), 1e-30).result), levels)
        q = math.roundeven(arith.divf(v, step))
        q = arith.minimumf(arith.maximumf(q, arith.negf(levels)), levels)
        return arith.mulf(q, step)

    return generic(
        [x, amax],
        tensor.EmptyOp([m, k], f32()).result,
        ["(m, k) -> (m, k)", "(m, k) -> (m)", "(m, k) -> (m, k)"],
        ["parallel", "parallel"],
        quantize,
    )


def column_scales(scales: ir.Value, group_size: int, columns: int) -> ir.Value:
    """Group scales [P, N, Gn] -> [P, N, columns], each repeated over its group's columns,
    without a `k floordiv G` map: IREE's CPU tiling rejects one whose step its vector
    tile neither divides nor is divisible by (G = 3 against 8 on AVX2)."""
    planes, rows, groups = tensor_info(scales.type).shape
    element = ir.RankedTensorType(scales.type).element_type
    repeated = generic([scales], zeros([planes, rows, groups, group_size], element),
                       ["(p, n, g, j) -> (p, n, g)", "(p, n, g, j) -> (p, n, g, j)"], ["parallel"] * 4, lambda s, _out: s)
    flat = merge_axes(repeated, 2)
    if groups * group_size == columns:
        return flat
    return tensor.ExtractSliceOp(
        ranked([planes, rows, columns], element), flat, [], [], [], [0, 0, 0], [planes, rows, columns], [1, 1, 1]
    ).result


def merge_axes(w: ir.Value, axis: int) -> ir.Value:
    """Axes `axis` and `axis + 1` of w as one ([G, g, N] -> [G * g, N] at axis 0; [..., a, b]
    -> [..., a * b] at the last pair)."""
    shape = tensor_info(w.type).shape
    element = ir.RankedTensorType(w.type).element_type
    groups = [[i] for i in range(axis)] + [[axis, axis + 1]] + [[i] for i in range(axis + 2, len(shape))]
    reassociation = ir.ArrayAttr.get([ir.ArrayAttr.get([_i64(i) for i in g]) for g in groups])
    merged = [*shape[:axis], shape[axis] * shape[axis + 1], *shape[axis + 2:]]
    return tensor.CollapseShapeOp(ranked(merged, element), w, reassociation).result


def split_columns(w: ir.Value, group_size: int) -> ir.Value:
    """[R, K] -> [R, K / group_size, group_size]: a matrix's rows cut into column groups."""
    rows, columns = tensor_info(w.type).shape
    element = ir.RankedTensorType(w.type).element_type
    groups = ir.ArrayAttr.get([ir.ArrayAttr.get([_i64(0)]), ir.ArrayAttr.get([_i64(1), _i64(2)])])
    return tensor.ExpandShapeOp(ranked([rows, columns // group_size, group_size], element), w, groups, [], [rows, columns // group_size, group_size]).result
