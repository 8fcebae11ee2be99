"""harden-pipeline: the named pipeline from an imported Llama to IREE's input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harden.passes.base import PassOptionError, option
from harden.passes.fuse_qkv import FuseQKV
from harden.passes.stream_schedule import StreamSchedule
from harden.passes.ternarize import Ternarize
from harden.passes.ternary_policy import TernaryPolicy
from harden.passes.verify_schedule import VerifySchedule
from harden.pipelines.base import Pipeline
from harden.pipelines.lower_to_linalg import LowerToLinalg
from harden.schedule.schedules import DEFAULT_TILE

# Options handed through to harden-ternarize unchanged.
TERNARIZE_OPTIONS = ("method", "scale", "group_size", "planes", "skip", "keep", "keep_as", "classifier", "report")


@dataclass
class HardenPipeline(Pipeline):
    """Fuse QKV, ternarize, schedule, lower to linalg: from `harden-import` output to IREE's input."""

    name = "harden-pipeline"

    ternarize: bool = option(True, "ternarize the linears (false: fused but unquantized graph)")
    method: Literal["absmean", "twn"] = option("absmean", "see harden-ternarize")
    scale: Literal["tensor", "channel", "group"] = option("channel", "see harden-ternarize")
    group_size: int = option(64, "see harden-ternarize (needs scale=group)")
    planes: int = option(1, "see harden-ternarize")
    skip: tuple[str, ...] = option((), "see harden-ternarize")
    classifier: bool = option(False, "see harden-ternarize")
    report: str = option("", "see harden-ternarize")
    keep: tuple[str, ...] = option((), "layer groups or weight-name globs to keep out of ternary (see harden-ternarize)")
    keep_as: Literal["f32", "int8"] = option("f32", "precision of the kept layers: f32, or int8 per output channel")
    policy: Literal["none", "auto"] = option("none", "auto: keep the fewest layer groups (in keep-as) that meet max-kl (harden-ternary-policy)")
    max_kl: float = option(0.1, "KL budget in nats for policy=auto")
    schedule: bool = option(True, "statically schedule the harden-level graph (and verify the schedule)")
    machine: str = option("tsp", "see harden-stream-schedule: tsp, hardwired or a JSON file")
    tile: int = option(DEFAULT_TILE, "see harden-stream-schedule")
    kernel: Literal["auto", "exact", "reference", "vnni"] = option("auto", "see harden-lower-harden-ops")
    activations: Literal["f32", "int8"] = option("f32", "see harden-lower-harden-ops (int8 changes numerics)")
    lower: bool = option(True, "lower to linalg at the end (false: stop at the harden-level graph)")

    def _ternarize_pass(self) -> Ternarize:
        tern = Ternarize(**{name: getattr(self, name) for name in TERNARIZE_OPTIONS})
        tern.explicit_options = frozenset(getattr(self, "explicit_options", ())) & set(TERNARIZE_OPTIONS)
        return tern

    def _policy_pass(self) -> TernaryPolicy:
        shared = ("method", "scale", "group_size", "planes", "classifier", "keep_as")
        return TernaryPolicy(max_kl=self.max_kl, **{name: getattr(self, name) for name in shared})

    def _schedule_pass(self) -> StreamSchedule:
        return StreamSchedule(machine=self.machine, tile=self.tile)

    def validate(self) -> None:
        self._ternarize_pass().validate()
        if self.policy == "auto":
            if not self.ternarize:
                raise PassOptionError("option 'policy=auto' of 'harden-pipeline' needs ternarize=true")
            self._policy_pass().validate()
        if self.schedule:
            self._schedule_pass().validate()

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
