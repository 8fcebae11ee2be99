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


@dataclass(frozen=True)
class HardenPipeline(TernaryOptions, Pipeline):
    """Fuse QKV, ternarize, schedule, lower to linalg: from `harden-import` output to IREE's input."""

    name = "harden-pipeline"

    ternarize: bool = option(True, "ternarize the linears (false: fused but unquantized graph)")
    skip: tuple[str, ...] = option((), "see harden-ternarize")
    report: str = option("", "see harden-ternarize")
    keep: tuple[str, ...] = option((), "layer groups or weight-name globs to keep out of ternary (see harden-ternarize)")
    policy: Literal["none", "auto"] = option("none", "auto: keep the fewest layer groups (in keep-as) that meet max-kl (harden-ternary-policy)")
    max_kl: float = option(0.1, "KL budget in nats for policy=auto")
    max_bits: float = option(0.0, "policy=auto: choose each matrix's precision to minimise KL under this many stored bits per weight (instead of max-kl)")
    schedule: bool = option(True, "statically schedule the harden-level graph (and verify the schedule)")
    machine: str = option("tsp", "see harden-stream-schedule: tsp, hardwired or a JSON file")
    tile: int = option(DEFAULT_TILE, "see harden-stream-schedule")
    kernel: Literal["auto", "exact", "reference", "vnni"] = option("auto", "see harden-lower-harden-ops")
    activations: Literal["f32", "int8"] = option("f32", "see harden-lower-harden-ops (int8 changes numerics)")
    lower: bool = option(True, "lower to linalg at the end (false: stop at the harden-level graph)")

    def _ternarize_pass(self) -> Ternarize:
        return Ternarize(**self.ternary_fields(), skip=self.skip, keep=self.keep, report=self.report)

    def _policy_pass(self) -> TernaryPolicy:
        return TernaryPolicy(**self.ternary_fields(), max_kl=self.max_kl, max_bits=self.max_bits)

    def _schedule_pass(self) -> StreamSchedule:
        return StreamSchedule(machine=self.machine, tile=self.tile)

    def validate(self) -> None:
        # Each pass checks its own options when built, and names itself in the error.
        self._ternarize_pass()
        if self.policy == "auto":
            if not self.ternarize:
                raise PassOptionError("option 'policy=auto' of 'harden-pipeline' needs ternarize=true")
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
