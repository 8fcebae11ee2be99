"""harden-ternarize: linear layers with constant weights to `harden.ternary_linear`."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d

from harden.core.files import write_atomically
from harden.core.graph import body_ops, defining_op, functions, is_none, users
from harden.core.llama_names import CLASSIFIER_GROUP, canonical_name, describe_groups, layer_group
from harden.core.pass_base import Pass, PassContext, option
from harden.core.tensor_types import tensor_info, vtensor_type
from harden.core.weights import erase_if_unused
from harden.dialects.harden import build_int8_linear, build_ternary_linear
from harden.dialects.ternary_pack import pack_ternary_2bit
from harden.passes.ternary_policy import KEEP_ATTR
from harden.quant.int8 import quantize_int8
from harden.quant.options import TernaryOptions
from harden.quant.ternary import ternarize_as

LINEAR = "torch.aten.linear"
FUSED_QKV = "harden.fused_qkv"
CLASSIFIER_NAMES = ("output.weight", "lm_head.weight")


@dataclass(frozen=True)
class Ternarize(TernaryOptions, Pass):
    """Rewrite linear layers with constant weights into `harden.ternary_linear` (2-bit codes, f32 scales).

    Rewrites `torch.aten.linear` and `harden.fused_qkv` whose weight (and bias, if any) is
    a constant: the attention projections, o, gate, up and down. The classifier (the
    linear whose weight is named output/lm_head or is the embedding, tied) only with
    classifier=true; embeddings are never linears and stay as they are. Groups that are
    already ternary ({-s, 0, +s}) convert exactly. A fused_qkv becomes one ternary_linear
    and three slices. `skip` leaves weights in f32; `keep` (and the module attribute
    `harden.keep` that harden-ternary-policy writes) keeps them out of ternary in the
    precision `keep-as` names: f32, or int8 per output channel (`harden.int8_linear`, a
    quarter of the f32 bytes; this also works for the classifier). Ops left alone get a
    remark under --harden-remarks; `report=FILE` writes per-layer error, zeros and bytes
    as JSON.
    """

    name = "harden-ternarize"

    skip: tuple[str, ...] = option((), "weights to leave in f32: glob patterns of weight names, or layer groups such as layers.0.attention")
    keep: tuple[str, ...] = option((), "weights to keep out of ternary in the keep-as precision (patterns as for skip)")
    report: str = option("", "write a per-layer JSON report to this file")

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        kept = module.attributes[KEEP_ATTR] if KEEP_ATTR in module.attributes else []
        patterns = _Patterns(skip=skip_patterns(self.skip), keep=skip_patterns([*self.keep, *(ir.StringAttr(g).value for g in kept)]))
        self._check_patterns(module, ctx)
        rows = []
        for func in functions(module):
            candidates = [op for op in body_ops(func) if op.operation.name in (LINEAR, FUSED_QKV)]
            for index, op in enumerate(candidates):
                name = ctx.weights.name_of(op.operands[1]) or f"{func.sym_name.value}.linear{index}"
                reason = self._refusal(op, name, ctx, patterns)
                if reason:
                    ctx.remark(op, f"not ternarized: {reason}")
                    continue
                keep = _matching(patterns.keep, _match_names(op, name))
                if keep and self.keep_as == "f32":
                    ctx.remark(op, f"not ternarized: '{name}' matches keep pattern '{keep}' (kept in f32)")
                    continue
                rewrite = self._rewrite_int8 if keep else self._rewrite
                rows.append({"function": func.sym_name.value, "layer": name, "group": layer_group(name), **rewrite(op, name, ctx)})
        if self.report:
            write_atomically(self.report, json.dumps({"options": self._options(), "layers": rows}, indent=2) + "\n")

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

    def _refusal(self, op, name: str, ctx: PassContext, patterns: "_Patterns") -> str | None:
        """Why `op` stays as it is, or None to ternarize it."""
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
        # A kept classifier is rewritten in the keep-as precision even without classifier=true.
        if not self.classifier and _is_classifier(op, name) and not _matching(patterns.keep, names):
            return f"'{name}' is the classifier (use classifier=true to ternarize it)"
        return None

    def _rewrite(self, op, name: str, ctx: PassContext) -> dict:
        """Replaces `op` by a ternary_linear; returns its report row."""
        w = ctx.weights.value_of(op.operands[1])
        out_features, in_features = w.shape
        tw = ternarize_as(w, self)
        packed = pack_ternary_2bit(tw.ternary)
        with ir.InsertionPoint(op), op.location:
            codes = ctx.weights.literal(packed, "si8", f"{name}.codes")
            scales = ctx.weights.literal(tw.scales, "f32", f"{name}.scales")
            linear = build_ternary_linear(
                op.operands[0],
                codes,
                scales,
                in_features=in_features,
                out_features=out_features,
                group_size=tw.group_size,
                planes=self.planes,
                scale_kind=self.scale,
                result_type=_result_type(op, out_features),
                bias=_bias(op),
            )
        _replace_linear(op, linear)
        return {
            "shape": [out_features, in_features],
            "precision": "ternary",
            "scale_kind": self.scale,
            "group_size": tw.group_size,
            "planes": self.planes,
            "relative_error": _relative_error(w, tw.dequantize()),
            "zero_fraction": float(np.mean(tw.ternary == 0)),
            "exact": tw.exact,
            "bytes_before": int(w.nbytes),
            "bytes_after": int(packed.nbytes + tw.scales.nbytes),
        }

    def _rewrite_int8(self, op, name: str, ctx: PassContext) -> dict:
        """Replaces `op` by an int8_linear (a weight kept with keep-as=int8); its report row."""
        w = ctx.weights.value_of(op.operands[1])
        q = quantize_int8(w)
        with ir.InsertionPoint(op), op.location:
            codes = ctx.weights.literal(q.codes, "si8", f"{name}.int8")
            scales = ctx.weights.literal(q.scales, "f32", f"{name}.int8_scales")
            linear = build_int8_linear(op.operands[0], codes, scales, result_type=_result_type(op, w.shape[0]), bias=_bias(op))
        _replace_linear(op, linear)
        approx = q.dequantize()
        return {
            "shape": list(w.shape),
            "precision": "int8",
            "scale_kind": "channel",
            "relative_error": _relative_error(w, approx),
            "zero_fraction": float(np.mean(q.codes == 0)),
            "exact": bool(np.array_equal(approx, w)),
            "bytes_before": int(w.nbytes),
            "bytes_after": int(q.codes.nbytes + q.scales.nbytes),
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


def _relative_error(w: np.ndarray, approx: np.ndarray) -> float:
    return float(np.linalg.norm(w - approx) / max(np.linalg.norm(w), 1e-30))


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
