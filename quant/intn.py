"""n-bit integer quantization of a weight matrix in groups of input columns, in numpy.

W [out, in] ~ scale[row, group] * Q (symmetric), or min[row, group] + scale[row, group] * Q
(affine, `affine=True`), with Q integer codes of `bits` bits and one f16 scale (and min) per
`group_size` consecutive input columns of a row. This is the grid of `harden.int_linear`
and `harden.int_embedding`:

* symmetric: Q in [-2^(b-1), 2^(b-1) - 1], all 2^b levels used: the scale maps the group's
  largest-magnitude weight to -2^(b-1) (its sign decides), as llama.cpp's Q4_0 does, then
  shrinks while that lowers the (importance-weighted) squared error (clipping search);
* affine: Q in [0, 2^b - 1], min = the group's minimum and scale = range / (2^b - 1), as
  llama.cpp's Q4_1 stores blocks. A matrix already on such a grid (a dequantized Q4_1
  file, with f16 scale and min) converts exactly: `exact_affine_grid` finds it.

Scales and mins are stored in f16 (what the budget counts); the error is measured after
their rounding. Bits per weight: bits + 16 / group_size (+ 16 / group_size for the mins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE_DTYPE = np.float16
CLIP_STEPS = 16  # shrink factors of the symmetric scale tried, from 1.0 down to CLIP_FLOOR
CLIP_FLOOR = 0.6


def code_range(bits: int, affine: bool) -> tuple[int, int]:
    """Smallest and largest code."""
    return (0, 2**bits - 1) if affine else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


@dataclass(frozen=True)
class IntWeight:
    """Codes int8 [out, in] (n-bit values), f16 scales [out, groups], f16 mins (affine) or None."""

    codes: np.ndarray
    scales: np.ndarray
    bits: int
    group_size: int
    mins: np.ndarray | None = None
    exact: bool = False  # the weights were already on this grid

    def dequantize(self) -> np.ndarray:
        out_features, in_features = self.codes.shape
        scale = expand_groups(self.scales.astype(np.float32), in_features, self.group_size)
        w = self.codes.astype(np.float32) * scale
        if self.mins is not None:
            w += expand_groups(self.mins.astype(np.float32), in_features, self.group_size)
        return w

    def stored_bits(self) -> int:
        """Bits of codes, scales and mins as stored."""
        return self.codes.size * self.bits + 16 * self.scales.size + (16 * self.mins.size if self.mins is not None else 0)


def groups_of(in_features: int, group_size: int) -> int:
    return -(-in_features // group_size)


def int_bits_per_weight(bits: int, group_size: int, in_features: int, affine: bool = False) -> float:
    """Stored bits per weight of a matrix with rows of `in_features` on this grid."""
    per_row = bits * in_features + 16 * groups_of(in_features, group_size) * (2 if affine else 1)
    return per_row / in_features


def expand_groups(per_group: np.ndarray, in_features: int, group_size: int) -> np.ndarray:
    """[rows, groups] -> [rows, in_features], each group's value repeated over its columns."""
    return np.repeat(per_group, group_size, axis=1)[:, :in_features]


def _grouped(w: np.ndarray, group_size: int) -> np.ndarray:
    """[out, in] -> [out, groups, group_size], the last group zero padded."""
    out_features, in_features = w.shape
    padded = groups_of(in_features, group_size) * group_size
    return np.pad(w, ((0, 0), (0, padded - in_features))).reshape(out_features, -1, group_size)


def symmetric_scales(groups: np.ndarray, bits: int, importance: np.ndarray | None = None) -> np.ndarray:
    """Per-group f16 scales [out, groups] for symmetric codes, with the clipping search
    minimizing sum(importance * (w - s q)^2) over the group (importance per column)."""
    lo, hi = code_range(bits, affine=False)
    weight = np.ones_like(groups) if importance is None else importance
    largest = np.take_along_axis(groups, np.abs(groups).argmax(-1)[..., None], -1)[..., 0]
    base = np.where(largest == 0, 1.0, largest / lo)
    best, best_error = None, None
    for factor in np.linspace(1.0, CLIP_FLOOR, CLIP_STEPS):
        scale = (base * factor).astype(SCALE_DTYPE).astype(np.float32)
        scale = np.where(scale == 0, np.float32(1.0), scale)
        q = np.clip(np.rint(groups / scale[..., None]), lo, hi)
        error = (weight * (groups - scale[..., None] * q) ** 2).sum(-1)
        if best is None:
            best, best_error = scale, error
        else:
            better = error < best_error
            best, best_error = np.where(better, scale, best), np.where(better, error, best_error)
    return best.astype(SCALE_DTYPE)


def quantize_intn(w: np.ndarray, bits: int, group_size: int, importance: np.ndarray | None = None) -> IntWeight:
    """Round-to-nearest symmetric `bits`-bit codes of W [out, in] with groups of
    `group_size` columns (clipping search weighted by the per-column `importance`, e.g. the
    diagonal of the calibration Hessian)."""
    w = np.asarray(w, np.float32)
    out_features, in_features = w.shape
    group_size = min(group_size, in_features)
    groups = _grouped(w, group_size)
    weight = None if importance is None else _grouped(np.asarray(importance, np.float32)[None, :], group_size)
    scales = symmetric_scales(groups, bits, weight)
    lo, hi = code_range(bits, affine=False)
    codes = np.clip(np.rint(groups / scales.astype(np.float32)[..., None]), lo, hi)
    codes = codes.reshape(out_features, -1)[:, :in_features].astype(np.int8)
    return IntWeight(codes, scales, bits, group_size)


def exact_affine_grid(w: np.ndarray, bits: int = 4, group_size: int = 32) -> IntWeight | None:
    """The affine `bits`-bit grid (f16 scale and min per group) W lies on exactly, or None.
    A dequantized llama.cpp Q4_1 tensor lies on the 4-bit grid with groups of 32."""
    w = np.asarray(w, np.float32)
    out_features, in_features = w.shape
    if in_features % group_size:
        return None
    groups = w.reshape(out_features, -1, group_size)
    low, high = groups.min(-1), groups.max(-1)
    top = code_range(bits, affine=True)[1]
    mins = low.astype(SCALE_DTYPE)
    scales = ((high - low) / top).astype(SCALE_DTYPE)
    scale32 = np.where(scales == 0, np.float32(1.0), scales.astype(np.float32))
    codes = np.clip(np.rint((groups - mins.astype(np.float32)[..., None]) / scale32[..., None]), 0, top)
    result = IntWeight(codes.reshape(out_features, in_features).astype(np.int8), scales, bits, group_size, mins, exact=True)
    return result if np.array_equal(result.dequantize(), w) else None
