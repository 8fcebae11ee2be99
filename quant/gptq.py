"""Calibrated rounding: GPTQ's error feedback onto harden's grids (ternary with one or two
planes, symmetric n-bit integers), with scales fitted in closed form.

GPTQ (Frantar et al., 2022) quantizes a weight matrix W [out, in] column by column and
spreads each column's rounding error over the columns not yet quantized, weighted by the
inverse Hessian H = X X^T of the layer's calibration inputs X [in, tokens], so that the
layer's output W X moves as little as possible (not the weights themselves). harden's
version:

* the grid's parameters of a group of columns (scales, or the two planes' scales) are fitted
  when the group is reached, on the error-updated weights, by least squares weighted by the
  diagonal of H (a column's importance), with the codes and scales refitted alternately:
  ternary (t = round(w / s) clipped to [-1, 1], then s = sum(h w t) / sum(h t t)), two
  ternary planes jointly (each weight takes the nearest of the 9 levels s1 t1 + s2 t2, then
  s1, s2 solve the 2 x 2 least-squares system; PTQTP's alternating fit, not a greedy
  residual), and symmetric integers (a clipping search over the scale);
* Hessian diagonal dampening 1% of its mean, columns in their natural order, blocks of 128
  columns with lazy updates (the reference implementation's defaults).

Without a Hessian (`hessian=None`) the same fits give plain rounding with least-squares
scales: the baseline GPTQ must beat. Cost: O(in^2 * out) per matrix; SmolLM2-135M's 210
matrices take about a minute on two cores. torch in float64, numpy in and out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from harden.quant.intn import SCALE_DTYPE, IntWeight, code_range
from harden.quant.ternary import TernaryWeight

BLOCK = 128
DAMPENING = 0.01
FIT_ITERATIONS = 12


def _one_thread(function):
    """Runs `function` with one torch thread: its tensors are a column or a group wide, where
    a second thread costs more than it gives (measured on 2 cores: GPTQ of a 1536 x 576
    matrix onto int4g64 0.39 s with one thread, 5.9 s with two while another process runs)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@dataclass(frozen=True)
