"""harden-ternary-policy: choose which layer groups stay out of ternary to meet a KL budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from torch_mlir import ir

from harden.core.files import write_atomically
from harden.core.pass_base import Pass, PassContext, PassOptionError, option
from harden.quant.options import TernaryOptions

KEEP_ATTR = "harden.keep"
"""Module attribute: layer groups (or weight-name globs) harden-ternarize keeps out of ternary."""


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
    pass injects it (`PassContext.measure_sensitivity`; harden-opt does).
    """

    name = "harden-ternary-policy"

    max_kl: float = option(0.1, "KL budget in nats against the f32 model")
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

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        if ctx.measure_sensitivity is None:
            raise ctx.fail(module, f"'{self.name}' needs a sensitivity measurement, which harden-opt provides; this driver gave none")
        try:
            analysis: GroupSensitivity = ctx.measure_sensitivity(module, self.ternary_options(), self.samples, self.seq_len, self.seed)
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
