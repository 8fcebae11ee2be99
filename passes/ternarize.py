"""harden-ternarize: linear layers with constant weights to `harden.ternary_linear`."""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d

from harden.core.files import write_atomically
from harden.core.graph import body_ops, defining_op, functions, is_none, users
from harden.core.llama_names import CLASSIFIER_GROUP, EMBEDDING_GROUP, canonical_name, describe_groups, layer_group
from harden.core.pass_base import Pass, PassContext, option
from harden.core.tensor_types import tensor_info, vtensor_type
from harden.core.weights import erase_if_unused
from harden.dialects.harden import build_int8_linear, build_int_embedding, build_int_linear, build_ternary_linear
from harden.dialects.ternary_pack import pack_ternary_2bit
from harden.passes.ternary_policy import (
    CALIBRATION_SEED,
    EMBEDDING,
    FUSED_QKV,
    KEEP_ATTR,
    LINEAR,
    PRECISION_ATTR,
    MeasurementError,
)
from harden.quant.int8 import Int8Weight
from harden.quant.intn import IntWeight
from harden.quant.options import TernaryOptions
from harden.quant.precision import BITS_ATTR, Precision, PrecisionError, quantize_as
from harden.quant.ternary import TernaryWeight

CLASSIFIER_NAMES = ("output.weight", "lm_head.weight")


