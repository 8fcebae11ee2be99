"""Compiling lowered modules with IREE for the CPU and calling their functions.

IREE is the executable model of the hardened accelerator: the lowered linalg module is
handed over as text (IREE's MLIR is a separate copy from torch-mlir's, so no IR objects
cross), compiled for llvm-cpu on this host and run with `iree.runtime`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch_mlir import ir

from harden.core.diagnostics import DiagnosticSink

IREE_CPU_FLAGS = (
    "--iree-hal-target-device=local",
    "--iree-hal-local-target-device-backends=llvm-cpu",
    "--iree-llvmcpu-target-cpu=host",
)


class IreeError(RuntimeError):
    """IREE failed to compile or run a module; the message holds IREE's first lines."""


class LoweringError(RuntimeError):
    """The harden/torch lowering to linalg failed; the message holds the first diagnostic."""


def lower_module_for_iree(module: ir.Operation) -> None:
    """Runs harden-lower-to-linalg on `module` in place (raises LoweringError)."""
    from harden.pipelines.lower_to_linalg import LowerToLinalg
    from harden.pipelines.pass_manager import run_steps

    sink = DiagnosticSink()
    if not run_steps(module, LowerToLinalg().steps(), sink):
        raise LoweringError(sink.items[0].format("lowering") if sink.items else "lowering failed")


def compile_vmfb(mlir_text: str, extra_flags: Sequence[str] = ()) -> bytes:
    """Compiles linalg-on-tensors MLIR text to an IREE VM flatbuffer for this CPU."""
    from iree.compiler.tools import CompilerToolError, compile_str

    try:
        return compile_str(mlir_text, extra_args=[*IREE_CPU_FLAGS, *extra_flags])
    except CompilerToolError as e:
        raise IreeError(_first_lines(str(e))) from None


def _first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Invoked with")]
    errors = [line for line in lines if "error" in line]
    return "\n".join((errors or lines)[:count])


class IreeModule:
    """A compiled module loaded into an IREE runtime context (`local-task` by default)."""

    def __init__(self, vmfb: bytes, driver: str = "local-task"):
        import iree.runtime as rt

        self._config = rt.Config(driver)
        self._context = rt.SystemContext(config=self._config)
        self._vm_module = rt.VmModule.copy_buffer(self._context.instance, vmfb)
        self._context.add_vm_module(self._vm_module)
        self._functions = self._context.modules.module

    def call(self, function: str, *args) -> tuple[np.ndarray, ...]:
        """Calls an exported function; returns its results as numpy arrays."""
        try:
            results = self._functions[function](*args)
        except KeyError:
            raise IreeError(f"the compiled module has no function '{function}'") from None
        if not isinstance(results, (list, tuple)):
            results = (results,)
        return tuple(np.asarray(r.to_host() if hasattr(r, "to_host") else r) for r in results)
