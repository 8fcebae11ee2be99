"""The C custom-dispatch kernels of the integer linears (AVX-512 VNNI or AVX2), torch-mlir side.

The kernels (kernels/vnni_linear.c) read unsigned W-bit codes c = q + z at run time (W = 2:
ternary t + 1 or a base-4 digit; W = 4: codes of up to 4 bits, z = 8; W = 8: up to 8 bits,
z = 128) and compute sum(c * x) - z sum(x) with `vpdpbusd` (unsigned codes times signed 8-bit
activations), in one of two numerics:

* `fixed32` (activations=f32, exact): each token's activations on a 32-bit fixed-point grid
  split into four signed base-256 digits; integer-exact accumulation, as accurate as the f32
  reference or better.
* `int8` (activations=int8, BitNet b1.58): activations rounded per token to 127 levels of
  their absmax; equal to the numpy model of those numerics up to f32 rounding.

This side re-lays the weights out offline (W bits per weight) and emits what torch-mlir
can carry: the constants, a bodiless private `func.func` whose `harden.ternary_vnni`
attribute describes the kernel, and a `func.call` of it. backend/custom_dispatch.py replaces
the declaration, in IREE's own IR, by a definition that dispatches the C function.

Measured on this machine (bench/ternary_kernels.py: TinyLlama-1.1B linears, single-thread CPU
time, speed-up over IREE's f32 matmul): decode (M=1) fixed32 12-13x, int8 17-23x, the exact
linalg kernel 7-8x; prefill (M=128) int8 6x, fixed32 1.6-1.7x, exact 1.7-2.1x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harden.dialects.ternary_pack import unpack_ternary_2bit
from harden.kernels.contract import CUSTOM_DISPATCH_ATTR

NUMERICS = {"f32": "fixed32", "int8": "int8"}
"""The kernel's numerics for each `activations` choice of the lowering."""

BLOCK = 16  # rows and columns per block of codes (16 rows x 16 columns x W bits)
CODE_WIDTHS = (2, 4, 8)
"""Bits per stored code the kernels read (W)."""

MAX_GROUPS = 256  # scale groups per row the kernels keep activation sums for (MAX_GROUPS in C)

# Output rows per workgroup, measured best here: decode re-quantizes x in every workgroup,
# so it takes more rows per workgroup than prefill.
DECODE_ROWS_PER_WORKGROUP = 256
PREFILL_ROWS_PER_WORKGROUP = 128


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def zero_code(width: int) -> int:
    """The stored code of a zero weight at this width (z: c = q + z)."""
    return 1 if width == 2 else 2 ** (width - 1)


def unsupported_reason(scale_groups: int, group_size: int, in_features: int = 0, width: int = 2) -> str | None:
    """Why the kernels cannot take weights with these scale groups (and rows of `in_features`
    codes of `width` bits), or None if they can."""
    longest = 2**31 // (128 * (2**width - 1))  # sum(c * x) of a row stays in int32
    if _round_up(in_features, BLOCK) > longest:
        return f"rows of {in_features} columns exceed the {longest} of the {width}-bit kernels"
    if scale_groups > 1 and group_size % BLOCK:
        return f"group size {group_size} is not a multiple of {BLOCK}"
    if scale_groups > MAX_GROUPS:
        return f"{scale_groups} scale groups per row exceed the kernels' {MAX_GROUPS}"
    return None


@dataclass(frozen=True)
class VnniWeights:
    """Weights in the kernels' layout (see kernels/vnni_linear.c).

    codes: i8 [P * Np/16 * Kp/16 * 32 W], blocks [p][n1][kb][b] of 64 bytes (b < W/2); in
      vector b, byte 4j + kk holds in bits W i .. W i + W - 1 the code of row 16 n1 + j, column
      16 kb + 4 (8 b / W + i) + kk. Padding holds the zero code.
    scales: f32 [P * Np/16 * Gn * 16], [p][n1][g][lane] (tensor/channel scales per row).
    """

    codes: np.ndarray
    scales: np.ndarray
    planes: int
    padded_out: int  # Np: out_features rounded up to 16
    padded_in: int  # Kp: in_features rounded up to 16
    group_size: int  # columns per scale group, 0 for one group per row
    groups: int  # Gn
    code_bits: int = 2  # W
    symmetric: bool = False  # W = 8 without the code 0, so q = c - 128 is in [-127, 127] (see the C header)


