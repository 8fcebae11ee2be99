"""harden-lower-to-linalg: from the harden/torch graph to linalg on builtin tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch_mlir import ir, passmanager

from harden.core.pass_base import option
from harden.passes.lower_harden import LowerHardenOps
from harden.passes.lower_linear import LowerLinear
from harden.passes.verify_backend_contract import BACKEND_CONTRACT, VerifyBackendContract
from harden.pipelines.base import Pipeline

# torch-mlir's own lowering. The torchdynamo pipeline accepts the torch_c casts and
# linalg ops our lowering leaves inside torch functions (the torch-function pipeline
# rejects them); non-finite constants (-inf attention masks) must be allowed.
TORCH_TO_BACKEND = [
    "func.func(torch-match-quantized-custom-ops)",
    "torchdynamo-export-to-torch-backend-pipeline{ extra-library=}",
]
BACKEND_TO_LINALG = "torch-backend-to-linalg-on-tensors-backend-pipeline{allow-non-finites=true}"
TORCH_TO_LINALG = [*TORCH_TO_BACKEND, BACKEND_TO_LINALG]



def backend_to_linalg_without_contract() -> str:
    """BACKEND_TO_LINALG's passes minus its final contract check, as torch-mlir expands the
    pipeline (read at run time, so a torch-mlir update cannot leave a stale copy here)."""
    with ir.Context():
        expanded = str(passmanager.PassManager.parse(f"builtin.module({BACKEND_TO_LINALG})"))
    inner = expanded.removeprefix("builtin.module(").removesuffix(")")
    passes = inner.removesuffix("," + BACKEND_CONTRACT)
    if passes == inner:
        raise RuntimeError(f"torch-mlir's {BACKEND_TO_LINALG} no longer ends with {BACKEND_CONTRACT}: {expanded}")
    return passes


@dataclass(frozen=True)
class LowerToLinalg(Pipeline):
    """Lower harden ops, then the whole torch graph, to linalg/arith/tensor (IREE's input)."""

    name = "harden-lower-to-linalg"

    kernel: Literal["auto", "exact", "reference", "vnni"] = option("auto", "see harden-lower-harden-ops")
    activations: Literal["f32", "int8"] = option("f32", "see harden-lower-harden-ops (int8 changes numerics)")

    def steps(self):
        # The contract check is ours, to let calls of C kernels (kernel=auto or vnni) through.
        return [LowerHardenOps(kernel=self.kernel, activations=self.activations), LowerLinear(),
                *TORCH_TO_BACKEND, backend_to_linalg_without_contract(), VerifyBackendContract()]
