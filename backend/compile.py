"""Compiling lowered modules with IREE for the CPU and calling their functions.

IREE is the executable model of the hardened accelerator: the lowered linalg module is
handed over as text (IREE's MLIR is a separate copy from torch-mlir's, so no IR objects
cross), compiled for llvm-cpu on this host and run with `iree.runtime`.

Weights kept in a parameter file arrive as external `ml_program.global @param.<name>`
(see harden-lower-harden-ops); `bind_parameters` turns them into IREE parameters
(`util.global ... = #stream.parameter.named<"model"::"<name>">`), and `IreeModule`
serves them from the safetensors file at run time. Declarations of the C ternary kernels
(kernel=vnni) get their custom-dispatch definitions here (backend/custom_dispatch.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch_mlir import ir

from harden.backend import custom_dispatch
from harden.core.diagnostics import DiagnosticSink
from harden.kernels.contract import CPU_TILING_ATTR

IREE_CPU_FLAGS = (
    "--iree-hal-target-device=local",
    "--iree-hal-local-target-device-backends=llvm-cpu",
    "--iree-llvmcpu-target-cpu=host",
    # Data tiling (operands packed into the CPU's register tiles) with IREE's mmt4d ukernels:
    # a 128-token prompt's f32 matmuls 1.4x faster on Zen 1 (SmolLM2 prefill 786 -> 566 ms),
    # decode unchanged (its linears are C kernels or matvecs). Not IREE's default here.
    "--iree-opt-data-tiling=true",
    "--iree-llvmcpu-enable-ukernels=all",
    # No compile-time evaluation of constant expressions: it JIT-compiles a second module
    # (42% of a stories260k compile, 24 -> 14 s; SmolLM2's default plan 84 -> 72 s) for what
    # the hoisted initializers compute at load anyway (3 ms here); same outputs, same speed.
    "--iree-opt-const-eval=false",
)


class IreeError(RuntimeError):
    """IREE failed to compile or run a module; the message holds IREE's first lines."""


class LoweringError(RuntimeError):
    """The harden/torch lowering to linalg failed; the message holds the first diagnostic."""


def lower_module_for_iree(module: ir.Operation, kernel: str = "auto", activations: str = "f32") -> None:
    """Runs harden-lower-to-linalg on `module` in place (raises LoweringError)."""
    from harden.pipelines.lower_to_linalg import LowerToLinalg
    from harden.pipelines.pass_manager import run_steps

    sink = DiagnosticSink()
    if not run_steps(module, LowerToLinalg(kernel=kernel, activations=activations).steps(), sink):
        raise LoweringError(sink.items[0].format("lowering") if sink.items else "lowering failed")


PARAMETER_SCOPE = "model"


def prepare_for_iree(mlir_text: str, flags: Sequence[str] = IREE_CPU_FLAGS) -> str:
    """The IREE-only parts of a lowered module, added in IREE's own IR: named parameters
    for external weights, tiling configurations for the exact ternary kernel and the
    custom dispatches of the C kernels. `flags`: the iree-compile flags the result is
    compiled with (the C kernel objects are keyed by the executable target they select).
    Raises IreeError if the module calls C kernels this host cannot run."""
    if (
        "#ml_program.extern" not in mlir_text
        and CPU_TILING_ATTR not in mlir_text
        and not custom_dispatch.has_custom_dispatches(mlir_text)
    ):
        return mlir_text
    from iree.compiler import ir as iree_ir

    with iree_ir.Context(), iree_ir.Location.unknown():
        module = iree_ir.Module.parse(mlir_text)
        _bind_parameters(module)
        _apply_cpu_tiling(module)
        try:
            custom_dispatch.define_custom_dispatches(module, flags)
        except custom_dispatch.CustomDispatchError as e:
            raise IreeError(str(e)) from None
        return str(module)