@dataclass(frozen=True)
class Ternarize(TernaryOptions, Pass):
    """Rewrite linear layers with constant weights into `harden.ternary_linear` (2-bit codes, f32 scales).

    Rewrites `torch.aten.linear` and `harden.fused_qkv` whose weight (and bias, if any) is
    a constant: the attention projections, o, gate, up and down. The classifier (the
    linear whose weight is named output/lm_head or is the embedding, tied) only with
    classifier=true; embeddings are never linears. Groups that are already ternary ({-s, 0,
    +s}) convert exactly. A fused_qkv becomes one quantized linear and three slices. `skip`
    leaves weights in f32; `keep` (and the module attribute `harden.keep` that
    harden-ternary-policy writes) keeps them out of ternary in the precision `keep-as`
    names: f32, or int8 per output channel (`harden.int8_linear`; this also works for the
    classifier). The module attribute `harden.precision` (written by harden-ternary-policy
    with max-bits) gives a weight its own precision (quant/precision.py: int8,
    int<b>g<G> as `harden.int_linear`, uint<b>g<G> for weights already on that affine
    grid, t<planes>g<G> ternary, f32); a precision for `tok_embeddings.weight` also turns
    the embedding lookups into `harden.int_embedding` reading the same codes as a tied
    classifier (stored once). method=gptq rounds with error feedback on the Hessians of
    calibration activations (the PyTorch model of the provenance, injected by harden-opt:
    sequences sampled from it, or `calibration-text`). Ops left alone get a remark under
    --harden-remarks; `report=FILE` writes each layer's precision, error, zeros and stored
    bits, and the bits per weight of all weight matrices, as JSON.
    """

    name = "harden-ternarize"

    skip: tuple[str, ...] = option((), "weights to leave in f32: glob patterns of weight names, or layer groups such as layers.0.attention")
    keep: tuple[str, ...] = option((), "weights to keep out of ternary in the keep-as precision (patterns as for skip)")
    report: str = option("", "write a per-layer JSON report to this file")

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        kept = module.attributes[KEEP_ATTR] if KEEP_ATTR in module.attributes else []
        patterns = _Patterns(skip=skip_patterns(self.skip), keep=skip_patterns([*self.keep, *(ir.StringAttr(g).value for g in kept)]))
        self._check_patterns(module, ctx)
        precisions = _precisions(module, ctx)
        calibration = self._calibration(module, ctx)
        rows, kept = [], []
        rounded: dict[tuple[str, str], object] = {}  # (weight, precision) -> its rounding, shared by every function
        for func in functions(module):
            shared: dict[str, tuple] = {}  # a table's codes and scales, made once per function
            candidates = [op for op in body_ops(func) if op.operation.name in (LINEAR, FUSED_QKV)]
            for index, op in enumerate(candidates):
                name = ctx.weights.name_of(op.operands[1]) or f"{func.sym_name.value}.linear{index}"
                precision = self._precision(op, name, ctx, patterns, precisions)
                if isinstance(precision, str):
                    ctx.remark(op, f"not ternarized: {precision}")
                    kept.append(_f32_row(name, op.operands[1], ctx))
                    continue
                hessian = calibration.hessian(name) if calibration is not None else None
                row = _harden_linear(op, name, precision, self, hessian, ctx, shared, rounded)
                rows.append({"function": func.sym_name.value, "layer": name, "group": layer_group(name), **row})
            rows += _harden_embeddings(func, precisions.get(EMBEDDING), self, ctx, shared)
            kept += [_f32_row(name, op.operands[0], ctx) for op in body_ops(func) if op.operation.name == "torch.aten.embedding"
                     and (name := ctx.weights.name_of(op.operands[0])) is not None and canonical_name(name) == EMBEDDING]
        summary = _bits_summary(rows, [row for row in kept if row is not None])
        if rows:
            module.attributes[BITS_ATTR] = ir.FloatAttr.get_f64(round(summary["bits_per_weight"], 4))
            ctx.remark(module, f"{summary['bits_per_weight']:.3f} bits per weight over {summary['weights']:,} weights ({summary['precisions']})")
        if self.report:
            write_atomically(self.report, json.dumps({"options": self._options(), **summary, "layers": rows}, indent=2) + "\n")

    def _calibration(self, module: ir.Operation, ctx: PassContext):
        """The Hessians method=gptq rounds with (None for the other methods)."""
        if self.method != "gptq":
            return None
        if ctx.measurements is None:
            raise ctx.fail(module, f"method=gptq of '{self.name}' needs calibration on the PyTorch model, which harden-opt provides; this driver gave none")
        try:
            return ctx.measurements.calibration(module, self.calibration_samples, self.calibration_seq_len, CALIBRATION_SEED, self.calibration_text)
        except MeasurementError as e:
            raise ctx.fail(module, f"'{self.name}' method=gptq: {e}") from None

    def _precision(self, op, name: str, ctx: PassContext, patterns: "_Patterns", precisions: dict) -> "Precision | str":
        """The precision `op`'s weight gets, or why it stays as it is."""
        weight = tensor_info(op.operands[1].type)
        if weight is None or weight.rank != 2 or None in weight.shape:
            return "the weight is not a static 2-D tensor"
        if ctx.weights.value_of(op.operands[1]) is None:
            return "the weight is not a constant"
        bias = _bias(op)
        if bias is not None and ctx.weights.value_of(bias) is None:
            return "the bias is not a constant"
        names = _match_names(op, name)
        pattern = _matching(patterns.skip, names)
        if pattern:
            return f"'{name}' matches skip pattern '{pattern}'"
        chosen = precisions.get(canonical_name(name)) or (precisions.get(EMBEDDING) if _is_classifier(op, name) and _tied(op) else None)
        if chosen is not None:
            return f"'{name}' stays in f32 (harden.precision)" if chosen.kind == "f32" else chosen
        keep = _matching(patterns.keep, names)
        if keep and self.keep_as == "f32":
            return f"'{name}' matches keep pattern '{keep}' (kept in f32)"
        if keep:  # a tied classifier in int8 shares its codes with the lookup: f16 scales per row
            return Precision("int", bits=8, group_size=weight.shape[1]) if _is_classifier(op, name) and _tied(op) else Precision("int8")
        if not self.classifier and _is_classifier(op, name):
            return f"'{name}' is the classifier (use classifier=true to ternarize it)"
        return Precision("ternary")

    def _check_patterns(self, module: ir.Operation, ctx: PassContext) -> None:
        """A skip= or keep= pattern that matches no weight of the module is an error naming
        it and the valid layer groups (a typo, or another frontend's naming, would
        otherwise change nothing without a word)."""
        names: set[str] = set()
        for func in functions(module):
            for op in body_ops(func):
                for result in op.results:
                    name = ctx.weights.name_of(result)
                    if name is not None:
                        names |= _match_names(op, name)
                if op.operation.name in (LINEAR, FUSED_QKV):
                    name = ctx.weights.name_of(op.operands[1])
                    if name is not None:
                        names |= _match_names(op, name)
        for option_name, entries in (("skip", self.skip), ("keep", self.keep)):
            for entry in entries:
                if not _matching(skip_patterns([entry]), names):
                    groups = {g for g in map(layer_group, names) if g} | ({CLASSIFIER_GROUP} & names)
                    raise ctx.fail(
                        module,
                        f"{option_name} pattern '{entry}' matches no weight of the module; layer groups: {describe_groups(groups) or 'none'}",
                    )

    def _options(self) -> dict:
        return {
            "method": self.method,
            "scale": self.scale,
            "group_size": self.columns_per_scale if self.scale == "group" else None,
            "planes": self.planes,
            "keep_as": self.keep_as,
        }


