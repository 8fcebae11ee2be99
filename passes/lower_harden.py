"""harden-lower-harden-ops: `harden.*` ops to linalg/arith/tensor on builtin tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg, ml_program, tensor

from harden.core.graph import defining_op, ops_named
from harden.core.pass_base import Pass, PassContext, option
from harden.core.tensor_types import tensor_info
from harden.core.weights import PARAM_SYMBOL_PREFIX, erase_if_unused
from harden.kernels import linalg_builders as lb
from harden.kernels import vnni
from harden.kernels.contract import kernel_isa
from harden.kernels.contract import unavailable_reason as vnni_unavailable_reason
from harden.kernels.exact import kernel_function_text, prepack_words


@dataclass(frozen=True)
class LowerHardenOps(Pass):
    """Lower `harden.fused_qkv`, `harden.ternary_linear` and `harden.param` to builtin tensors.

    Operands cross into builtin tensors with `torch_c.to_builtin_tensor` and results come
    back with `torch_c.from_builtin_tensor`, so the surrounding torch graph is untouched
    and torch-mlir's own pipeline lowers it afterwards. fused_qkv becomes one matmul
    (with the weight in nn.Linear layout) and three column slices. ternary_linear keeps
    its weight as 2-bit codes, so the bytes the executable reads are the hardened ones:
    kernel=exact re-lays the codes out offline as i32 words of 16 codes and runs
    the fast exact kernel of ternary_exact_kernel.py (constant weights only);
    kernel=reference is one plain generic that unpacks code k of byte k/4, scales it and
    accumulates x * w in f32. Both equal the numpy reference up to f32 rounding.
    activations=int8 first rounds each token's activations to 127 levels of its absmax
    (BitNet b1.58's numerics, about 1e-2 relative error; an explicit choice).
    kernel=vnni calls the C kernels of ternary_vnni_kernel.py (IREE custom dispatches;
    exact fixed-point numerics for activations=f32, BitNet's for int8) where they can run:
    where the kernel object is not built, the CPU has neither AVX-512 VNNI nor AVX2, or the
    scale groups do not fit the kernels, it falls back to kernel=exact (a warning, or a
    remark per op).
    kernel=auto (default) is vnni where this host can run it and exact elsewhere, without
    the warning: vnni decodes tinyllama-1.1b 1.4x faster than exact (README), but its
    output runs only on hosts with the objects and AVX-512 VNNI or AVX2 (the backend links
    the build for the CPU it runs on); exact is portable IR. On AVX2, kernel=auto runs
    prompts (more than one row) on IREE's f32 matmul of the weight dequantized once per
    call (`_lower_ternary_dequantized`), which is faster there than either exact kernel.
    Where the C kernels run, int_linear and int8_linear run on them too (kernel=auto: where
    they are faster, decode and 4-bit storage in prefill; kernel=vnni: always), their codes
    stored in 4 bits (codes of up to 4 bits) or 8, exact (see `_integer_codes_vnni`);
    elsewhere int_linear becomes a
    batch_matmul over the groups on its i8 codes and int8_linear (a layer kept with
    keep-as=int8) a matmul on the i8 codes (laid out [K, N] offline) and the per-channel
    scale, for one row; a prompt dequantizes their codes once per call and runs an f32
    matmul. int_embedding is a generic that gathers codes and scales by index.
    A `harden.param` becomes an external
    `ml_program.global` (one per parameter name) that the IREE step binds to the
    parameter file. Ops with dynamic shapes are refused.
    """

    name = "harden-lower-harden-ops"

    kernel: Literal["auto", "exact", "reference", "vnni"] = option(
        "auto", "ternary_linear kernel: auto (vnni where this host runs it, else exact), exact (fast, pure linalg), "
        "vnni (C custom dispatch, AVX-512 VNNI or AVX2; else exact, with a warning) or reference"
    )
    activations: Literal["f32", "int8"] = option("f32", "int8: quantize activations per token (absmax, BitNet b1.58); changes numerics")

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        for op in ops_named(module, "harden.fused_qkv"):
            _replace(op, _lower_fused_qkv(op, ctx))
        kernels = _KernelFunctions(module)
        linears = ops_named(module, "harden.ternary_linear")
        weighted = linears + ops_named(module, "harden.int_linear") + ops_named(module, "harden.int8_linear")
        use_vnni = self.kernel in ("auto", "vnni") and bool(weighted) and _vnni_available(weighted[0], ctx, self.kernel)
        for kind, lower in (
            ("harden.int8_linear", _lower_int8_linear),
            ("harden.int_linear", _lower_int_linear),
            ("harden.int_embedding", _lower_int_embedding),
        ):
            for op in ops_named(module, kind):
                constants = [defining_op(v) for v in op.operands[1:]]
                if kind in C_KERNEL_LOWERINGS and use_vnni and _on_c_kernels(op, ctx, self.kernel):
                    _replace(op, [C_KERNEL_LOWERINGS[kind](op, ctx, kernels)])
                else:
                    _replace(op, [lower(op, ctx)])
                for constant in constants:  # the lowerings read codes, scales and mins in their own layouts
                    erase_if_unused(constant)
        for op in linears:
            packed_constants = [defining_op(op.weight), defining_op(op.scales)]
            if self.kernel == "reference" or not _constant_operands(op, ctx):
                _replace(op, [_lower_ternary_linear(op, ctx, self.activations)])
            elif use_vnni and self.kernel == "auto" and kernel_isa() == "AVX2" and _rows(op) > 1:
                _replace(op, [_lower_ternary_dequantized(op, ctx, self.activations)])
            elif use_vnni and _vnni_fits(op, ctx):
                _replace(op, [_lower_ternary_vnni(op, ctx, kernels, self.activations)])
            else:
                _replace(op, [_lower_ternary_exact(op, ctx, kernels, self.activations)])
            for constant in packed_constants:  # the fast kernels read their own layouts
                erase_if_unused(constant)
        globals_by_name: dict[str, str] = {}
        for op in ops_named(module, "harden.param"):
            _replace(op, [_lower_param(op, module, globals_by_name)])


def _lower_param(op, module: ir.Operation, globals_by_name: dict[str, str]) -> ir.Value:
    """An external global for the parameter (created once) and a load of it."""
    name = op.param_name.value
    info = tensor_info(op.result.type)
    tensor_type = lb.ranked(info.shape, ir.Type.parse(info.storage_dtype))
    symbol = PARAM_SYMBOL_PREFIX + name
    if name not in globals_by_name:
        with ir.InsertionPoint.at_block_begin(module.regions[0].blocks[0]), op.location:
            ml_program.GlobalOp(
                symbol,
                tensor_type,
                value=ir.Attribute.parse(f"#ml_program.extern : {tensor_type}"),
                sym_visibility="private",
            )
        globals_by_name[name] = symbol
    with ir.InsertionPoint(op), op.location:
        loaded = ml_program.GlobalLoadConstOp(tensor_type, ir.FlatSymbolRefAttr.get(symbol)).result
        return lb.from_builtin(loaded, op.result.type)


def _replace(op, new_values) -> None:
    for old, new in zip(op.results, new_values):
        old.replace_all_uses_with(new)
    op.operation.erase()


def _static_input(op, ctx: PassContext) -> tuple[int, ...]:
    shape = tensor_info(op.operands[0].type).shape
    if None in shape:
        raise ctx.fail(op, f"'{op.operation.name}' op with a dynamic input shape cannot be lowered")
    return shape


def _lower_fused_qkv(op, ctx: PassContext) -> list[ir.Value]:
    shape = _static_input(op, ctx)
    sizes = [op.q_size.value, op.k_size.value, op.v_size.value]
    with ir.InsertionPoint(op), op.location:
        x = lb.collapse_rows(lb.to_builtin(op.input))
        y = lb.matmul_transposed(x, lb.to_builtin(op.weight))
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        results, start = [], 0
        for size, result in zip(sizes, op.results):
            part = lb.expand_rows(lb.column_slice(y, start, size), shape[:-1])
            results.append(lb.from_builtin(part, result.type))
            start += size
    return results


def _constant_operands(op, ctx: PassContext) -> bool:
    return ctx.weights.value_of(op.weight) is not None and ctx.weights.value_of(op.scales) is not None


@dataclass
class _KernelFunctions:
    """Private kernel functions added to the module, one per distinct kernel text."""

    module: ir.Operation
    by_text: dict[str, str] = field(default_factory=dict)

    def get(self, make_text) -> str:
        """The symbol of the function `make_text(symbol)` produces, added on first use."""
        key = make_text("KERNEL")
        if key not in self.by_text:
            symbol = f"harden_ternary_kernel_{len(self.by_text)}"
            parsed = ir.Module.parse("module {\n" + make_text(symbol) + "}")
            self.module.regions[0].blocks[0].append(parsed.body.operations[0].operation)
            self.by_text[key] = symbol
        return self.by_text[key]


def _vnni_available(op, ctx: PassContext, kernel: str) -> bool:
    """Whether the C kernels can run on this host; if not, one warning for the whole run
    when they were asked for by name (kernel=auto falls back silently: exact is portable)."""
    reason = vnni_unavailable_reason()
    if reason is not None and kernel == "vnni":
        ctx.warning(op, f"kernel=vnni falls back to the exact kernel for every ternary_linear: {reason}")
    return reason is None


def _vnni_fits(op, ctx: PassContext) -> bool:
    """Whether the op's scale groups fit the C kernels; if not, a remark at the op."""
    groups = tensor_info(op.scales.type).shape[2]
    reason = vnni.unsupported_reason(groups, op.group_size.value)
    if reason is not None:
        ctx.remark(op, f"kernel=vnni falls back to the exact kernel: {reason}")
    return reason is None


def _activations(op, activations: str) -> ir.Value:
    """The op's input as builtin rows [M, K], int8-rounded per token if asked."""
    x = lb.collapse_rows(lb.to_builtin(op.input))
    return lb.fake_quantize_int8_rows(x) if activations == "int8" else x


def _lower_ternary_exact(op, ctx: PassContext, kernels: _KernelFunctions, activations: str) -> ir.Value:
    """A call of the exact kernel on constants re-laid out as 16-code words."""
    shape = _static_input(op, ctx)
    k, n, group = op.in_features.value, op.out_features.value, op.group_size.value
    words = prepack_words(ctx.weights.value_of(op.weight), ctx.weights.value_of(op.scales), n, k, group)
    name = ctx.weights.name_of(op.weight) or "ternary"
    with ir.InsertionPoint(op), op.location:
        x = _activations(op, activations)
        rows = tensor_info(x.type).shape[0]
        constants = [
            lb.to_builtin(ctx.weights.literal(words["w"], "si32", f"{name}.words")),
            lb.to_builtin(ctx.weights.literal(words["s1"], "f32", f"{name}.word_scales")),
            lb.to_builtin(ctx.weights.literal(words["s0"], "f32", f"{name}.scales_f32")),
        ]
        bias = [lb.to_builtin(op.bias)] if op.bias is not None else []
        symbol = kernels.get(lambda fn: kernel_function_text(fn, rows, n, k, words, bias=bool(bias)))
        y = func.CallOp([lb.ranked([rows, n], lb.f32())], ir.FlatSymbolRefAttr.get(symbol), [x, *constants, *bias]).result
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def _call_vnni_kernel(x: ir.Value, weights: vnni.VnniWeights, name: str, n: int, k: int, numerics: str,
                      ctx: PassContext, kernels: _KernelFunctions) -> ir.Value:
    """y [M, N] = the C kernel on rows x [M, K] and `weights` (its constants named after `name`),
    through the kernel declaration of that shape (added once per module)."""
    rows = tensor_info(x.type).shape[0]
    codes = lb.to_builtin(ctx.weights.literal(weights.codes, "si8", f"{name}.vnni_codes"))
    scales = lb.to_builtin(ctx.weights.literal(weights.scales, "f32", f"{name}.vnni_scales"))
    symbol = kernels.get(lambda fn: vnni.declaration_text(fn, rows, n, k, weights, numerics))
    return func.CallOp([lb.ranked([rows, n], lb.f32())], ir.FlatSymbolRefAttr.get(symbol), [x, codes, scales]).result


def _lower_ternary_vnni(op, ctx: PassContext, kernels: _KernelFunctions, activations: str) -> ir.Value:
    """A call of the C kernel's declaration on constants in its layout; the bias after it.
    The kernel quantizes the f32 activations itself, so x goes in unrounded."""
    shape = _static_input(op, ctx)
    k, n, group = op.in_features.value, op.out_features.value, op.group_size.value
    weights = vnni.prepack(ctx.weights.value_of(op.weight), ctx.weights.value_of(op.scales), n, k, group)
    name = ctx.weights.name_of(op.weight) or "ternary"
    with ir.InsertionPoint(op), op.location:
        x = lb.collapse_rows(lb.to_builtin(op.input))
        y = _call_vnni_kernel(x, weights, name, n, k, vnni.NUMERICS[activations], ctx, kernels)
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def code_width(bits: int) -> int:
    """Bits per stored code on the C kernels: 4 for codes of up to 4 bits, else 8."""
    return 4 if bits <= 4 else 8


def _on_c_kernels(op, ctx: PassContext, kernel: str) -> bool:
    """Whether an int_linear or int8_linear runs on the C kernels (see `_integer_codes_vnni`):
    constant codes, scales (and mins) in groups the kernels take, and with kernel=auto only
    where they are faster (kernel=vnni takes every shape, for measurements). Measured one
    linear at a time at SmolLM2's shapes (bench/int_kernels.py, AMD EPYC, README): one token
    1.1-1.5x faster than IREE's matmuls for every grid, 2.4x for the int8 classifier; 128
    tokens 1.05-1.7x faster than the batch_matmul for 4-bit storage, but 0.6-0.9x IREE's
    matmul on i8 codes for 8-bit storage, which therefore stays on it in prefill. On AVX2
    (AMD Zen 1, bench/results-int-kernels-zen1.json) the kernels' prefill is 0.3-0.9x IREE's
    matmuls for every grid but the classifier, so kernel=auto keeps every prefill there."""
    shape = tensor_info(op.input.type).shape
    if None in shape:
        return False
    mins = getattr(op, "mins", None)
    operands = [op.weight, op.scales] + ([mins] if mins is not None else [])
    if any(ctx.weights.value_of(v) is None for v in operands):
        return False
    if op.operation.name == "harden.int_linear":
        groups, group_size, bits = tensor_info(op.scales.type).shape[1], op.group_size.value, op.bits.value
    else:
        groups, group_size, bits = 1, 0, 8
    if kernel == "auto" and _rows(op) != 1 and (code_width(bits) == 8 or kernel_isa() == "AVX2"):
        return False
    return vnni.unsupported_reason(groups, group_size, shape[-1], code_width(bits)) is None


def _integer_codes_vnni(op, ctx: PassContext, kernels: _KernelFunctions, codes: np.ndarray, scales: np.ndarray,
                        bits: int, group: int, mins: np.ndarray | None = None) -> ir.Value:
    """An integer linear on the C kernels, exactly: codes q [N, K] (signed, or affine with
    `mins`) stored once, W = code_width(bits) bits each, as q + z (the kernels' zero code)
    with the group's scale, run with the kernels' exact fixed-point numerics (activations f32).
    Affine codes are centred first: s c + m = s (c - o) + (s o + m), o = 2^(bits-1), and the
    second term, a constant per row and group, is added as the activations' group sums times it."""
    shape = _static_input(op, ctx)
    n, k = codes.shape
    width = code_width(bits)
    offset = 2 ** (bits - 1) if mins is not None else 0
    stored = codes.astype(np.int32) - offset + vnni.zero_code(width)
    if stored.min() < 0 or stored.max() >= 2**width:
        raise ctx.fail(op, f"'{op.operation.name}' op has codes outside its {bits}-bit grid")
    stored = stored.astype(np.uint8)
    weights = vnni.prepack_codes(stored[None], scales[None], n, k, group, width)
    name = ctx.weights.name_of(op.weight) or "int"
    with ir.InsertionPoint(op), op.location:
        x = lb.collapse_rows(lb.to_builtin(op.input))
        rows = tensor_info(x.type).shape[0]
        y = _call_vnni_kernel(x, weights, name, n, k, vnni.NUMERICS["f32"], ctx, kernels)
        if mins is not None:
            constant = offset * scales + mins  # [N, groups]
            sums = lb.generic([lb.split_columns(x, group)], lb.zeros([rows, k // group]), ["(m, g, j) -> (m, g, j)", "(m, g, j) -> (m, g)"],
                              ["parallel", "parallel", "reduction"], lambda v, acc: arith.addf(acc, v))
            table = lb.to_builtin(ctx.weights.literal(np.ascontiguousarray(constant.T), "f32", f"{name}.vnni_offsets"))
            y = linalg.matmul(sums, table, outs=[y])
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def _lower_int_linear_vnni(op, ctx: PassContext, kernels: _KernelFunctions) -> ir.Value:
    mins = None if op.mins is None else ctx.weights.value_of(op.mins).astype(np.float32)
    scales = ctx.weights.value_of(op.scales).astype(np.float32)  # [N, groups]
    return _integer_codes_vnni(op, ctx, kernels, ctx.weights.value_of(op.weight), scales, op.bits.value, op.group_size.value, mins)


def _lower_int8_linear_vnni(op, ctx: PassContext, kernels: _KernelFunctions) -> ir.Value:
    scales = ctx.weights.value_of(op.scales).astype(np.float32).reshape(-1, 1)  # [N, 1]
    return _integer_codes_vnni(op, ctx, kernels, ctx.weights.value_of(op.weight), scales, 8, 0)


def _lower_int8_linear(op, ctx: PassContext) -> ir.Value:
    """y = (x @ float(codes^T)) * scale[n] (+ bias[n]), codes transposed offline to [K, N].

    A `linalg.matmul` on the i8 codes widens them inside the contraction, so IREE reads
    one byte per weight (a separate widening op on a constant would be folded back into
    f32 at compile time). With the [K, N] layout IREE vectorizes it like an f32 matmul:
    at 2048 x 2048, 1.2x faster than f32 for one token and 0.76-0.84x for 128 (measured in
    this lowering's development); IREE's matmul with the weight in [N, K] was 2x slower.
    Several rows (prefill) dequantize the weight once per call instead and run IREE's f32
    matmul: on AVX2 (Zen 1) the i8 matmul of the 576 -> 49152 classifier took 474 ms for 128
    tokens against 185 for f32 (bench/int_kernels.py), and it is level elsewhere.
    Constant weights only (the codes are re-laid out here)."""
    shape = _static_input(op, ctx)
    codes = ctx.weights.value_of(op.weight)
    if codes is None:
        raise ctx.fail(op, "'harden.int8_linear' op with a non-constant weight cannot be lowered")
    n = op.out_features.value
    name = ctx.weights.name_of(op.weight) or "int8"
    with ir.InsertionPoint(op), op.location:
        x = lb.collapse_rows(lb.to_builtin(op.input))
        rows = tensor_info(x.type).shape[0]
        codes_kn = lb.to_builtin(ctx.weights.literal(np.ascontiguousarray(codes.T), "si8", f"{name}.kn"))
        if rows > 1:
            k = codes.shape[1]
            w = lb.generic([codes_kn, lb.to_builtin(op.scales)], tensor.EmptyOp([k, n], lb.f32()).result,
                           ["(k, n) -> (k, n)", "(k, n) -> (n, 0)", "(k, n) -> (k, n)"], ["parallel", "parallel"],
                           lambda code, scale, _: arith.mulf(arith.sitofp(lb.f32(), code), scale))
            y = linalg.matmul(x, w, outs=[lb.zeros([rows, n])])
        else:
            y = lb.scale_columns(linalg.matmul(x, codes_kn, outs=[lb.zeros([rows, n])]), lb.to_builtin(op.scales))
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def _dequantized(code, scale, minimum=None) -> ir.Value:
    """f32 value of an n-bit code: code * scale (+ min), scale and min widened from f16."""
    w = arith.mulf(arith.sitofp(lb.f32(), code), arith.extf(lb.f32(), scale))
    return arith.addf(w, arith.extf(lb.f32(), minimum)) if minimum is not None else w


def _lower_int_linear(op, ctx: PassContext) -> ir.Value:
    """y[m, n] = sum over groups g of s[n, g] * (sum_j x[m, g, j] * Q[n, g, j]) (+ min[n, g] * sum_j x[m, g, j]).

    The inner sums are one `linalg.batch_matmul` over the groups, on the i8 codes laid out
    [groups, group_size, N] offline (widened inside the contraction, so the executable reads
    one byte per code); a second generic scales each group's partial sum and adds them up.
    Measured on an AMD EPYC (decode, 1536 x 576, groups of 64): 59 us against 990 us for one
    generic that dequantizes where it multiplies, and 107 us for IREE's f32 matmul.
    Several rows (prefill) instead dequantize the weight once per call and run one f32
    matmul (`_dequantized_matmul`). A weight that is not a constant keeps the one-generic form."""
    codes = ctx.weights.value_of(op.weight)
    if codes is None:
        return _lower_int_linear_generic(op, ctx)
    shape = _static_input(op, ctx)
    group, n = op.group_size.value, op.out_features.value
    with ir.InsertionPoint(op), op.location:
        if _rows(op) > 1:  # a prompt: see _dequantized_matmul
            y = _dequantized_matmul(op, ctx, lb.collapse_rows(lb.to_builtin(op.input)), codes)
            if op.bias is not None:
                y = lb.add_bias(y, lb.to_builtin(op.bias))
            return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)
        x = _groups_first(lb.split_columns(lb.collapse_rows(lb.to_builtin(op.input)), group))  # [G, M, g]
        groups, rows, _ = tensor_info(x.type).shape
        partial = linalg.batch_matmul(x, _group_major_codes(op, ctx, codes), outs=[lb.zeros([groups, rows, n])])
        inputs = [partial, _group_major(op.scales, ctx, "f16")]
        maps = ["(g, m, n) -> (g, m, n)", "(g, m, n) -> (g, n)"]
        if op.mins is not None:
            sums = lb.generic([x], lb.zeros([groups, rows]), ["(g, m, j) -> (g, m, j)", "(g, m, j) -> (g, m)"],
                              ["parallel", "parallel", "reduction"], lambda v, acc: arith.addf(acc, v))
            inputs += [_group_major(op.mins, ctx, "f16"), sums]
            maps += ["(g, m, n) -> (g, n)", "(g, m, n) -> (g, m)"]

        def body(p, scale, *rest):
            *minimum, acc = rest
            term = arith.mulf(p, arith.extf(lb.f32(), scale))
            if minimum:
                term = arith.addf(term, arith.mulf(minimum[1], arith.extf(lb.f32(), minimum[0])))
            return arith.addf(acc, term)

        y = lb.generic(inputs, lb.zeros([rows, n]), [*maps, "(g, m, n) -> (m, n)"], ["reduction", "parallel", "parallel"], body)
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def _dequantized_matmul(op, ctx: PassContext, x: ir.Value, codes: np.ndarray) -> ir.Value:
    """x [M, K] @ W [K, N], W dequantized from the group-major codes, scales (and mins) by a
    generic once per call: the matmul is then IREE's f32 one. For a prompt (M = 128) that
    is what costs least: the dequantization is 1/M of the matmul's work, where the form over
    the groups materializes M x N partial sums per group and a second pass adds them up
    (SmolLM2-135M's prefill on Zen 1 spent 63% of its time in those batch_matmuls; see
    bench/int_kernels.py for the per-shape figures). IREE does not fold the dequantized
    weight into an f32 constant (test_int8_linear checks the executable's size for the
    int8_linear form): the executable keeps the i8 codes."""
    group = op.group_size.value
    groups, n = codes.shape[1] // group, codes.shape[0]
    inputs = [_group_major_codes(op, ctx, codes), _group_major(op.scales, ctx, "f16")]
    maps = ["(g, j, n) -> (g, j, n)", "(g, j, n) -> (g, n)"]
    if op.mins is not None:
        inputs.append(_group_major(op.mins, ctx, "f16"))
        maps.append("(g, j, n) -> (g, n)")
    w = lb.generic(inputs, tensor.EmptyOp([groups, group, n], lb.f32()).result, [*maps, "(g, j, n) -> (g, j, n)"],
                   ["parallel"] * 3, lambda code, scale, *rest: _dequantized(code, scale, *rest[:-1]))
    w = lb.merge_axes(w, 0)
    rows = tensor_info(x.type).shape[0]
    return linalg.matmul(x, w, outs=[lb.zeros([rows, n])])


def _groups_first(x: ir.Value) -> ir.Value:
    """[M, G, g] -> [G, M, g]: the batch dimension of batch_matmul first."""
    rows, groups, width = tensor_info(x.type).shape
    init = tensor.EmptyOp([groups, rows, width], lb.f32()).result
    return linalg.transpose(x, outs=[init], permutation=[1, 0, 2]).result[0]


def _group_major_codes(op, ctx: PassContext, codes: np.ndarray) -> ir.Value:
    """The codes [N, K] as [K / group, group, N] (a new constant, named `<weight>.gkn`): the
    layout both the classifier's batch_matmul and a tied embedding's lookup read, so a tied
    table is stored once."""
    group = op.group_size.value
    n, k = codes.shape
    name = ctx.weights.name_of(op.weight) or "int"
    laid_out = codes.reshape(n, k // group, group).transpose(1, 2, 0)
    return lb.to_builtin(ctx.weights.literal(laid_out, "si8", f"{name}.gkn"))


def _group_major(value: ir.Value, ctx: PassContext, dtype: str) -> ir.Value:
    """Scales or mins [N, G] as [G, N] (offline when constant, else a transpose)."""
    array = ctx.weights.value_of(value)
    if array is not None:
        name = ctx.weights.name_of(value) or "scales"
        return lb.to_builtin(ctx.weights.literal(np.ascontiguousarray(array.T), dtype, f"{name}.gn"))
    v = lb.to_builtin(value)
    n, groups = tensor_info(v.type).shape
    init = tensor.EmptyOp([groups, n], ir.F16Type.get()).result
    return linalg.transpose(v, outs=[init], permutation=[1, 0]).result[0]


def _lower_int_linear_generic(op, ctx: PassContext) -> ir.Value:
    """One generic that widens each i8 code where it multiplies (the form for weights that
    are not constants: correct, but 10-17x slower than the batch_matmul form)."""
    shape = _static_input(op, ctx)
    group, n = op.group_size.value, op.out_features.value
    with ir.InsertionPoint(op), op.location:
        x = lb.split_columns(lb.collapse_rows(lb.to_builtin(op.input)), group)
        rows = tensor_info(x.type).shape[0]
        inputs = [x, lb.split_columns(lb.to_builtin(op.weight), group), lb.to_builtin(op.scales)]
        maps = ["(m, n, g, j) -> (m, g, j)", "(m, n, g, j) -> (n, g, j)", "(m, n, g, j) -> (n, g)"]
        if op.mins is not None:
            inputs.append(lb.to_builtin(op.mins))
            maps.append("(m, n, g, j) -> (n, g)")

        def body(xv, code, scale, *rest):
            *minimum, acc = rest
            return arith.addf(acc, arith.mulf(xv, _dequantized(code, scale, *minimum)))

        y = lb.generic(inputs, lb.zeros([rows, n]), [*maps, "(m, n, g, j) -> (m, n)"], ["parallel", "parallel", "reduction", "reduction"], body)
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def _lower_int_embedding(op, ctx: PassContext) -> ir.Value:
    """result[..., d] = Q[i, d] * s[i, d / group] (+ min) at i = indices[...]: a generic over
    the result that reads each row's codes and scales by index, as torch-mlir lowers
    aten.embedding (the table stays n-bit codes and f16 scales). A constant table is read in
    the group-major layout int_linear uses ([K / group, group, N]), so a tied classifier and
    this lookup share one copy."""
    group = op.group_size.value
    index_shape = list(tensor_info(op.indices.type).shape)
    dim = tensor_info(op.weight.type).shape[1]
    rank = len(index_shape) + 1
    dims = ", ".join(f"d{i}" for i in range(rank))
    table = ctx.weights.value_of(op.weight)
    group_major = table is not None
    with ir.InsertionPoint(op), op.location:
        if group_major:
            codes = _group_major_codes(op, ctx, table)
            scales = _group_major(op.scales, ctx, "f16")
            mins = _group_major(op.mins, ctx, "f16") if op.mins is not None else None
        else:
            codes, scales = lb.to_builtin(op.weight), lb.to_builtin(op.scales)
            mins = lb.to_builtin(op.mins) if op.mins is not None else None
        index_type = ir.IndexType.get()

        def body(token, _out):
            row = arith.index_cast(index_type, token)
            column = linalg.IndexOp(ir.IntegerAttr.get(ir.IntegerType.get_signless(64), rank - 1)).result
            size = arith.ConstantOp(index_type, group).result
            group_index = arith.divui(column, size)
            if group_major:
                code = tensor.ExtractOp(codes, [group_index, arith.remui(column, size), row]).result
                at = [group_index, row]
            else:
                code = tensor.ExtractOp(codes, [row, column]).result
                at = [row, group_index]
            scale = tensor.ExtractOp(scales, at).result
            minimum = tensor.ExtractOp(mins, at).result if mins is not None else None
            return _dequantized(code, scale, minimum)

        y = lb.generic(
            [lb.to_builtin(op.indices)],
            lb.zeros([*index_shape, dim]),
            [f"({dims}) -> ({', '.join(f'd{i}' for i in range(rank - 1))})", f"({dims}) -> ({dims})"],
            ["parallel"] * rank,
            body,
        )
        return lb.from_builtin(y, op.output.type)


def _scale_map(kind: str, dims: str = "m, n, p, k") -> str:
    """Which scale each iteration over `dims` (naming n, p and k) reads, by scale kind (group
    scales repeated per column first, see `lb.column_scales`)."""
    return {
        "tensor": f"({dims}) -> (p, 0, 0)",
        "channel": f"({dims}) -> (p, n, 0)",
        "group": f"({dims}) -> (p, n, k)",
    }[kind]


def _ternary_code(byte: ir.Value, lane: ir.Value) -> ir.Value:
    """The ternary value (code - 1, as i8) of lane `lane` (index 0..3) of a packed byte: the
    code of column 4b + lane sits in bits 2 lane .. 2 lane + 1 of byte b."""
    i8 = ir.IntegerType.get_signless(8)
    shift = arith.index_cast(i8, arith.muli(lane, arith.ConstantOp(ir.IndexType.get(), 2).result))
    code = arith.andi(arith.shrui(byte, shift), arith.ConstantOp(i8, 3).result)
    return arith.subi(code, arith.ConstantOp(i8, 1).result)


def _rows(op) -> int:
    """Rows (tokens) the op's input holds, from its static shape (0 if it is dynamic)."""
    leading = tensor_info(op.input.type).shape[:-1]
    return 0 if None in leading else math.prod(leading)


def _lower_ternary_dequantized(op, ctx: PassContext, activations: str) -> ir.Value:
    """A prompt on AVX2 (kernel=auto): the ternary weight dequantized once per call into f32
    [K, N] (sum over planes of scale * (code - 1)) and IREE's f32 matmul. On Zen 1 the C
    kernels' exact fixed-point path does four digit passes per weight and the exact linalg
    kernel is no faster: both took 1.3-1.6x IREE's f32 matmul for 128 tokens at
    TinyLlama's shapes (bench/results-ternary-kernels-zen1.json); the dequantization is
    1/M of the matmul's work. Numerics as kernel=exact's: the dequantized weight is exact in
    f32 (one rounding with two planes) and the products are summed in f32."""
    shape = _static_input(op, ctx)
    k, n = op.in_features.value, op.out_features.value
    with ir.InsertionPoint(op), op.location:
        x = _activations(op, activations)
        i8 = ir.IntegerType.get_signless(8)
        planes, _, packed = tensor_info(op.weight.type).shape

        def unpack(byte, _out):
            return _ternary_code(byte, linalg.IndexOp(ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 3)).result)

        # Unpacked over (byte, lane) and cut to K columns: no `k floordiv 4` map, which IREE's
        # CPU tiling rejects for tile sizes 4 does not divide.
        ternary = lb.generic([lb.to_builtin(op.weight)], tensor.EmptyOp([planes, n, packed, 4], i8).result,
                             ["(p, n, b, j) -> (p, n, b)", "(p, n, b, j) -> (p, n, b, j)"], ["parallel"] * 4, unpack)
        ternary = lb.merge_axes(ternary, 2)
        if 4 * packed != k:
            ternary = tensor.ExtractSliceOp(lb.ranked([planes, n, k], i8), ternary, [], [], [], [0, 0, 0], [planes, n, k], [1, 1, 1]).result
        scales = lb.to_builtin(op.scales)
        if op.scale_kind.value == "group":
            scales = lb.column_scales(scales, op.group_size.value, k)
        w = lb.generic([ternary, scales], lb.zeros([k, n]),
                       ["(k, n, p) -> (p, n, k)", _scale_map(op.scale_kind.value, "k, n, p"), "(k, n, p) -> (k, n)"],
                       ["parallel", "parallel", "reduction"],
                       lambda t, scale, acc: arith.addf(acc, arith.mulf(scale, arith.sitofp(lb.f32(), t))))
        y = linalg.matmul(x, w, outs=[lb.zeros([tensor_info(x.type).shape[0], n])])
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


def _lower_ternary_linear(op, ctx: PassContext, activations: str) -> ir.Value:
    shape = _static_input(op, ctx)
    out_features = op.out_features.value
    with ir.InsertionPoint(op), op.location:
        x = _activations(op, activations)
        rows = tensor_info(x.type).shape[0]

        def body(xv, byte, scale, acc):
            # column k is lane k mod 4 of byte k / 4
            k = linalg.IndexOp(ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 3)).result
            lane = arith.remui(k, arith.ConstantOp(ir.IndexType.get(), 4).result)
            ternary = arith.sitofp(lb.f32(), _ternary_code(byte, lane))
            return arith.addf(acc, arith.mulf(xv, arith.mulf(scale, ternary)))

        scales = lb.to_builtin(op.scales)
        if op.scale_kind.value == "group":
            scales = lb.column_scales(scales, op.group_size.value, op.in_features.value)
        y = lb.generic(
            [x, lb.to_builtin(op.weight), scales],
            lb.zeros([rows, out_features]),
            [
                "(m, n, p, k) -> (m, k)",
                "(m, n, p, k) -> (p, n, k floordiv 4)",
                _scale_map(op.scale_kind.value),
                "(m, n, p, k) -> (m, n)",
            ],
            ["parallel", "parallel", "reduction", "reduction"],
            body,
        )
        if op.bias is not None:
            y = lb.add_bias(y, lb.to_builtin(op.bias))
        return lb.from_builtin(lb.expand_rows(y, shape[:-1]), op.output.type)


C_KERNEL_LOWERINGS = {"harden.int_linear": _lower_int_linear_vnni, "harden.int8_linear": _lower_int8_linear_vnni}
"""The integer linears that run on the C kernels where `_on_c_kernels` says so."""
