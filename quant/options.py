"""The one options type of the ternary quantizer.

harden-ternarize, harden-ternary-policy and harden-pipeline take these fields as their
options (they inherit them), and the sensitivity analysis, QAT, harden-run --sensitivity and
harden-qat build one of them: every part hardens with the same numerics from the same
declaration, validated in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from harden.core.pass_base import Configurable, PassOptionError, option

DEFAULT_GROUP_SIZE = 64


@dataclass(frozen=True)
class TernaryOptions(Configurable):
    """How weights are ternarized, and in which precision the weights kept out of ternary stay."""

    name = "ternary options"

    method: Literal["absmean", "twn"] = option("absmean", "absmean (BitNet b1.58) or twn (threshold 0.7 mean|w|)")
    scale: Literal["tensor", "channel", "group"] = option("channel", "one scale per tensor, output channel or group of input columns")
    group_size: int | None = option(None, "input columns per scale, with scale=group only", shown_default=str(DEFAULT_GROUP_SIZE))
    planes: int = option(1, "ternary planes: 1, or 2 to fit a second plane to the residual")
    classifier: bool = option(False, "also ternarize the classifier")
    keep_as: Literal["f32", "int8"] = option("f32", "precision of the weights kept out of ternary: f32, or int8 per output channel")

    def validate(self) -> None:
        if self.group_size is not None and self.scale != "group":
            raise PassOptionError(f"option 'group-size' of '{self.name}' needs scale=group (got scale={self.scale})")
        if self.group_size is not None and self.group_size <= 0:
            raise PassOptionError(f"option 'group-size' of '{self.name}' must be positive, got {self.group_size}")
        if self.planes not in (1, 2):
            raise PassOptionError(f"option 'planes' of '{self.name}' must be 1 or 2, got {self.planes}")

    @property
    def columns_per_scale(self) -> int:
        """Input columns per scale group with scale=group (the default when not given)."""
        return self.group_size or DEFAULT_GROUP_SIZE

    def ternary_fields(self) -> dict:
        """These fields by name, out of a pass or pipeline that carries them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TernaryOptions)}

    def ternary_options(self) -> "TernaryOptions":
        """Just these fields, as a TernaryOptions."""
        return TernaryOptions(**self.ternary_fields())