def _precisions(module: ir.Operation, ctx: PassContext) -> dict[str, Precision]:
    """The module's `harden.precision` map (canonical weight name -> precision), if any."""
    if PRECISION_ATTR not in module.attributes:
        return {}
    try:
        entries = ir.DictAttr(module.attributes[PRECISION_ATTR])
        return {a.name: Precision.parse(ir.StringAttr(a.attr).value) for a in entries}
    except (ValueError, PrecisionError) as e:
        raise ctx.fail(module, f"malformed '{PRECISION_ATTR}' attribute: {e}") from None


def _tied(op) -> bool:
    return any(u.operation.name == "torch.aten.embedding" for u in users(op.operands[1]))


def _harden_linear(op, name: str, precision: Precision, options: TernaryOptions, hessian, ctx: PassContext, shared: dict, rounded: dict) -> dict:
    """Replaces a linear or fused_qkv by its quantized op in `precision`; its report row.
    `rounded` keeps each weight's rounding for the other functions (prefill, decode and
    the decode buckets read the same weights: GPTQ runs once per weight)."""
    out_features, in_features = tensor_info(op.operands[1].type).shape
    if not precision.fits(in_features):
        raise ctx.fail(op, f"precision {precision} needs rows of a multiple of {precision.group_size} columns, '{name}' has {in_features}")
    key = (name, str(precision))
    if key not in rounded:
        w = ctx.weights.value_of(op.operands[1])
        quantized = shared[name][0] if name in shared else quantize_as(w, precision, options, hessian)
        row = _report_row(w, quantized, precision, options)
        # Kept for the other functions packed: a ternary plane in one byte per weight would
        # hold 8 GB at 8B parameters; its 2-bit packing holds 2.
        if isinstance(quantized, TernaryWeight):
            quantized = PackedTernary(pack_ternary_2bit(quantized.ternary), quantized.scales, quantized.group_size)
        rounded[key] = (quantized, row)
    quantized, row = rounded[key]
    with ir.InsertionPoint(op), op.location:
        result_type, bias = _result_type(op, out_features), _bias(op)
        if isinstance(quantized, PackedTernary):
            ternary = precision.ternary_options(options)
            codes = ctx.weights.literal(quantized.packed, "si8", f"{name}.codes")
            scales = ctx.weights.literal(quantized.scales, "f32", f"{name}.scales")
            linear = build_ternary_linear(
                op.operands[0], codes, scales, in_features=in_features, out_features=out_features,
                group_size=quantized.group_size, planes=ternary.planes, scale_kind=ternary.scale,
                result_type=result_type, bias=bias,
            )
        elif isinstance(quantized, Int8Weight):
            codes = ctx.weights.literal(quantized.codes, "si8", f"{name}.int8")
            scales = ctx.weights.literal(quantized.scales, "f32", f"{name}.int8_scales")
            linear = build_int8_linear(op.operands[0], codes, scales, result_type=result_type, bias=bias)
        else:
            if name not in shared:  # beside the f32 weight, so they dominate a tied embedding's lookup too
                with ir.InsertionPoint(defining_op(op.operands[1])):
                    shared[name] = (quantized, _int_constants(quantized, name, ctx))
            codes, scales, mins = shared[name][1]
            linear = build_int_linear(op.operands[0], codes, scales, bits=quantized.bits, group_size=quantized.group_size,
                                      result_type=result_type, mins=mins, bias=bias)
    _replace_linear(op, linear)
    return row


@dataclass(frozen=True)
class PackedTernary:
    """A ternary rounding as the op stores it: 2-bit codes (ternary_pack.py) and scales."""

    packed: np.ndarray
    scales: np.ndarray
    group_size: int


