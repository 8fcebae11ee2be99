"""harden-ternary-policy: choose which layer groups stay out of ternary to meet a KL budget, or
each weight matrix's precision to minimise KL under a bits budget."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch_mlir import ir

from harden.core import progress
from harden.core.files import write_atomically
from harden.core.graph import body_ops, functions, users
from harden.core.llama_names import CLASSIFIER_GROUP, canonical_name, layer_group
from harden.core.pass_base import Pass, PassContext, PassOptionError, option
from harden.quant.intn import exact_affine_grid
from harden.quant.options import TernaryOptions
from harden.quant.precision import Precision, quantize_as

KEEP_ATTR = "harden.keep"
"""Module attribute: layer groups (or weight-name globs) harden-ternarize keeps out of ternary."""

PRECISION_ATTR = "harden.precision"
"""Module attribute: {weight name: precision} (quant/precision.py) harden-ternarize applies."""

LINEAR = "torch.aten.linear"
FUSED_QKV = "harden.fused_qkv"
EMBEDDING_OP = "torch.aten.embedding"
EMBEDDING = "tok_embeddings.weight"  # canonical names (core/llama_names.py)
CLASSIFIER = "output.weight"
CALIBRATION_SEED = 1  # calibration samples; the policy's own samples and harden-run use others

# The precisions max-bits chooses among (quant/precision.py), and the one each layer group
# is probed with to measure how much its output error costs in KL.
# (t2g64 is not one: at 5 bits per weight it is dearer than int4g32 and errs more.)
CANDIDATES = ("t1g64", "int3g64", "int4g64", "int4g32", "int5g64", "int6g64", "int8g64")
TABLE_CANDIDATES = ("int4g64", "int4g32", "int5g64", "int6g64", "int8g64")
PROBE = "int3g64"
# The policy's measurements (each matrix's error in each candidate, each group's factor),
# kept by the measurement provider for the next budget asked of the same module.
MEMO_KIND = "policy"
MEMO_VERSION = "harden-ternary-policy max-bits 1"


class MeasurementError(Exception):
    """The measurement cannot be made for this module (e.g. it has no provenance)."""


class GroupSensitivity(Protocol):
    """The measurement the policy decides by (harden.eval.sensitivity implements it)."""

    def group_costs(self) -> list: ...  # each layer group ternarized alone: objects with .kl and __dict__

    def auto_keep(self, max_kl: float, costs: list) -> tuple[list[str], dict[str, float]]: ...

    def extra_bytes(self, kept: list[str]) -> int: ...


@dataclass(frozen=True)
class TernaryPolicy(TernaryOptions, Pass):
    """Pick the fewest layer groups to keep out of ternary so that KL(f32 || hardened) <= max-kl.

    Rebuilds the PyTorch model from the module's provenance (harden-import records it),
    samples sequences from it, measures each layer group's KL when it alone is ternarized
    (with the same options harden-ternarize will use), then keeps groups out of ternary, most
    sensitive first, until the KL with all other groups ternarized meets the budget. Kept
    groups are measured in the precision harden-ternarize will give them (`keep-as`: f32,
    or int8 per output channel). The choice is recorded as the module attribute
    `harden.keep`, which harden-ternarize honours; `report=FILE` writes the per-group
    costs, the choice and its bytes as JSON. Fails at the module when it has no
    provenance; warns when even keeping every group misses the budget (keep-as=int8).
    The measurement runs PyTorch, so the pass does not import it: the tool running the
    pass injects it (`PassContext.measurements`; harden-opt does).
    """

    name = "harden-ternary-policy"

    max_kl: float = option(0.1, "KL budget in nats against the f32 model")
    max_bits: float = option(0.0, "instead of max-kl: stored bits per weight (all weight matrices, scales included) to minimise KL under")
    exact_grid: bool = option(True, "max-bits: a weight already on an affine 4-bit grid with groups of 32 (a dequantized Q4_1 file) may keep it exactly (uint4g32)")
    samples: int = option(4, "sequences sampled from the f32 model to measure KL on")
    seq_len: int = option(0, "tokens per sequence (0: the module's prefill length)")
    seed: int = option(0, "seed of the sampling")
    report: str = option("", "write the per-group costs and the choice as JSON to this file")

    def validate(self) -> None:
        super().validate()
        if self.max_kl < 0:
            raise PassOptionError(f"option 'max-kl' of '{self.name}' must be non-negative, got {self.max_kl}")
        if self.samples < 1:
            raise PassOptionError(f"option 'samples' of '{self.name}' must be positive, got {self.samples}")
        if self.max_bits < 0:
            raise PassOptionError(f"option 'max-bits' of '{self.name}' must be positive, got {self.max_bits}")

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        if ctx.measurements is None:
            raise ctx.fail(module, f"'{self.name}' needs measurements of the PyTorch model, which harden-opt provides; this driver gave none")
        if self.max_bits:
            return self._budget(module, ctx)
        try:
            analysis: GroupSensitivity = ctx.measurements.sensitivity(module, self.ternary_options(), self.samples, self.seq_len, self.seed)
        except MeasurementError as e:
            raise ctx.fail(module, f"'{self.name}': {e}") from None
        costs = analysis.group_costs()
        kept, metrics = analysis.auto_keep(self.max_kl, costs)
        module.attributes[KEEP_ATTR] = ir.ArrayAttr.get([ir.StringAttr.get(g) for g in kept])
        extra_bytes = analysis.extra_bytes(kept)
        summary = f"keeping {len(kept)} of {len(costs)} layer groups in {self.keep_as} ({extra_bytes} more bytes): KL {metrics['kl']:.4g} nats"
        if metrics["kl"] > self.max_kl:
            ctx.warning(module, f"{summary}, over the budget max-kl={self.max_kl:g} even with every group kept")
        else:
            ctx.remark(module, summary)
        if self.report:
            write_atomically(self.report, json.dumps({
                "max_kl": self.max_kl,
                "keep": kept,
                "keep_as": self.keep_as,
                "kl": metrics["kl"],
                "top1_agreement": metrics["top1_agreement"],
                "bytes_kept_over_ternary": extra_bytes,
                "groups": [c.__dict__ for c in costs],
            }, indent=2) + "\n")

    def _budget(self, module: ir.Operation, ctx: PassContext) -> None:
        """max-bits: each weight matrix's precision, minimising KL under the bits budget.

        Each matrix's cost in a precision is predicted as (its layer group's KL per unit of
        output error) x (its relative output error tr(dW H dW^T) / tr(W H W^T) on the
        calibration Hessian H, after plain rounding). The groups' factors come from one
        measurement each: the group alone rounded to PROBE, on PyTorch. A weight already on
        an affine grid (a dequantized Q4_1 file) may take it exactly, at no cost. The
        choice minimises the predicted KL under the budget (a Lagrangian search over the
        per-matrix choices); the mix is then measured once (plain rounding; GPTQ, when the
        pipeline rounds with it, does better). The per-matrix errors and group factors are
        handed to the measurement provider to keep (harden-opt keeps them beside its compile
        cache), so another budget for the same weights and options only re-plans."""
        matrices = _weight_matrices(module, ctx)
        if not matrices:  # e.g. a module already lowered or quantized: nothing to plan
            raise ctx.fail(module, f"'{self.name}' max-bits={self.max_bits:g}: the module has no f32 weight matrix (aten.linear or harden.fused_qkv) to choose a precision for")
        try:
            calibration = ctx.measurements.calibration(module, self.calibration_samples, self.calibration_seq_len, CALIBRATION_SEED, self.calibration_text)
            analysis = ctx.measurements.sensitivity(module, self.ternary_options(), self.samples, self.seq_len, self.seed)
        except MeasurementError as e:
            raise ctx.fail(module, f"'{self.name}' max-bits={self.max_bits:g}: {e}; harden-pipeline with policy=none ternarizes every linear without measuring") from None
        options = self.numerics()
        key = self._measurement_key(module, matrices)
        recalled = ctx.measurements.recall(MEMO_KIND, key) if hasattr(ctx.measurements, "recall") else None
        if recalled is not None:  # measured before for this module and these options
            choices = {n: [_Choice(Precision.parse(p), bits, error, None) for p, bits, error in rows] for n, rows in recalled["choices"].items()}
            factors = recalled["factors"]
        else:
            choices = {name: _choices(name, m, calibration, options, self.exact_grid) for name, m in progress.bar(matrices.items(), desc="precisions of each matrix", unit="matrix")}
            factors = _group_factors(matrices, choices, analysis)
            if hasattr(ctx.measurements, "remember"):
                ctx.measurements.remember(MEMO_KIND, key, {
                    "choices": {n: [[str(c.precision), c.bits, c.error] for c in cs] for n, cs in choices.items()},
                    "factors": factors,
                })
        total_weights = sum(m.weight.size for m in matrices.values())
        plan, bits = _lagrangian_plan(choices, {n: factors[m.group] for n, m in matrices.items()}, self.max_bits * total_weights)
        module.attributes[PRECISION_ATTR] = ir.DictAttr.get({name: ir.StringAttr.get(str(p.precision)) for name, p in sorted(plan.items())})
        predicted = sum(factors[matrices[n].group] * p.error for n, p in plan.items())
        measured = analysis.evaluate_weights({n: _dequantized(matrices[n], p, calibration, options) for n, p in plan.items()})
        counts = sorted(Counter(str(p.precision) for p in plan.values()).items())
        summary = (f"{bits / total_weights:.3f} bits per weight over {len(plan)} matrices "
                   f"({', '.join(f'{c} {k}' for k, c in counts)}): KL {measured['kl']:.4g} nats with plain rounding")
        if bits > self.max_bits * total_weights:
            ctx.warning(module, f"{summary}, over max-bits={self.max_bits:g} even at the fewest bits")
        else:
            ctx.remark(module, summary)
        if self.report:
            write_atomically(self.report, json.dumps({
                "max_bits": self.max_bits,
                "bits_per_weight": bits / total_weights,
                "predicted_kl": predicted,
                "kl_plain_rounding": measured["kl"],
                "top1_agreement_plain_rounding": measured["top1_agreement"],
                "group_kl_per_output_error": factors,
                "matrices": {n: {"precision": str(p.precision), "bits_per_weight": p.bits / matrices[n].weight.size,
                                 "output_error": p.error, "group": matrices[n].group} for n, p in sorted(plan.items())},
            }, indent=2) + "\n")


    def _measurement_key(self, module: ir.Operation, matrices: dict[str, "_Matrix"]) -> str:
        """A digest of everything the per-matrix errors and the group factors depend on: the
        weights, the model the provenance rebuilds, the sampling and calibration options."""
        h = hashlib.sha256(MEMO_VERSION.encode())
        provenance = module.attributes["harden.provenance"] if "harden.provenance" in module.attributes else None
        settings = (str(provenance), repr(self.numerics()), self.samples, self.seq_len, self.seed, self.calibration_samples,
                    self.calibration_seq_len, self.calibration_text, self.exact_grid, CANDIDATES, TABLE_CANDIDATES, PROBE)
        h.update(repr(settings).encode())
        for name, m in sorted(matrices.items()):
            h.update(f"{name}|{m.group}|{m.hessian_name}|{m.weight.shape}".encode())
            h.update(np.ascontiguousarray(m.weight).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class _Matrix:
    weight: np.ndarray
    group: str  # its layer group (core/llama_names.py)
    hessian_name: str  # whose calibration Hessian measures its output error


@dataclass(frozen=True)
class _Choice:
    precision: Precision
    bits: int  # stored bits of the matrix
    error: float  # relative output error on the calibration Hessian
    dequantized: np.ndarray


def _weight_matrices(module: ir.Operation, ctx: PassContext) -> dict[str, _Matrix]:
    """Every weight matrix of the module once, by name: the linears' (fused q/k/v as one) and
    the embedding table (which is the classifier's too when they are tied)."""
    found: dict[str, _Matrix] = {}
    for func in functions(module):
        for op in body_ops(func):
            kind = op.operation.name
            if kind not in (LINEAR, FUSED_QKV, EMBEDDING_OP):
                continue
            value = op.operands[0] if kind == EMBEDDING_OP else op.operands[1]
            name = ctx.weights.name_of(value)
            if name is None or name in found or (kind == EMBEDDING_OP and canonical_name(name) != EMBEDDING):
                continue  # unnamed, seen, or a table that is not the token embedding (RoPE's)
            w = ctx.weights.value_of(value)
            if w is None or w.ndim != 2:
                continue
            table = canonical_name(name) == EMBEDDING
            classifier = canonical_name(name) == CLASSIFIER or (table and _tied(value))
            group = layer_group(name) or CLASSIFIER_GROUP
            found[name] = _Matrix(w, CLASSIFIER_GROUP if classifier else group, CLASSIFIER if classifier else name)
    return found


def _tied(table: ir.Value) -> bool:
    return any(u.operation.name == LINEAR for u in users(table))


def _output_error(w: np.ndarray, approx: np.ndarray, hessian: np.ndarray | None) -> float:
    d = (approx - w).astype(np.float64)
    if hessian is None:
        return float((d * d).sum() / max((w.astype(np.float64) ** 2).sum(), 1e-30))
    w = w.astype(np.float64)
    return float(((d @ hessian) * d).sum() / max(((w @ hessian) * w).sum(), 1e-30))


def _choices(name: str, m: _Matrix, calibration, options: TernaryOptions, exact_grid: bool) -> list[_Choice]:
    """Each candidate precision of a matrix with its bits and output error (the embedding
    table takes integer grids only: harden.int_embedding reads them)."""
    hessian = calibration.hessian(m.hessian_name)
    names = TABLE_CANDIDATES if canonical_name(name) == EMBEDDING else CANDIDATES
    choices = []
    exact = exact_affine_grid(m.weight) if exact_grid else None
    if exact is not None:
        choices.append(_Choice(Precision.parse("uint4g32"), exact.stored_bits(), 0.0, exact.dequantize()))
    for text in names:
        precision = Precision.parse(text)
        if not precision.fits(m.weight.shape[1]):
            continue
        q = quantize_as(m.weight, precision, options, hessian, feedback=False)
        approx = q.dequantize()
        choices.append(_Choice(precision, precision.stored_bits(m.weight.shape, options), _output_error(m.weight, approx, hessian), approx))
    return choices


def _dequantized(m: _Matrix, choice: _Choice, calibration, options: TernaryOptions) -> np.ndarray:
    """The matrix as a choice stores it (plain rounding, as the choices were measured)."""
    if choice.dequantized is not None:
        return choice.dequantized
    return quantize_as(m.weight, choice.precision, options, calibration.hessian(m.hessian_name), feedback=False).dequantize()


def _group_factors(matrices: dict[str, _Matrix], choices: dict[str, list[_Choice]], analysis) -> dict[str, float]:
    """KL per unit of output error of each layer group: the group alone in PROBE, measured."""
    probe = Precision.parse(PROBE)
    factors = {}
    groups = sorted({m.group for m in matrices.values()})
    for group in progress.bar(groups, desc="KL of each layer group", unit="group"):
        members = [n for n, m in matrices.items() if m.group == group]
        replaced, error = {}, 0.0
        for name in members:
            chosen = next((c for c in choices[name] if c.precision == probe), None) or max(choices[name], key=lambda c: c.error)
            replaced[name], error = chosen.dequantized, error + chosen.error
        factors[group] = analysis.evaluate_weights(replaced)["kl"] / max(error, 1e-12)
    return factors


def _lagrangian_plan(choices: dict[str, list[_Choice]], factors: dict[str, float], budget_bits: float) -> tuple[dict[str, _Choice], int]:
    """Per matrix the choice minimising factor x error + lambda x bits, with the smallest
    lambda whose plan fits the budget (the fewest bits when none does)."""

    def plan(lam: float) -> tuple[dict[str, _Choice], int]:
        picked = {
            name: min(options, key=lambda c: (factors[name] * c.error + lam * c.bits, c.bits, str(c.precision)))
            for name, options in choices.items()
        }
        return picked, sum(c.bits for c in picked.values())

    low, high = 0.0, 1e-9
    if plan(low)[1] <= budget_bits:
        return plan(low)
    while plan(high)[1] > budget_bits and high < 1e6:
        high *= 4
    for _ in range(60):
        middle = (low + high) / 2
        if plan(middle)[1] <= budget_bits:
            high = middle
        else:
            low = middle
    return plan(high)
