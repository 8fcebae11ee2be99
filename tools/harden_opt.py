"""harden-opt: an mlir-opt-style driver over harden's passes and MLIR's upstream passes."""

from __future__ import annotations

import argparse
import sys

from torch_mlir import ir

from harden.core.context import make_context
from harden.core.diagnostics import DiagnosticSink, from_mlir
from harden.core.source import SPLIT_MARKER, SourceError, parse_module, read_source, split_source
from harden.core.verify_diagnostics import check_diagnostics
from harden.core.weights import WeightStore, resource_blobs
from harden.passes import PASSES
from harden.pipelines.pass_manager import Instrumentation, build_pass_manager, run_steps
from harden.pipelines.pipeline_text import PipelineError, make_step, steps_from_text
from harden.pipelines.registry import PIPELINES
from harden.passes.base import PassContext
from harden.tools.cli import ArgumentParser, CommandError, check_not_input, run_command, write_output

TOOL = "harden-opt"


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
    parser.add_argument("--list-passes", action="store_true", help="list the registered passes and pipelines and exit")
    return parser


def resolve_steps(args, pass_flags):
    if args.pass_pipeline and pass_flags:
        raise CommandError("--pass-pipeline cannot be combined with pass flags like --" + pass_flags[0][0])
    try:
        if args.pass_pipeline:
            return steps_from_text(args.pass_pipeline)
        steps = []
        for name, options in pass_flags:
            steps += make_step(name, options)
        return steps
    except PipelineError as e:
        raise CommandError(str(e)) from None


def process_chunk(chunk, source_name, steps, args, context, instrumentation) -> tuple[str | None, bool]:
    """Parses, transforms and prints one chunk; returns (output text or None, success)."""
    sink = DiagnosticSink(remarks=args.harden_remarks)
    context.attach_diagnostic_handler(lambda d: (sink.add(from_mlir(d)), True)[1])
    output = None
    try:
        module = parse_module(chunk.text, source_name, context)
    except ir.MLIRError as e:
        sink.add_mlir_error(e)
    else:
        weights = WeightStore(resource_blobs(chunk.text))
        if run_steps(module, steps, sink, instrumentation, weights):
            output = module.get_asm(
                large_elements_limit=args.mlir_elide_elementsattrs_if_larger,
                enable_debug_info=args.mlir_print_debuginfo,
                assume_verified=True,
            )
    if args.verify_diagnostics:
        problems = check_diagnostics(source_name, chunk.text, sink.items)
        for p in problems:
            print(p.format(TOOL), file=sys.stderr)
        return output, not problems
    sink.print(TOOL)
    return output, not sink.has_errors


def opt(argv: list[str]) -> int:
    argv, pass_flags = take_pass_flags(argv)
    args = make_parser().parse_args(argv)
    if args.list_passes:
        print(pass_catalogue())
        return 0
    steps = resolve_steps(args, pass_flags)
    check_not_input(args.output, [args.input])
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

    outputs, ok = [], True
    for chunk in split_source(text, args.split_input_file):
        output, chunk_ok = process_chunk(chunk, source_name, steps, args, context, instrumentation)
        ok = ok and chunk_ok
        if output is not None:
            outputs.append(output)
    if not ok:
        return 1
    write_output(args.output, f"\n{SPLIT_MARKER}\n".join(outputs))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(TOOL, lambda: opt(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
