"""harden-pipeline: the named pipeline from an imported Llama to IREE's input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harden.passes.fuse_qkv import FuseQKV
from harden.passes.base import option
from harden.passes.ternarize import Ternarize
from harden.pipelines.base import Pipeline
from harden.pipelines.lower_to_linalg import LowerToLinalg

# Options handed through to harden-ternarize unchanged.
TERNARIZE_OPTIONS = ("method", "scale", "group_size", "planes", "skip", "classifier", "report")


@dataclass
class HardenPipeline(Pipeline):
    """Fuse QKV, ternarize, lower to linalg: from `harden-import` output to IREE's input."""

    name = "harden-pipeline"

    ternarize: bool = option(True, "ternarize the linears (false: fused but unquantized graph)")
    method: Literal["absmean", "twn"] = option("absmean", "see harden-ternarize")
    scale: Literal["tensor", "channel", "group"] = option("channel", "see harden-ternarize")
    group_size: int = option(64, "see harden-ternarize (needs scale=group)")
    planes: int = option(1, "see harden-ternarize")
    skip: tuple[str, ...] = option((), "see harden-ternarize")
    classifier: bool = option(False, "see harden-ternarize")
    report: str = option("", "see harden-ternarize")
    lower: bool = option(True, "lower to linalg at the end (false: stop at the harden-level graph)")

    def _ternarize_pass(self) -> Ternarize:
        tern = Ternarize(**{name: getattr(self, name) for name in TERNARIZE_OPTIONS})
        tern.explicit_options = frozenset(getattr(self, "explicit_options", ())) & set(TERNARIZE_OPTIONS)
        return tern

    def validate(self) -> None:
        self._ternarize_pass().validate()

    def steps(self):
        steps = [FuseQKV()]
        if self.ternarize:
            steps.append(self._ternarize_pass())
        if self.lower:
            steps += LowerToLinalg().steps()
        return steps
