"""harden-pipeline: the named pipeline from an imported Llama to IREE's input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harden.core.pass_base import PassOptionError, option
from harden.passes.fuse_qkv import FuseQKV
from harden.passes.stream_schedule import StreamSchedule
from harden.passes.ternarize import Ternarize
from harden.passes.ternary_policy import TernaryPolicy
from harden.passes.verify_schedule import VerifySchedule
from harden.pipelines.base import Pipeline
from harden.pipelines.lower_to_linalg import LowerToLinalg
from harden.quant.options import TernaryOptions
from harden.schedule.schedules import DEFAULT_TILE

# The default budget: stored bits per weight over all weight matrices (scales included) that
# keeps SmolLM2-135M-Instruct's answers (README, "Accuracy under a bits budget").
DEFAULT_MAX_BITS = 4.0


@dataclass(frozen=True)
class HardenPipeline(TernaryOptions, Pipeline):
    """Fuse QKV, ternarize, schedule, lower to linalg: from `harden-import` output to IREE's input."""

    name = "harden-pipeline"

    ternarize: bool = option(True, "ternarize the linears (false: fused but unquantized graph)")
    skip: tuple[str, ...] = option((), "see harden-ternarize")
    report: str = option("", "see harden-ternarize")
    keep: tuple[str, ...] = option((), "layer groups or weight-name globs to keep out of ternary (see harden-ternarize)")
    method: Literal["absmean", "twn", "ls", "gptq"] | None = option(
        None, "see harden-ternarize", shown_default="gptq under a bits budget, else absmean"
    )
    policy: Literal["none", "auto"] = option(
        "auto", "auto: choose each matrix's precision under max-bits (or keep the fewest layer groups that meet max-kl) "
        "with harden-ternary-policy, which needs the module's provenance; none: ternarize every linear"
    )
    max_kl: float | None = option(None, "policy=auto: keep the fewest layer groups (in keep-as) so that the KL in nats meets this budget", shown_default="unset")
    max_bits: float | None = option(
        None, "policy=auto: choose each matrix's precision to minimise KL under this many stored bits per weight",
        shown_default=f"{DEFAULT_MAX_BITS:g} unless max-kl is given",
    )
    exact_grid: bool = option(True, "see harden-ternary-policy")
    schedule: bool = option(True, "statically schedule the harden-level graph (and verify the schedule)")
    machine: str = option("tsp", "see harden-stream-schedule: tsp, hardwired or a JSON file")
    tile: int = option(DEFAULT_TILE, "see harden-stream-schedule")
    kernel: Literal["auto", "exact", "reference", "vnni"] = option("auto", "see harden-lower-harden-ops")
    activations: Literal["f32", "int8"] = option("f32", "see harden-lower-harden-ops (int8 changes numerics)")
    lower: bool = option(True, "lower to linalg at the end (false: stop at the harden-level graph)")

    def _fields(self) -> dict:
        """The ternary options with the method resolved: a bits budget calibrates (its int
        grids are only worth their bits with GPTQ); all-ternary and max-kl keep absmean."""
        budgeted = self.policy == "auto" and self.ternarize and self.max_kl is None
        return {**self.ternary_fields(), "method": self.method or ("gptq" if budgeted else "absmean")}

    def _ternarize_pass(self) -> Ternarize:
        return Ternarize(**self._fields(), skip=self.skip, keep=self.keep, report=self.report)

    def _policy_pass(self) -> TernaryPolicy:
        if self.max_kl is not None and self.max_bits is not None:
            raise PassOptionError(f"options 'max-kl' and 'max-bits' of '{self.name}' are two different budgets: give one")
        if self.max_kl is not None:
            return TernaryPolicy(**self._fields(), max_kl=self.max_kl)
        max_bits = DEFAULT_MAX_BITS if self.max_bits is None else self.max_bits
        return TernaryPolicy(**self._fields(), max_bits=max_bits, exact_grid=self.exact_grid)

    def _schedule_pass(self) -> StreamSchedule:
        return StreamSchedule(machine=self.machine, tile=self.tile)

    def validate(self) -> None:
        # Each pass checks its own options when built, and names itself in the error.
        self._ternarize_pass()
        if self.policy == "none" and (self.max_kl is not None or self.max_bits is not None):
            raise PassOptionError(f"options 'max-kl' and 'max-bits' of '{self.name}' need policy=auto")
        if self.policy == "auto" and self.ternarize:  # ternarize=false quantizes nothing: no policy to run
            self._policy_pass()
        if self.schedule:
            self._schedule_pass()

    def steps(self):
        steps = [FuseQKV()]
        if self.ternarize and self.policy == "auto":
            steps.append(self._policy_pass())
        if self.ternarize:
            steps.append(self._ternarize_pass())
        if self.schedule:
            steps += [self._schedule_pass(), VerifySchedule()]
        if self.lower:
            steps += LowerToLinalg(kernel=self.kernel, activations=self.activations).steps()
        return steps
