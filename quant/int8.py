"""Symmetric per-output-channel int8 quantization of a weight matrix, in numpy.

The precision harden-ternarize gives the layers it keeps out of ternary with
`keep-as=int8` (`harden.int8_linear`): W [out, in] ~ scale[out] * Q with Q in
[-127, 127] and scale = max |w| of the row / 127 (a row of zeros gets scale 1). Four
times fewer weight bytes than f32, about 0.4% of a row's largest weight as the worst
rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8_LEVELS = 127


@dataclass(frozen=True)
class Int8Weight:
    """Codes int8 [out, in] in [-127, 127] and f32 scales [out, 1]."""

    codes: np.ndarray
    scales: np.ndarray

    def dequantize(self) -> np.ndarray:
        return self.codes.astype(np.float32) * self.scales


def quantize_int8(w: np.ndarray) -> Int8Weight:
    """Per-output-channel absmax int8 codes of the f32 weight `w` [out, in]."""
    w = np.asarray(w, np.float32)
    absmax = np.abs(w).max(axis=1, keepdims=True)
    scales = np.where(absmax > 0, absmax / np.float32(INT8_LEVELS), np.float32(1)).astype(np.float32)
    codes = np.clip(np.rint(w / scales), -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
    return Int8Weight(codes, scales)


def int8_bytes(shape: tuple[int, int]) -> int:
    """Codes plus f32 scales of one weight, as harden.int8_linear stores them."""
    out_features, in_features = shape
    return out_features * in_features + 4 * out_features
