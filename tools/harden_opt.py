"""harden-opt: an mlir-opt-style driver over harden's passes and MLIR's upstream passes."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from torch_mlir import ir

from harden.core import progress
from harden.core.diagnostics import Diagnostic, DiagnosticSink, from_mlir
from harden.core.pass_base import PassContext
from harden.core.source import SPLIT_MARKER, SourceError, parse_module, read_source, split_source
from harden.core.verify_diagnostics import check_diagnostics
from harden.core.weights import PARAMS_ATTR, WeightError, WeightStore, parameter_file_of, resource_blobs
from harden.dialects.context import make_context
from harden.passes import PASSES
from harden.passes.stream_schedule import StreamSchedule
from harden.pipelines.pass_manager import Instrumentation, build_pass_manager, run_steps
from harden.pipelines.pipeline_text import PipelineError, make_step, steps_from_text
from harden.pipelines.registry import PIPELINES
from harden.tools.cli import ArgumentParser, CommandError, check_output_path, run_command, write_output

TOOL = "harden-opt"
# A failed run shows this many diagnostic lines at most (the last one counts the rest), so a
# broken input is a few lines, not a page; --all-diagnostics shows every one.
DIAGNOSTICS_SHOWN = 3


def pass_catalogue() -> str:
    """The registered passes and pipelines with their options (for --help and --list-passes)."""
    lines = []
    for title, registry in (("Passes:", PASSES), ("Pass pipelines:", PIPELINES)):
        lines.append(title)
        if not registry:
            lines.append("  (none)")
        for name, cls in registry.items():
            lines.append(f"  --{name}  {cls.summary()}")
            lines += [f"      {line}" for line in cls.option_help()]
    return "\n".join(lines)


def take_pass_flags(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Removes `--<pass>` / `--<pass>=<options>` flags from argv, keeping their order.

    They are taken out before argparse so that `--harden-pipeline m.mlir` keeps m.mlir as the
    input (options only attach with `=`, as in mlir-opt).
    """
    rest, flags = [], []
    for arg in argv:
        name, _, options = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in PASSES or name in PIPELINES:
            flags.append((name, options))
        else:
            rest.append(arg)
    return rest, flags


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=TOOL,
        usage=f"{TOOL} [options] [input.mlir | -] [-o output.mlir]",
        description="Runs harden and MLIR passes on an MLIR file, like mlir-opt.",
        epilog=pass_catalogue(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage_exit_code=1,
    )
    parser.add_argument("input", nargs="?", default="-", help="input file, or - for stdin (default)")
    parser.add_argument("-o", dest="output", default="-", help="output file (default: stdout)")
    parser.add_argument("--pass-pipeline", help="textual pipeline, e.g. 'builtin.module(harden-fuse-qkv,cse)'")
    parser.add_argument("--split-input-file", action="store_true", help="process chunks separated by '// -----' independently")
    parser.add_argument("--verify-diagnostics", action="store_true", help="check diagnostics against expected-* comments")
    parser.add_argument("--harden-remarks", action="store_true", help="report remarks (e.g. why a pattern did not apply)")
    parser.add_argument("--mlir-print-ir-before-all", action="store_true", help="print the IR before every pass (stderr)")
    parser.add_argument("--mlir-print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    parser.add_argument("--mlir-timing", action="store_true", help="print pass execution times (stderr)")
    parser.add_argument("--mlir-print-debuginfo", action="store_true", help="print locations in the output")
    parser.add_argument("--mlir-elide-elementsattrs-if-larger", type=int, metavar="N", help="elide constants with more than N elements when printing")
    parser.add_argument("--allow-unregistered-dialect", action="store_true", help="accept ops of unknown dialects")
    parser.add_argument("--schedule-report", metavar="FILE", help="JSON report of the static schedule (sets report= of harden-stream-schedule)")
    parser.add_argument("--schedule-gantt", metavar="FILE", help="Gantt chart (PNG) of the static schedule (sets gantt= of harden-stream-schedule)")
    parser.add_argument("--list-passes", action="store_true", help="list the registered passes and pipelines and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress display on stderr")
    parser.add_argument("--all-diagnostics", action="store_true", help=f"print every diagnostic of a failed run (default: the first {DIAGNOSTICS_SHOWN - 1} and a count of the rest)")
    return parser


def resolve_steps(args, pass_flags):
    if args.pass_pipeline and pass_flags:
        raise CommandError("--pass-pipeline cannot be combined with pass flags like --" + pass_flags[0][0])
    try:
        if args.pass_pipeline:
            steps = steps_from_text(args.pass_pipeline)
        else:
            steps = [step for name, options in pass_flags for step in make_step(name, options)]
    except PipelineError as e:
        raise CommandError(str(e)) from None
    direct_schedule_outputs(steps, args)
    return steps


def direct_schedule_outputs(steps, args) -> None:
    """--schedule-report/--schedule-gantt set the outputs of the pipeline's scheduler."""
    if not (args.schedule_report or args.schedule_gantt):
        return
    if not any(isinstance(step, StreamSchedule) for step in steps):
        raise CommandError("--schedule-report and --schedule-gantt need a pipeline that runs harden-stream-schedule")
    for i, step in enumerate(steps):
        if isinstance(step, StreamSchedule):
            steps[i] = dataclasses.replace(step, report=args.schedule_report or step.report, gantt=args.schedule_gantt or step.gantt)


@dataclass
class ChunkResult:
    output: str | None
    ok: bool
    parameters_to_write: tuple[WeightStore, ir.Operation, Path] | None = None


def parameter_path_for(mlir_path: Path) -> Path:
    """Where the parameters of `m.mlir` go: `m.safetensors` beside it."""
    return mlir_path.with_suffix(".safetensors")


def place_parameters(module, weights: WeightStore, output: str):
    """Points the module at its parameter file as seen from the output; returns what
    must be written (new parameters) once every chunk has succeeded."""
    if weights.new_params:
        if output == "-" or (Path(output).exists() and not Path(output).is_file()):
            raise CommandError("the passes created new parameters for a module with a parameter file; give -o FILE to write them beside it")
        target = parameter_path_for(Path(output))
        if weights.params is not None and target.resolve() == weights.params.path.resolve():
            raise CommandError(f"writing '{target}' would overwrite the parameter file the input reads; choose another -o")
        module.attributes[PARAMS_ATTR] = ir.StringAttr.get(target.name)
        return weights, module, target
    if weights.external and output != "-":
        relative = os.path.relpath(weights.params.path, Path(output).resolve().parent)
        module.attributes[PARAMS_ATTR] = ir.StringAttr.get(relative)
    return None


class LazyMeasurements:
    """The measurements passes may ask for (PyTorch, from the provenance), loaded only when
    a pass asks: they import torch and the frontend. One per run, so the model is rebuilt
    and the samples drawn once for every chunk and pass."""

    def __init__(self):
        self._measurements = None

    def __getattr__(self, name):
        if self._measurements is None:
            from harden.eval.measurements import ModelMeasurements

            self._measurements = ModelMeasurements()
        return getattr(self._measurements, name)


def process_chunk(chunk, source_name, steps, args, context, instrumentation, measurements) -> ChunkResult:
    """Parses, transforms and prints one chunk."""
    sink = DiagnosticSink(remarks=args.harden_remarks)
    context.attach_diagnostic_handler(lambda d: (sink.add(from_mlir(d)), True)[1])
    result = ChunkResult(None, False)
    try:
        module = parse_module(chunk.text, source_name, context)
        source_dir = Path(args.input).parent if args.input != "-" else Path.cwd()
        weights = WeightStore(resource_blobs(chunk.text), parameter_file_of(module, source_dir))
    except ir.MLIRError as e:
        sink.add_mlir_error(e)
    except WeightError as e:
        sink.add(Diagnostic("error", str(e)))
    else:
        if run_steps(module, steps, sink, instrumentation, weights, measurements):
            with context:
                result.parameters_to_write = place_parameters(module, weights, args.output)
            result.output = module.get_asm(
                large_elements_limit=args.mlir_elide_elementsattrs_if_larger,
                enable_debug_info=args.mlir_print_debuginfo,
                assume_verified=True,
            )
    if args.verify_diagnostics:
        problems = check_diagnostics(source_name, chunk.text, sink.items)
        for p in problems:
            print(p.format(TOOL), file=sys.stderr)
        result.ok = not problems
    else:
        sink.print(TOOL, limit=None if args.all_diagnostics else DIAGNOSTICS_SHOWN)
        result.ok = not sink.has_errors
    return result


def opt(argv: list[str]) -> int:
    argv, pass_flags = take_pass_flags(argv)
    args = make_parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    if args.list_passes:
        print(pass_catalogue())
        return 0
    steps = resolve_steps(args, pass_flags)
    check_output_path(args.output, [args.input])
    try:
        text, source_name = read_source(args.input)
    except SourceError as e:
        raise CommandError(str(e)) from None

    context = make_context()
    context.allow_unregistered_dialects = args.allow_unregistered_dialect
    instrumentation = Instrumentation(
        print_ir_before_all=args.mlir_print_ir_before_all,
        print_ir_after_all=args.mlir_print_ir_after_all,
        timing=args.mlir_timing,
        elide_elements_limit=args.mlir_elide_elementsattrs_if_larger,
    )
    try:  # report a bad pipeline once, before any input is processed
        build_pass_manager(steps, context, PassContext(DiagnosticSink()), Instrumentation())
    except PipelineError as e:
        raise CommandError(str(e)) from None

    measurements = LazyMeasurements()
    results = [
        process_chunk(chunk, source_name, steps, args, context, instrumentation, measurements)
        for chunk in split_source(text, args.split_input_file)
    ]
    if not all(r.ok for r in results):
        return 1
    to_write = [r.parameters_to_write for r in results if r.parameters_to_write]
    if len(to_write) > 1:
        raise CommandError("several chunks created new parameters; they cannot share one parameter file")
    for weights, module, target in to_write:
        with context:
            weights.write_parameters(module, target)
    write_output(args.output, f"\n{SPLIT_MARKER}\n".join(r.output for r in results if r.output is not None))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(TOOL, lambda: opt(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
