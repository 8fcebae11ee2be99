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

    method: Literal["absmean", "twn", "ls", "gptq"] = option(
        "absmean", "absmean (BitNet b1.58), twn (threshold 0.7 mean|w|), ls (least-squares scales) or gptq (error "
        "feedback on calibration activations, least-squares scales; needs the module's provenance)"
    )
    scale: Literal["tensor", "channel", "group"] = option("channel", "one scale per tensor, output channel or group of input columns")
    group_size: int | None = option(None, "input columns per scale, with scale=group only", shown_default=str(DEFAULT_GROUP_SIZE))
    planes: int = option(1, "ternary planes: 1, or 2 to fit a second plane to the residual")
    classifier: bool = option(False, "also ternarize the classifier")
    keep_as: Literal["f32", "int8"] = option("f32", "precision of the weights kept out of ternary: f32, or int8 per output channel")
    calibration_samples: int = option(16, "method=gptq: sequences sampled from the f32 model to calibrate on")
    calibration_seq_len: int = option(128, "method=gptq: tokens per calibration sequence (0: the module's prefill length)")
    calibration_text: str = option("", "method=gptq: calibrate on this text file's tokens instead of samples")

    def validate(self) -> None:
        if self.group_size is not None and self.scale != "group":
            raise PassOptionError(f"option 'group-size' of '{self.name}' needs scale=group (got scale={self.scale})")
        if self.group_size is not None and self.group_size <= 0:
            raise PassOptionError(f"option 'group-size' of '{self.name}' must be positive, got {self.group_size}")
        if self.planes not in (1, 2):
            raise PassOptionError(f"option 'planes' of '{self.name}' must be 1 or 2, got {self.planes}")
        if self.calibration_samples < 1 or self.calibration_seq_len < 0:
            raise PassOptionError(f"options 'calibration-samples' and 'calibration-seq-len' of '{self.name}' must be positive")
        if self.method in ("ls", "gptq") and self.scale == "tensor":
            raise PassOptionError(f"method={self.method} of '{self.name}' fits scales per channel or group, not per tensor")

    @property
    def columns_per_scale(self) -> int:
        """Input columns per scale group with scale=group (the default when not given)."""
        return self.group_size or DEFAULT_GROUP_SIZE

    def numerics(self) -> "TernaryOptions":
        """The fields that decide a ternary grid alone (no calibration settings)."""
        return TernaryOptions(method=self.method, scale=self.scale, group_size=self.group_size, planes=self.planes)

    def ternary_fields(self) -> dict:
        """These fields by name, out of a pass or pipeline that carries them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TernaryOptions)}

    def ternary_options(self) -> "TernaryOptions":
        """Just these fields, as a TernaryOptions."""
        return TernaryOptions(**self.ternary_fields())