class Grid:
    """What a weight is rounded onto: `kind` "ternary" (1 or 2 planes) or "int" (bits)."""

    kind: str
    planes: int = 1
    bits: int = 2

    def fit(self, group: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
        """Parameters [out, k] for a group of columns [out, g] (importance [g])."""
        if self.kind == "int":
            return _fit_int(group, importance, self.bits)
        if self.planes == 1:
            return _fit_ternary(group, importance)
        return _fit_two_planes(group, importance)

    def round(self, column: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rounded values [out], codes [out, planes]) of one column [out]."""
        values, codes = self.round_block(column[:, None], params)
        return values[:, 0], codes[:, 0]

    def round_block(self, block: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rounded values [out, g], codes [out, g, planes]) of columns [out, g] sharing params."""
        if self.kind == "ternary" and self.planes == 2:
            return _nearest_two_plane_levels(block, params)
        lo, hi = code_range(self.bits, affine=False) if self.kind == "int" else (-1, 1)
        codes = torch.clamp(torch.round(block / params[:, :1]), lo, hi)
        return codes * params[:, :1], codes[:, :, None]


def _weighted(importance: torch.Tensor) -> torch.Tensor:
    return importance / importance.mean().clamp_min(1e-30)


def _fit_int(group, importance, bits):
    lo, hi = code_range(bits, affine=False)
    weight = _weighted(importance)[None, :]
    largest = torch.gather(group, 1, group.abs().argmax(1, keepdim=True))[:, 0]
    base = torch.where(largest == 0, torch.ones_like(largest), largest / lo)
    best, best_error = None, None
    for factor in torch.linspace(1.0, 0.6, 16, dtype=group.dtype):
        scale = _f16(base * factor)
        q = torch.clamp(torch.round(group / scale[:, None]), lo, hi)
        error = (weight * (group - scale[:, None] * q) ** 2).sum(1)
        if best is None:
            best, best_error = scale, error
        else:
            better = error < best_error
            best, best_error = torch.where(better, scale, best), torch.where(better, error, best_error)
    return best[:, None]


def _fit_ternary(group, importance):
    weight = _weighted(importance)[None, :]
    scale = group.abs().mean(1).clamp_min(1e-12)
    for _ in range(FIT_ITERATIONS):
        t = torch.clamp(torch.round(group / scale[:, None]), -1, 1)
        den = (weight * t * t).sum(1)
        scale = torch.where(den > 0, (weight * group * t).sum(1) / den.clamp_min(1e-30), scale).clamp_min(1e-12)
    return scale[:, None]


_PAIRS = torch.tensor([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], dtype=torch.float64)  # [9, 2]


def _nearest_two_plane_levels(values: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of values [out, g] to the nearest of s1 t1 + s2 t2 (params [out, 2]): (levels, codes [out, g, 2])."""
    levels = params @ _PAIRS.T.to(params.dtype)  # [out, 9]
    choice = (values[:, :, None] - levels[:, None, :]).abs().argmin(-1)
    return torch.gather(levels, 1, choice), _PAIRS.to(values.dtype)[choice]


def _fit_two_planes(group, importance):
    """s1 >= s2 for two ternary planes, fitted jointly by alternating least squares."""
    weight = _weighted(importance)[None, :]
    s1 = _fit_ternary(group, importance)[:, 0]
    residual = group - s1[:, None] * torch.clamp(torch.round(group / s1[:, None]), -1, 1)
    s2 = _fit_ternary(residual, importance)[:, 0]
    params = torch.stack([s1, s2], 1)
    for _ in range(FIT_ITERATIONS):
        _, codes = _nearest_two_plane_levels(group, params)
        t1, t2 = codes[..., 0], codes[..., 1]
        a11, a12, a22 = (weight * t1 * t1).sum(1), (weight * t1 * t2).sum(1), (weight * t2 * t2).sum(1)
        b1, b2 = (weight * group * t1).sum(1), (weight * group * t2).sum(1)
        det = a11 * a22 - a12 * a12
        solvable = det.abs() > 1e-20
        new1 = torch.where(solvable, (b1 * a22 - b2 * a12) / torch.where(solvable, det, torch.ones_like(det)), params[:, 0])
        new2 = torch.where(solvable, (a11 * b2 - a12 * b1) / torch.where(solvable, det, torch.ones_like(det)), params[:, 1])
        params = torch.stack([new1, new2], 1)
    return params


def _f16(values: torch.Tensor) -> torch.Tensor:
    """Rounded to the f16 the scales are stored in (and never zero)."""
    rounded = values.to(torch.float16).to(values.dtype)
    return torch.where(rounded == 0, torch.ones_like(rounded), rounded)


@_one_thread
def round_to_grid(w: np.ndarray, grid: Grid, group_size: int, importance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain rounding with the same least-squares fits, all groups at once: (dequantized W,
    codes [planes, out, in], params [out, groups, k]). `importance` [in] weights the fits
    (the Hessian's diagonal). A last group shorter than `group_size` (ternary groups need not
    divide a row) is fitted on its real columns: the padding has zero weight and importance."""
    out_features, columns = np.shape(w)
    groups = -(-columns // group_size)
    in_features = groups * group_size
    W = torch.zeros(out_features, in_features, dtype=torch.float64)
    W[:, :columns] = torch.tensor(np.asarray(w), dtype=torch.float64)
    rows = W.reshape(out_features * groups, group_size)
    h = torch.zeros(in_features, dtype=torch.float64)
    h[:columns] = 1.0 if importance is None else torch.tensor(np.asarray(importance), dtype=torch.float64)
    # One fit per (row, group); the importance of a group's columns is shared by its rows.
    params = torch.cat([grid.fit(rows[g::groups], h[g * group_size : (g + 1) * group_size]) for g in range(groups)])
    order = torch.arange(out_features * groups).reshape(groups, out_features).T.reshape(-1)
    params = params[order]  # back to (row, group) order
    values, codes = grid.round_block(rows, params)
    dq = values.reshape(out_features, in_features)[:, :columns]
    codes = codes.reshape(out_features, in_features, -1).permute(2, 0, 1)[:, :, :columns]
    return dq.float().numpy(), codes.to(torch.int8).contiguous().numpy(), params.reshape(out_features, groups, -1).numpy()


@_one_thread
def quantize_gptq(w: np.ndarray, hessian: np.ndarray | None, grid: Grid, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dequantized W, codes [planes, out, in], params [out, groups, k]) of W [out, in] on
    `grid` with groups of `group_size` columns, with GPTQ's error feedback when a Hessian
    [in, in] is given (else plain rounding with the same fitted scales)."""
    W = torch.tensor(np.asarray(w), dtype=torch.float64)
    out_features, in_features = W.shape
    group_size = min(group_size, in_features)
    if hessian is None:
        H = torch.eye(in_features, dtype=torch.float64)
    else:
        H = torch.tensor(np.asarray(hessian), dtype=torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    importance = torch.diag(H).clone()
    H += DAMPENING * torch.mean(torch.diag(H)) * torch.eye(in_features, dtype=torch.float64)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    planes = grid.planes if grid.kind == "ternary" else 1
    Q = torch.zeros_like(W)
    codes = torch.zeros(planes, out_features, in_features, dtype=torch.float64)
    params = []
    current = None
    for start in range(0, in_features, BLOCK):
        end = min(start + BLOCK, in_features)
        W1, E1 = W[:, start:end].clone(), torch.zeros(out_features, end - start, dtype=torch.float64)
        Hinv1 = Hinv[start:end, start:end]
        for i in range(end - start):
            column = start + i
            if column % group_size == 0:
                group = torch.cat([W1[:, i:], W[:, end:]], 1)[:, :group_size]
                current = grid.fit(group, importance[column : column + group.shape[1]])
                params.append(current)
            value, code = grid.round(W1[:, i], current)
            Q[:, column] = value
            codes[:, :, column] = code.T
            error = (W1[:, i] - value) / Hinv1[i, i]
            W1[:, i:] -= error[:, None] * Hinv1[i, i:][None, :]
            E1[:, i] = error
        W[:, end:] -= E1 @ Hinv[start:end, end:]
    return Q.float().numpy(), codes.to(torch.int8).numpy(), torch.stack(params, 1).numpy()


def _quantized(w, hessian, grid, group_size, feedback):
    group_size = min(group_size, np.shape(w)[1])
    if hessian is not None and feedback:
        return group_size, quantize_gptq(w, hessian, grid, group_size)
    importance = np.diag(hessian) if hessian is not None else None
    return group_size, round_to_grid(w, grid, group_size, importance)


def gptq_int(w: np.ndarray, hessian: np.ndarray | None, bits: int, group_size: int, feedback: bool = True) -> IntWeight:
    """Symmetric `bits`-bit codes with f16 scales per group: GPTQ with a Hessian, else (or
    with feedback=False) plain rounding with fits weighted by the Hessian's diagonal."""
    group_size, (_, codes, params) = _quantized(w, hessian, Grid("int", bits=bits), group_size, feedback)
    return IntWeight(codes[0], params[..., 0].astype(SCALE_DTYPE), bits, group_size)


def gptq_ternary(w: np.ndarray, hessian: np.ndarray | None, planes: int, group_size: int, feedback: bool = True) -> TernaryWeight:
    """Ternary planes with f32 scales per group (harden.ternary_linear's scale_kind "group");
    GPTQ or plain rounding as for gptq_int."""
    group_size, (_, codes, params) = _quantized(w, hessian, Grid("ternary", planes=planes), group_size, feedback)
    scales = np.ascontiguousarray(params.transpose(2, 0, 1)).astype(np.float32)  # [planes, out, groups]
    return TernaryWeight(codes, scales, group_size, exact=False)