def _apply_cpu_tiling(module) -> None:
    """`harden.cpu_tiling = {...}` on a generic -> IREE's compilation_info for its CPU
    pipeline (the kernel templates' measured tile sizes; see ternary_exact_kernel.py)."""
    from iree.compiler import ir as iree_ir

    def visit(op):
        attrs = op.attributes
        if CPU_TILING_ATTR in attrs:
            tiling = iree_ir.DictAttr(attrs[CPU_TILING_ATTR])
            sizes = ", ".join(f"{name} = {tiling[name]}" for name in ("distribution", "vector_common_parallel", "vector_reduction"))
            attrs["compilation_info"] = iree_ir.Attribute.parse(
                f"#iree_codegen.compilation_info<lowering_config = #iree_cpu.lowering_config<{sizes}>, "
                "translation_info = #iree_codegen.translation_info<pipeline = #iree_cpu.pipeline<DoubleTilingExpert>>>"
            )
            del attrs[CPU_TILING_ATTR]
        return iree_ir.WalkResult.ADVANCE

    module.operation.walk(visit)


def _bind_parameters(module) -> None:
    """Rewrites external `param.<name>` globals into IREE named parameters."""
    from iree.compiler import ir as iree_ir
    from iree.compiler.dialects import util

    from harden.core.weights import PARAM_SYMBOL_PREFIX

    for op in list(module.body.operations):
        if op.operation.name != "ml_program.global":
            continue
        symbol = iree_ir.StringAttr(op.attributes["sym_name"]).value
        if not symbol.startswith(PARAM_SYMBOL_PREFIX):
            continue
        name = symbol[len(PARAM_SYMBOL_PREFIX):]
        tensor_type = iree_ir.TypeAttr(op.attributes["type"]).value
        key = name.replace("\\", "\\\\").replace('"', '\\"')
        value = iree_ir.Attribute.parse(f'#stream.parameter.named<"{PARAMETER_SCOPE}"::"{key}"> : {tensor_type}')
        with iree_ir.InsertionPoint(op):
            util.GlobalOp(symbol, tensor_type, sym_visibility="private", initial_value=value)
        op.operation.erase()

    def visit(op):
        if op.name == "ml_program.global_load_const":
            with iree_ir.InsertionPoint(op):
                load = util.GlobalLoadOp(op.results[0].type, op.attributes["global"], is_immutable=True)
            op.results[0].replace_all_uses_with(load.result)
            op.erase()
        return iree_ir.WalkResult.ADVANCE

    module.operation.walk(visit)


def compile_vmfb(mlir_text: str, extra_flags: Sequence[str] = ()) -> bytes:
    """Compiles linalg-on-tensors MLIR text to an IREE VM flatbuffer for this CPU."""
    from iree.compiler.tools import CompilerToolError, compile_str

    flags = [*IREE_CPU_FLAGS, *extra_flags]
    try:
        return compile_str(prepare_for_iree(mlir_text, flags), extra_args=flags)
    except CompilerToolError as e:
        raise IreeError(_first_lines(str(e))) from None


def _first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Invoked with")]
    errors = [line for line in lines if "error" in line]
    return "\n".join((errors or lines)[:count])


class IreeModule:
    """A compiled module loaded into an IREE runtime context (`local-task` by default),
    with its parameters served from `parameter_file` (safetensors) if it has any."""

    def __init__(self, vmfb: bytes, driver: str = "local-task", parameter_file: str | None = None):
        import iree.runtime as rt

        self._config = rt.Config(driver)
        instance = self._config.vm_instance
        modules = []
        if parameter_file is not None:
            index = rt.ParameterIndex()
            index.load(str(parameter_file))
            modules.append(rt.create_io_parameters_module(instance, index.create_provider(scope=PARAMETER_SCOPE)))
        self._vm_module = rt.VmModule.copy_buffer(instance, vmfb)
        modules.append(self._vm_module)
        try:
            self._context = rt.SystemContext(vm_modules=modules, config=self._config)
        except ValueError as e:  # e.g. a parameter the module loads is not in the parameter file
            raise IreeError(_first_lines(str(e))) from None
        self._functions = self._context.modules.module

    def call_raw(self, function: str, *args) -> tuple:
        """Calls an exported function; results stay IREE device arrays (no copy)."""
        try:
            entry = self._functions[function]
        except KeyError:
            raise IreeError(f"the compiled module has no function '{function}'") from None
        results = entry(*args)
        return tuple(results) if isinstance(results, (list, tuple)) else (results,)

    def call(self, function: str, *args) -> tuple[np.ndarray, ...]:
        """Calls an exported function; returns its results as numpy arrays (copies: the
        device buffers behind `to_host()` views are reused once released)."""
        return tuple(np.array(r.to_host() if hasattr(r, "to_host") else r, copy=True) for r in self.call_raw(function, *args))
