"""Ternary quantization of a weight matrix, in numpy (used by harden-ternarize).

A weight W [out, in] becomes W ~ sum over planes p of scale_p * T_p with T_p in
{-1, 0, +1}, one scale per scale group (the whole tensor, an output row, or a run of
`group_size` input columns of a row):

* `absmean` (BitNet b1.58): scale = mean |w| of the group, T = clamp(round(w / scale), -1, 1).
* `twn` (ternary weight networks): threshold d = 0.7 * mean |w|, T = sign(w) where |w| > d,
  scale = mean |w| of the kept weights.
* A group that is already ternary ({-s, 0, +s}) is converted exactly (scale s, T = sign(w))
  whatever the method, so hardening a ternary-trained checkpoint is lossless.
* planes = 2 fits a second ternary plane to the residual W - scale_1 * T_1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harden.dialects.ternary_pack import expand_scales, packed_columns, scale_groups
from harden.quant.options import TernaryOptions

METHODS = ("absmean", "twn")
TWN_THRESHOLD = 0.7


@dataclass(frozen=True)
class TernaryWeight:
    """Ternary planes [planes, out, in] (int8) and f32 scales [planes, rows, groups]."""

    ternary: np.ndarray
    scales: np.ndarray
    group_size: int
    exact: bool  # every scale group was already ternary

    def dequantize(self) -> np.ndarray:
        """The f32 weight the planes stand for."""
        _, out_features, in_features = self.ternary.shape
        full = expand_scales(self.scales, out_features, in_features, self.group_size)
        return (self.ternary * full).sum(axis=0, dtype=np.float32)


def _as_groups(w: np.ndarray, scale_kind: str, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Views W as [rows, groups, members] (zero padded) with a mask of real members."""
    out_features, in_features = w.shape
    if scale_kind == "tensor":
        return w.reshape(1, 1, -1), np.ones((1, 1, w.size), bool)
    groups = scale_groups(in_features, group_size)
    padded = np.zeros((out_features, groups * group_size), w.dtype)
    padded[:, :in_features] = w
    mask = np.zeros(groups * group_size, bool)
    mask[:in_features] = True
    return (
        padded.reshape(out_features, groups, group_size),
        np.broadcast_to(mask.reshape(1, groups, group_size), (out_features, groups, group_size)),
    )


def _from_groups(grouped: np.ndarray, scale_kind: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of _as_groups: back to [out, in], padding dropped."""
    if scale_kind == "tensor":
        return grouped.reshape(shape)
    return grouped.reshape(shape[0], -1)[:, : shape[1]]


def _fit_plane(groups: np.ndarray, mask: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ternary plane for every group: (ternary, scale per group, exact-group mask)."""
    magnitude = np.abs(groups) * mask
    count = mask.sum(axis=2)
    mean_abs = magnitude.sum(axis=2) / np.maximum(count, 1)
    largest = magnitude.max(axis=2)
    # Exactly ternary: every non-zero magnitude equals the largest one.
    nonzero = magnitude > 0
    exact = np.all(~nonzero | (magnitude == largest[..., None]), axis=2)

    if method == "absmean":
        safe = np.where(mean_abs > 0, mean_abs, 1.0)
        ternary = np.clip(np.rint(groups / safe[..., None]), -1, 1)
        scale = mean_abs
    elif method == "twn":
        kept = magnitude > TWN_THRESHOLD * mean_abs[..., None]
        ternary = np.sign(groups) * kept
        scale = (magnitude * kept).sum(axis=2) / np.maximum(kept.sum(axis=2), 1)
    else:
        raise ValueError(f"unknown ternarization method '{method}' (expected one of {', '.join(METHODS)})")

    ternary = np.where(exact[..., None], np.sign(groups), ternary) * mask
    scale = np.where(exact, largest, scale)
    return ternary.astype(np.int8), scale.astype(np.float32), exact


def ternarize(
    w: np.ndarray, method: str = "absmean", scale_kind: str = "channel", group_size: int = 0, planes: int = 1
) -> TernaryWeight:
    """Ternarizes W [out, in]. group_size is used by the `group` kind only."""
    w = np.asarray(w, np.float32)
    in_features = w.shape[1]
    group_size = group_size if scale_kind == "group" else in_features
    residual_groups, mask = _as_groups(w, scale_kind, group_size)
    ternary_planes, scale_planes, exact_all = [], [], None
    for _ in range(planes):
        ternary, scale, exact = _fit_plane(residual_groups, mask, method)
        exact_all = exact if exact_all is None else exact_all
        ternary_planes.append(_from_groups(ternary, scale_kind, w.shape))
        scale_planes.append(scale)
        residual_groups = residual_groups - ternary * scale[..., None]
    scales = np.stack(scale_planes)  # [planes, rows, groups]
    if scale_kind == "tensor":
        scales = scales.reshape(planes, 1, 1)
    return TernaryWeight(np.stack(ternary_planes), scales, group_size, bool(np.all(exact_all)))


def ternarize_as(w: np.ndarray, options: TernaryOptions) -> TernaryWeight:
    """Ternarizes W [out, in] as harden-ternarize does with `options` (a scale group is
    never wider than the row)."""
    return ternarize(w, options.method, options.scale, min(options.columns_per_scale, w.shape[1]), options.planes)


def ternary_bytes(shape: tuple[int, int], options: TernaryOptions) -> int:
    """Packed codes plus f32 scales of one weight, as the pipeline stores them."""
    out_f, in_f = shape
    groups = {"tensor": 1, "channel": out_f, "group": out_f * -(-in_f // min(options.columns_per_scale, in_f))}[options.scale]
    return options.planes * (out_f * packed_columns(in_f) + 4 * groups)
