"""harden-fuse-qkv: one `harden.fused_qkv` for the q, k and v projections of attention."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch_mlir import ir

from harden.core.graph import body_ops, functions, is_none, users
from harden.core.pass_base import Pass, PassContext
from harden.core.tensor_types import tensor_info
from harden.core.weights import erase_if_unused
from harden.dialects.harden import build_fused_qkv

LINEAR = "torch.aten.linear"


@dataclass(frozen=True)
class FuseQKV(Pass):
    """Fuse the q, k and v `torch.aten.linear` ops that read one activation into `harden.fused_qkv`.

    Matches exactly three linears reading the same activation, in program order q, k, v,
    with constant 2-D weights of one dtype and one input width, k and v of equal output
    size and q a multiple of it (any grouped-query ratio), and either no bias or a
    constant bias on all three. The fused weight (and bias) is the concatenation along the
    output features, so numerics are unchanged up to f32 rounding of the matmul. Anything
    else is left alone, with a remark saying why under --harden-remarks: a non-constant
    weight or bias, linears on different inputs, two of the three, mismatched dtypes or
    shapes.
    """

    name = "harden-fuse-qkv"

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        for func in functions(module):
            for group in _linears_by_input(func):
                reason = _refusal(group, ctx)
                if reason:
                    for linear in group:
                        ctx.remark(linear, f"not fused into harden.fused_qkv: {reason}")
                else:
                    _fuse(group, ctx)


def _linears_by_input(func) -> list[list]:
    """The linears of a function grouped by the activation they read, in program order."""
    ops = body_ops(func)
    order = {op.operation: i for i, op in enumerate(ops)}
    groups, seen = [], set()
    for op in ops:
        if op.operation.name != LINEAR or op.operation in seen:
            continue
        x = op.operands[0]
        group = sorted(
            (u for u in users(x) if u.operation.name == LINEAR and u.operands[0] == x),
            key=lambda u: order[u.operation],
        )
        seen.update(u.operation for u in group)
        groups.append(group)
    return groups


def _refusal(group, ctx: PassContext) -> str | None:
    """Why these linears (all reading one activation) cannot be fused, or None."""
    if len(group) != 3:
        return (
            f"{len(group)} linear op(s) read this activation; q, k and v fusion needs exactly 3"
        )
    weights = [_info(op.operands[1]) for op in group]
    for op, w in zip(group, weights):
        if ctx.weights.value_of(op.operands[1]) is None:
            return "a weight is not a constant"
        if w is None or w.rank != 2 or None in w.shape:
            return "a weight is not a static 2-D tensor"
    if len({w.dtype for w in weights}) != 1:
        return f"weight dtypes differ ({', '.join(w.dtype for w in weights)})"
    if len({w.shape[1] for w in weights}) != 1:
        return f"weight input sizes differ ({', '.join(str(w.shape[1]) for w in weights)})"
    q, k, v = (w.shape[0] for w in weights)
    if k != v or q % k:
        return f"output sizes {q}, {k}, {v} are not q, k, v of attention (k = v, q a multiple of k)"
    biases = [op.operands[2] for op in group]
    if any(is_none(b) for b in biases) != all(is_none(b) for b in biases):
        return "only some of the linears have a bias"
    if not is_none(biases[0]) and any(ctx.weights.value_of(b) is None for b in biases):
        return "a bias is not a constant"
    return None


def _info(value: ir.Value):
    return tensor_info(value.type)


def _fused_name(names: list[str | None]) -> str | None:
    """`a.wq.weight`, `a.wk.weight`, `a.wv.weight` -> `a.wq+wk+wv.weight` (None if unnamed)."""
    if None in names:
        return None
    parts = [n.split(".") for n in names]
    if len({len(p) for p in parts}) != 1:
        return None
    differing = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    if len(differing) != 1:
        return None
    i = differing[0]
    return ".".join(parts[0][:i] + ["+".join(p[i] for p in parts)] + parts[0][i + 1 :])


def _fuse(group, ctx: PassContext) -> None:
    """Replaces the three linears by one fused_qkv with concatenated weight and bias."""
    first = group[0]
    dtype = _info(first.operands[1]).dtype
    weight_ops = [ctx.weights.constant_op(op.operands[1]) for op in group]
    bias_ops = [ctx.weights.constant_op(op.operands[2]) for op in group]
    name = _fused_name([ctx.weights.name_of(op.operands[1]) for op in group])
    with ir.InsertionPoint(first), first.location:
        weight = ctx.weights.literal(
            np.concatenate([ctx.weights.value_of(op.operands[1]) for op in group]), dtype, name
        )
        bias = None
        if not is_none(first.operands[2]):
            bias = ctx.weights.literal(
                np.concatenate([ctx.weights.value_of(op.operands[2]) for op in group]),
                _info(first.operands[2]).dtype,
                name and name.replace(".weight", ".bias"),
            )
        sizes = [_info(op.operands[1]).shape[0] for op in group]
        loc = ir.Location.fused([op.location for op in group])
        fused = build_fused_qkv(
            first.operands[0], weight, sizes, [op.result.type for op in group], bias=bias, loc=loc
        )
    for op, result in zip(group, fused.results):
        op.result.replace_all_uses_with(result)
        op.operation.erase()
    for const in weight_ops + bias_ops:
        erase_if_unused(const)