def prepack(packed: np.ndarray, scales: np.ndarray, out_features: int, in_features: int, group_size: int) -> VnniWeights:
    """The kernels' constants from the canonical layout (packed i8 [P, N, ceil(K/4)], scales
    [P, 1|N, 1|Gn]). Check `unsupported_reason` first."""
    return prepack_codes(unpack_ternary_2bit(packed, in_features) + 1, scales, out_features, in_features, group_size)


def prepack_codes(codes_in: np.ndarray, scales: np.ndarray, out_features: int, in_features: int, group_size: int,
                  width: int = 2) -> VnniWeights:
    """The kernels' constants from stored codes c = q + zero_code(width) in [0, 2^width) [P, N,
    K] (the kernels compute with q: a ternary weight is t + 1, a base-4 digit in {-1, 0, 1, 2}
    is d + 1 at width 2) and scales [P, 1|N, 1|Gn]. Check `unsupported_reason` first."""
    planes, groups = codes_in.shape[0], scales.shape[2]
    n_pad, k_pad = _round_up(out_features, BLOCK), _round_up(in_features, BLOCK)
    codes = np.full((planes, n_pad, k_pad), zero_code(width), np.uint8)
    codes[:, :out_features, :in_features] = codes_in
    per_byte = 8 // width  # codes per byte: the 4-column steps of one 64-byte vector
    # (p, n1, j, kb, b, i, kk) -> (p, n1, kb, b, j, kk, i): the codes of byte (j, kk) last
    codes = codes.reshape(planes, n_pad // BLOCK, BLOCK, k_pad // BLOCK, width // 2, per_byte, 4)
    codes = codes.transpose(0, 1, 3, 4, 2, 6, 5)
    blocks = np.zeros(codes.shape[:-1], np.uint8)
    for i in range(per_byte):
        blocks |= codes[..., i] << (width * i)
    per_row = np.zeros((planes, n_pad, groups), np.float32)
    per_row[:, :out_features, :] = np.broadcast_to(scales, (planes, out_features, groups))
    lanes = per_row.reshape(planes, n_pad // BLOCK, BLOCK, groups).transpose(0, 1, 3, 2)
    return VnniWeights(
        codes=np.ascontiguousarray(blocks).reshape(-1).view(np.int8),
        scales=np.ascontiguousarray(lanes).reshape(-1),
        planes=planes,
        padded_out=n_pad,
        padded_in=k_pad,
        group_size=group_size if groups > 1 else 0,
        groups=groups,
        code_bits=width,
        symmetric=width == 8 and not (codes_in == 0).any(),
    )


def declaration_text(symbol: str, rows: int, out_features: int, in_features: int, weights: VnniWeights, numerics: str) -> str:
    """MLIR text of the private declaration `@symbol(x: [M, K] f32, codes, scales) -> [M, N] f32`
    the lowering calls; its `harden.ternary_vnni` attribute holds what the IREE side needs
    beyond the types."""
    rows_per_workgroup = DECODE_ROWS_PER_WORKGROUP if rows == 1 else PREFILL_ROWS_PER_WORKGROUP
    fields = {
        "planes": weights.planes,
        "padded_out": weights.padded_out,
        "padded_in": weights.padded_in,
        "group_size": weights.group_size,
        "groups": weights.groups,
        "code_bits": weights.code_bits,
        "symmetric": int(weights.symmetric),
        "rows_per_workgroup": rows_per_workgroup,
    }
    attr = f'{{numerics = "{numerics}", ' + ", ".join(f"{k} = {v} : i64" for k, v in fields.items()) + "}"
    return (
        f"  func.func private @{symbol}(tensor<{rows}x{in_features}xf32>, tensor<{weights.codes.size}xi8>, "
        f"tensor<{weights.scales.size}xf32>) -> tensor<{rows}x{out_features}xf32> attributes {{{CUSTOM_DISPATCH_ATTR} = {attr}}}\n"
    )
