"""harden-verify-backend-contract: torch-mlir's linalg-on-tensors contract, C kernel calls allowed."""

from __future__ import annotations

from dataclasses import dataclass

from torch_mlir import ir, passmanager

from harden.core.graph import functions
from harden.core.pass_base import Pass, PassContext, PassFailure
from harden.kernels.contract import CUSTOM_DISPATCH_ATTR

BACKEND_CONTRACT = "torch-verify-linalg-on-tensors-backend-contract"


@dataclass(frozen=True)
class VerifyBackendContract(Pass):
    """torch-mlir's linalg-on-tensors contract check, unless the module calls C kernels.

    The last step of harden-lower-to-linalg, in place of the last pass of torch-mlir's
    backend-to-linalg pipeline, `torch-verify-linalg-on-tensors-backend-contract`: that pass
    rejects every func.call, so also the calls of the C kernels' declarations (kernel=vnni
    or auto), which only the IREE backend defines. Modules without them get torch-mlir's
    check unchanged, its errors reported at their ops.
    """

    name = "harden-verify-backend-contract"

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        if any(CUSTOM_DISPATCH_ATTR in f.operation.attributes for f in functions(module)):
            return
        try:
            passmanager.PassManager.parse(f"builtin.module({BACKEND_CONTRACT})").run(module)
        except ir.MLIRError as e:
            for diagnostic in e.error_diagnostics:  # torch-mlir's own messages, at their ops
                diagnostic.location.emit_error(diagnostic.message)
            raise PassFailure(BACKEND_CONTRACT) from None