def _int_constants(q: IntWeight, name: str, ctx: PassContext):
    codes = ctx.weights.literal(q.codes, "si8", f"{name}.codes")
    scales = ctx.weights.literal(q.scales, "f16", f"{name}.scales")
    mins = ctx.weights.literal(q.mins, "f16", f"{name}.mins") if q.mins is not None else None
    return codes, scales, mins


def _harden_embeddings(func, precision: Precision | None, options: TernaryOptions, ctx: PassContext, shared: dict) -> list[dict]:
    """Turns the function's lookups of a table into `harden.int_embedding`: of a table a tied
    classifier was quantized from (reading the codes it reads: stored once, rounded for the
    classifier's inputs), and of an untied token embedding when `precision` (an int grid)
    is given for it (plain rounding: a lookup has no inputs to weigh the error by)."""
    rows = []
    for op in body_ops(func):
        if op.operation.name != "torch.aten.embedding":
            continue
        name = ctx.weights.name_of(op.operands[0])
        tied = name in shared
        if name is None or not (tied or (precision is not None and canonical_name(name) == EMBEDDING)):
            continue
        if not tied and precision.kind != "int":
            raise ctx.fail(op, f"the embedding table takes an integer grid (int<b>g<G>), not {precision}")
        table_op = defining_op(op.operands[0])
        w = ctx.weights.value_of(op.operands[0])
        if not tied:
            q = quantize_as(w, precision, options)
            with ir.InsertionPoint(table_op), table_op.location:
                shared[name] = (q, _int_constants(q, name, ctx))
        q, (codes, scales, mins) = shared[name]
        with ir.InsertionPoint(op), op.location:
            lookup = build_int_embedding(op.operands[1], codes, scales, bits=q.bits, group_size=q.group_size,
                                         result_type=op.results[0].type, mins=mins)
        op.results[0].replace_all_uses_with(lookup.result)
        op.operation.erase()
        erase_if_unused(table_op)
        if not tied:
            rows.append({"function": func.sym_name.value, "layer": name, "group": EMBEDDING_GROUP, **_report_row(w, q, precision, options)})
    return rows


def _report_row(w: np.ndarray, quantized, precision: Precision, options: TernaryOptions) -> dict:
    # The rounding error in place of the dequantized weight: at 8B a classifier's f32
    # matrix is 2 GB, and every temporary of that size counts against the memory budget.
    error = quantized.dequantize()
    np.subtract(error, w, out=error)
    if isinstance(quantized, TernaryWeight):
        ternary = precision.ternary_options(options)
        details = {"precision": "ternary", "scale_kind": ternary.scale, "group_size": quantized.group_size, "planes": ternary.planes}
        codes = quantized.ternary
        stored_bits = 8 * (pack_ternary_2bit(quantized.ternary).nbytes + quantized.scales.nbytes)
    elif isinstance(quantized, Int8Weight):
        details = {"precision": "int8", "scale_kind": "channel"}
        codes = quantized.codes
        stored_bits = 8 * (quantized.codes.nbytes + quantized.scales.nbytes)
    else:
        details = {"precision": str(precision), "bits": quantized.bits, "group_size": quantized.group_size}
        codes = quantized.codes
        stored_bits = quantized.stored_bits()
    return {
        "shape": list(w.shape),
        **details,
        "choice": str(precision),  # the precision's name (t1g64, int4g64, ...), as a policy chooses it
        "relative_error": _norm(error) / max(_norm(w), 1e-30),
        "zero_fraction": float(np.mean(codes == 0)),
        "exact": bool(getattr(quantized, "exact", False)) or not error.any(),
        "bytes_before": int(w.nbytes),
        "bytes_after": stored_bits // 8,
        "bits_per_weight": stored_bits / w.size,
    }


def _f32_row(name: str | None, weight: ir.Value, ctx: PassContext) -> dict | None:
    """A weight matrix left in f32 (for the bits summary), or None if it is not one."""
    info = tensor_info(weight.type)
    if name is None or info is None or info.rank != 2 or None in info.shape or ctx.weights.constant_op(weight) is None:
        return None
    return {"layer": name, "shape": list(info.shape), "precision": "f32", "bits_per_weight": 32.0}


