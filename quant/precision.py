"""The precisions a weight matrix can be stored in, by name, with their stored bits.

    f32          kept as it is
    int8         8-bit codes per output channel, f32 scales (harden.int8_linear)
    int<b>g<G>   symmetric b-bit codes (b in 2..8), an f16 scale per G columns (harden.int_linear)
    uint<b>g<G>  affine b-bit codes, f16 scale and min per G columns (llama.cpp's Q4_1 is uint4g32)
    ternary      the ternary options' own grid (method, scale, group size, planes)
    t<P>g<G>     ternary with P planes (1 or 2), f32 scales per G columns (harden.ternary_linear)

`quantize_as` gives a matrix in a precision, with GPTQ's error feedback when a calibration
Hessian is given (quant/gptq.py), else plain rounding with least-squares scales; a matrix
already exactly on a grid (a dequantized Q4_1 tensor on uint4g32) converts exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from torch_mlir import ir

from harden.quant.int8 import Int8Weight, int8_bytes, quantize_int8
from harden.quant.intn import IntWeight, exact_affine_grid, int_bits_per_weight
from harden.quant.options import TernaryOptions
from harden.quant.ternary import TernaryWeight, ternarize_as, ternary_bytes

# Module attribute harden-ternarize sets: stored bits per weight over all weight matrices,
# scales included (the schedule summary repeats it).
BITS_ATTR = "harden.bits_per_weight"

_PATTERN = re.compile(r"^(?:(f32|int8|ternary)|(u?)int([2-8])g(\d+)|t([12])g(\d+))$")


class PrecisionError(ValueError):
    """A precision name that means nothing; the message lists the valid forms."""


@dataclass(frozen=True)
class Precision:
    kind: str  # "f32", "int8", "int", "ternary"
    bits: int = 0
    group_size: int = 0  # 0: the ternary options' own (kind "ternary" named plainly)
    planes: int = 1
    affine: bool = False

    @classmethod
    def parse(cls, text: str) -> "Precision":
        m = _PATTERN.match(text)
        if m is None:
            raise PrecisionError(f"unknown precision '{text}' (f32, int8, int<b>g<G>, uint<b>g<G>, ternary, t<planes>g<G>)")
        plain, unsigned, bits, group, planes, tgroup = m.groups()
        if plain:
            return cls(plain)
        if bits:
            if unsigned and int(bits) > 7:
                raise PrecisionError(f"'{text}': affine codes have at most 7 bits")
            return cls("int", bits=int(bits), group_size=int(group), affine=bool(unsigned))
        return cls("ternary", planes=int(planes), group_size=int(tgroup))

    def __str__(self) -> str:
        if self.kind in ("f32", "int8") or (self.kind == "ternary" and not self.group_size):
            return self.kind
        if self.kind == "int":
            return f"{'u' if self.affine else ''}int{self.bits}g{self.group_size}"
        return f"t{self.planes}g{self.group_size}"

    def fits(self, in_features: int) -> bool:
        """Whether the grid's groups divide a row of `in_features` (the int ops require it)."""
        return self.kind != "int" or in_features % self.group_size == 0

    def ternary_options(self, base: TernaryOptions) -> TernaryOptions:
        """The ternary options this precision stands for (a plain `ternary` is `base` itself)."""
        if not self.group_size:
            return base.ternary_options()
        return TernaryOptions(method=base.method, scale="group", group_size=self.group_size, planes=self.planes)

    def stored_bits(self, shape: tuple[int, int], base: TernaryOptions) -> int:
        """Bits of codes, scales and mins a matrix of `shape` takes in this precision."""
        out_features, in_features = shape
        if self.kind == "f32":
            return 32 * out_features * in_features
        if self.kind == "int8":
            return 8 * int8_bytes(shape)
        if self.kind == "int":
            return round(out_features * in_features * int_bits_per_weight(self.bits, self.group_size, in_features, self.affine))
        return 8 * ternary_bytes(shape, self.ternary_options(base))


Quantized = TernaryWeight | IntWeight | Int8Weight


def op_precision(op) -> str | None:
    """The precision name of a weight-reading op from its attributes (int4g64, t1g64, int8,
    f32 for a torch linear or fused_qkv), or None for ops without a weight matrix."""
    name = op.operation.name
    attrs = op.operation.attributes

    def attr(key: str) -> int:
        return ir.IntegerAttr(attrs[key]).value

    if name in ("harden.int_linear", "harden.int_embedding"):
        affine = list(ir.DenseI32ArrayAttr(attrs["operandSegmentSizes"]))[3] > 0
        return str(Precision("int", bits=attr("bits"), group_size=attr("group_size"), affine=affine))
    if name == "harden.ternary_linear":
        group = attr("group_size") if ir.StringAttr(attrs["scale_kind"]).value == "group" else attr("in_features")
        return str(Precision("ternary", planes=attr("planes"), group_size=group))
    if name == "harden.int8_linear":
        return "int8"
    if name in ("harden.fused_qkv", "torch.aten.linear", "torch.aten.embedding"):
        return "f32"
    return None


def quantize_as(w: np.ndarray, precision: Precision, base: TernaryOptions, hessian: np.ndarray | None = None, feedback: bool = True) -> Quantized | None:
    """W [out, in] in `precision` (None for f32): GPTQ with `hessian` [in, in] when given
    (plain rounding with fits weighted by its diagonal when feedback=False), else plain
    rounding with least-squares fits (absmean or twn for a plain `ternary` with those methods)."""
    # GPTQ runs on torch, whose import costs every tool a second at start-up: only here.
    from harden.quant.gptq import gptq_int, gptq_ternary

    if precision.kind == "f32":
        return None
    if precision.kind == "int8":
        return quantize_int8(w)
    if precision.kind == "int":
        if precision.affine:
            exact = exact_affine_grid(w, precision.bits, precision.group_size)
            if exact is None:
                raise PrecisionError(f"{precision} is only used for weights already on that grid")
            return exact
        return gptq_int(w, hessian, precision.bits, precision.group_size, feedback)
    options = precision.ternary_options(base)
    if options.method in ("absmean", "twn"):
        return ternarize_as(w, options)
    group = options.columns_per_scale if options.scale == "group" else np.shape(w)[1]
    return gptq_ternary(w, hessian if options.method == "gptq" else None, options.planes, group, feedback)
