"""Ternary weights: 2-bit code packing and scale groups, in numpy.

Layout of `harden.ternary_linear`'s packed weight (the contract every producer and
consumer of the op follows):

* A ternary value t in {-1, 0, +1} is stored as the unsigned 2-bit code c = t + 1
  (0 -> -1, 1 -> 0, 2 -> +1; code 3 is never produced). Keeping the code unsigned lets
  an int8 dot product run as sum(c * x) - sum(x), the VNNI trick of bitnet.cpp.
* The packed tensor has shape [planes, out_features, ceil(in_features / 4)] and element
  type i8. Byte j of row n holds the codes of input columns 4j .. 4j+3; column 4j+i sits
  in bits 2i .. 2i+1 (least significant bits first).
* Columns past in_features (padding of the last byte) hold code 1, i.e. t = 0, so they
  contribute nothing whatever the activation.

Scales are f32 with shape [planes, rows, groups]: `tensor` kind [planes, 1, 1], `channel`
kind [planes, out, 1], `group` kind [planes, out, ceil(in / group_size)], the last group
possibly shorter. The dequantized weight is sum over planes p of scale[p] * t[p].
"""

from __future__ import annotations

import numpy as np

CODES_PER_BYTE = 4
SCALE_KINDS = ("tensor", "channel", "group")


def packed_columns(in_features: int) -> int:
    """Bytes per packed row: four 2-bit codes per byte, the last byte padded."""
    return -(-in_features // CODES_PER_BYTE)


def scale_groups(in_features: int, group_size: int) -> int:
    """Number of column groups sharing one scale along a row."""
    return -(-in_features // group_size)


def scale_shape(
    scale_kind: str, planes: int, out_features: int, in_features: int, group_size: int
) -> tuple[int, int, int]:
    """Shape of the f32 scale tensor for a scale kind (see the module docstring)."""
    if scale_kind == "tensor":
        return (planes, 1, 1)
    if scale_kind == "channel":
        return (planes, out_features, 1)
    if scale_kind == "group":
        return (planes, out_features, scale_groups(in_features, group_size))
    raise ValueError(f"unknown scale kind '{scale_kind}' (expected one of {', '.join(SCALE_KINDS)})")


def pack_ternary_2bit(ternary: np.ndarray) -> np.ndarray:
    """Packs ternary values {-1, 0, +1} along the last axis, four per byte, as int8."""
    ternary = np.asarray(ternary)
    if ternary.size and (ternary.min() < -1 or ternary.max() > 1):
        raise ValueError("ternary values must lie in {-1, 0, +1}")
    in_features = ternary.shape[-1]
    padded = np.ones(ternary.shape[:-1] + (packed_columns(in_features) * CODES_PER_BYTE,), np.uint8)
    padded[..., :in_features] = ternary.astype(np.int16) + 1
    codes = padded.reshape(ternary.shape[:-1] + (-1, CODES_PER_BYTE))
    packed = codes[..., 0] | (codes[..., 1] << 2) | (codes[..., 2] << 4) | (codes[..., 3] << 6)
    return packed.astype(np.uint8).view(np.int8)


def unpack_ternary_2bit(packed: np.ndarray, in_features: int) -> np.ndarray:
    """Inverse of `pack_ternary_2bit`: int8 values in {-1, 0, +1}, last axis in_features long."""
    packed = np.asarray(packed).view(np.uint8)
    if packed.shape[-1] != packed_columns(in_features):
        raise ValueError(
            f"packed rows have {packed.shape[-1]} bytes, expected {packed_columns(in_features)} "
            f"for {in_features} input features"
        )
    shifts = np.arange(CODES_PER_BYTE, dtype=np.uint8) * 2
    codes = (packed[..., None] >> shifts) & 0b11
    codes = codes.reshape(packed.shape[:-1] + (-1,))[..., :in_features]
    if codes.size and codes.max() > 2:
        raise ValueError("packed weight holds the unused 2-bit code 3")
    return codes.astype(np.int8) - 1


def expand_scales(scales: np.ndarray, out_features: int, in_features: int, group_size: int) -> np.ndarray:
    """Broadcasts [planes, rows, groups] scales to one scale per weight: [planes, out, in]."""
    planes = scales.shape[0]
    per_group = np.broadcast_to(scales, (planes, out_features, scales.shape[2]))
    return np.repeat(per_group, group_size, axis=2)[:, :, :in_features]


def dequantize_ternary(
    packed: np.ndarray, scales: np.ndarray, in_features: int, group_size: int
) -> np.ndarray:
    """The f32 weight [out, in] a packed ternary weight stands for: sum_p scale_p * t_p."""
    ternary = unpack_ternary_2bit(packed, in_features).astype(np.float32)
    out_features = ternary.shape[1]
    full_scales = expand_scales(scales.astype(np.float32), out_features, in_features, group_size)
    return (ternary * full_scales).sum(axis=0, dtype=np.float32)


def quantize_activations_int8(x: np.ndarray) -> np.ndarray:
    """Per-token absmax int8 rounding of activations (BitNet b1.58), returned in f32:
    round_even(x * 127 / amax) clamped to [-127, 127], times amax / 127."""
    x = np.asarray(x, np.float32)
    step = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-30)) / np.float32(127.0)
    return (np.clip(np.rint(x / step), -127, 127) * step).astype(np.float32)


def ternary_linear_reference(
    x: np.ndarray,
    packed: np.ndarray,
    scales: np.ndarray,
    in_features: int,
    group_size: int,
    bias: np.ndarray | None = None,
    activations: str = "f32",
) -> np.ndarray:
    """numpy reference of `harden.ternary_linear`: x @ W^T + b, with activations "f32" or
    "int8" (rounded per token first, as the lowering's activations=int8 option does)."""
    weight = dequantize_ternary(packed, scales, in_features, group_size)
    x = quantize_activations_int8(x) if activations == "int8" else np.asarray(x, np.float32)
    y = x @ weight.T
    return y if bias is None else y + bias
