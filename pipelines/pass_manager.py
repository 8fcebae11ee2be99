"""Runs pipeline steps (harden passes and upstream text) in one MLIR PassManager.

Harden passes are added as Python callables, upstream elements as text, so MLIR's
instrumentation sees them all: the verifier runs after every pass, and IR printing
(`--mlir-print-ir-after-all`) and timing (`--mlir-timing`) cover both kinds.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from torch_mlir import ir, passmanager

from harden.core import progress
from harden.core.diagnostics import DiagnosticSink
from harden.core.pass_base import Pass, PassContext, PassFailure
from harden.core.weights import WeightError, WeightStore
from harden.pipelines.pipeline_text import MODULE_ANCHOR, PipelineError, Step


@dataclass(frozen=True)
class Instrumentation:
    """mlir-opt's debugging flags."""

    print_ir_before_all: bool = False
    print_ir_after_all: bool = False
    timing: bool = False
    elide_elements_limit: int | None = None


def _upstream_error(message: str) -> str:
    """One line out of MLIR's multi-line pipeline parser messages."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "error: " in line:
            return line.split("error: ", 1)[1]
    return "; ".join(line.replace("<Pass-Options-Parser>: ", "") for line in reversed(lines))


def _callback(p: Pass, pass_ctx: PassContext, show_stage: bool):
    def run(op, external_pass) -> None:
        try:
            with op.context, ir.Location.unknown(), progress.stage(p.name) if show_stage else nullcontext():
                p.run(op, pass_ctx)
                pass_ctx.weights.forget_unused(op)
        except PassFailure:
            external_pass.signal_pass_failure()
        except WeightError as e:
            op.location.emit_error(str(e))
            external_pass.signal_pass_failure()

    return run


def build_pass_manager(
    steps: list[Step], context: ir.Context, pass_ctx: PassContext, instrumentation: Instrumentation
) -> passmanager.PassManager:
    pm = passmanager.PassManager(MODULE_ANCHOR, context=context)
    pending_text: list[str] = []

    def flush_text():
        if pending_text:
            text = ",".join(pending_text)
            pending_text.clear()
            try:
                pm.add(text)
            except ValueError as e:
                raise PipelineError(_upstream_error(str(e))) from None

    for step in steps:
        if isinstance(step, str):
            pending_text.append(step)
            continue
        flush_text()
        show_stage = not (instrumentation.print_ir_before_all or instrumentation.print_ir_after_all)
        pm.add(_callback(step, pass_ctx, show_stage), name=step.name, argument=step.name, description=step.summary())
    flush_text()
    if instrumentation.print_ir_before_all or instrumentation.print_ir_after_all:
        pm.enable_ir_printing(
            print_before_all=instrumentation.print_ir_before_all,
            print_after_all=instrumentation.print_ir_after_all,
            large_elements_limit=instrumentation.elide_elements_limit,
        )
    if instrumentation.timing:
        pm.enable_timing()
    return pm


def run_steps(
    module: ir.Operation,
    steps: list[Step],
    sink: DiagnosticSink,
    instrumentation: Instrumentation = Instrumentation(),
    weights: WeightStore | None = None,
    measurements=None,
) -> bool:
    """Runs the steps on a module; False (with errors in `sink`) if a pass or verifier failed.
    `measurements` are handed to the passes (see PassContext). On a terminal each
    harden pass shows a live stage line.

    Raises PipelineError when the steps do not form a valid pipeline.
    """
    pass_ctx = PassContext(sink, weights or WeightStore(), measurements)
    pm = build_pass_manager(steps, module.context, pass_ctx, instrumentation)
    try:
        pm.run(module)
        return True
    except ir.MLIRError as e:
        sink.add_mlir_error(e)
        return False
    finally:
        # The timing report is printed when the PassManager is destroyed.
        del pm