def _bits_summary(rows: list[dict], kept: list[dict]) -> dict:
    """Stored bits per weight over every weight matrix, quantized or kept in f32 (each
    function holds the same weights: counted once by name and precision, so an f32 table
    whose tied classifier got its own int8 copy counts twice, as it is stored)."""
    unique = {(row["layer"], row["precision"]): row for row in [*kept, *rows]}
    weights = sum(int(np.prod(row["shape"])) for row in unique.values())
    bits = sum(row["bits_per_weight"] * int(np.prod(row["shape"])) for row in unique.values())
    counts = Counter(row.get("choice", row["precision"]) for row in unique.values())
    return {
        "bits_per_weight": float(bits / weights) if weights else None,
        "weights": weights,
        "precisions": ", ".join(f"{n} {p}" for p, n in sorted(counts.items(), key=lambda pn: (-pn[1], pn[0]))),
        "kept_f32": sorted({row["layer"] for row in kept}),
    }


@dataclass(frozen=True)
class _Patterns:
    """The weight-name globs of one run: skip= and keep= (with the policy's harden.keep)."""

    skip: list[str]
    keep: list[str]


def _matching(patterns: list[str], names: set[str]) -> str | None:
    """The first pattern that matches one of the names."""
    return next((p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)), None)


def _match_names(op, name: str) -> set[str]:
    """What patterns are matched against: the weight's name as the module has it, its
    frontend-independent name and layer group (core/llama_names.py), and `output` for the
    classifier (also when it is the tied embedding)."""
    names = {name, canonical_name(name)}
    group = layer_group(name)
    if group is not None:
        names.add(group)
    if op.operation.name in (LINEAR, FUSED_QKV) and _is_classifier(op, name):
        names.add(CLASSIFIER_GROUP)
    return names


def _result_type(op, out_features: int) -> ir.Type:
    """The replacement's result: the input's leading dimensions, `out_features` wide."""
    leading = tensor_info(op.operands[0].type).shape[:-1]
    return vtensor_type((*leading, out_features), tensor_info(op.results[0].type).dtype)


def _replace_linear(op, linear) -> None:
    """Replaces a linear or fused_qkv by `linear` (sliced into q, k, v for a fused_qkv) and
    erases the f32 weight and bias constants nothing reads any more."""
    with ir.InsertionPoint(op), op.location:
        outputs = _split_fused(op, linear.result) if op.operation.name == FUSED_QKV else [linear.result]
    weight_op = defining_op(op.operands[1])
    bias_op = defining_op(_bias(op)) if _bias(op) is not None else None
    for old, new in zip(op.results, outputs):
        old.replace_all_uses_with(new)
    op.operation.erase()
    erase_if_unused(weight_op)
    erase_if_unused(bias_op)


def _norm(x: np.ndarray) -> float:
    """The Frobenius norm without a temporary of x's size."""
    flat = np.ascontiguousarray(x).reshape(-1)
    return float(np.sqrt(np.dot(flat, flat)))


def skip_patterns(entries) -> list[str]:
    """Glob patterns of weight names or layer groups; a plain name `layers.0.attention`
    also covers the weights inside it (`layers.0.attention.*`)."""
    patterns = []
    for entry in entries:
        patterns.append(entry)
        if not any(c in entry for c in "*?["):
            patterns.append(entry + ".*")
    return patterns


def _bias(op) -> ir.Value | None:
    if op.operation.name == FUSED_QKV:
        return op.bias
    return None if is_none(op.operands[2]) else op.operands[2]


def _is_classifier(op, name: str) -> bool:
    """The output projection: named so (as harden-import names it) or tied to the embedding."""
    if op.operation.name != LINEAR:
        return False
    return name.endswith(CLASSIFIER_NAMES) or any(
        u.operation.name == "torch.aten.embedding" for u in users(op.operands[1])
    )


def _split_fused(fused, y: ir.Value) -> list[ir.Value]:
    """q, k, v as slices of the fused ternary_linear's output (last dimension)."""
    results, start = [], 0
    for size, result in zip((fused.q_size.value, fused.k_size.value, fused.v_size.value), fused.results):
        dim, begin, end, step = (torch_d.ConstantIntOp(v).result for v in (-1, start, start + size, 1))
        results.append(torch_d.AtenSliceTensorOp(result.type, y, dim, begin, end, step).result)
        start += size
    return results
