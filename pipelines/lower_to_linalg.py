"""harden-lower-to-linalg: from the harden/torch graph to linalg on builtin tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harden.passes.lower_harden import LowerHardenOps
from harden.passes.base import option
from harden.passes.lower_linear import LowerLinear
from harden.pipelines.base import Pipeline

# torch-mlir's own lowering. The torchdynamo pipeline accepts the torch_c casts and
# linalg ops our lowering leaves inside torch functions (the torch-function pipeline
# rejects them); non-finite constants (-inf attention masks) must be allowed.
TORCH_TO_LINALG = [
    "func.func(torch-match-quantized-custom-ops)",
    "torchdynamo-export-to-torch-backend-pipeline{ extra-library=}",
    "torch-backend-to-linalg-on-tensors-backend-pipeline{allow-non-finites=true}",
]


@dataclass
class LowerToLinalg(Pipeline):
    """Lower harden ops, then the whole torch graph, to linalg/arith/tensor (IREE's input)."""

    name = "harden-lower-to-linalg"

    kernel: Literal["exact", "reference"] = option("exact", "see harden-lower-harden-ops")
    activations: Literal["f32", "int8"] = option("f32", "see harden-lower-harden-ops (int8 changes numerics)")

    def steps(self):
        return [LowerHardenOps(kernel=self.kernel, activations=self.activations), LowerLinear(), *TORCH_TO_LINALG]
