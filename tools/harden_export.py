"""harden-export: the chip configuration of a hardened, scheduled module.

    harden-export SCHEDULED.mlir -o chip/          write chip.json and the ROM images
    harden-export --check chip/ SCHEDULED.mlir     re-derive them and report the first difference

The work is done by `harden.chip.export` (see its docstring for the directory layout);
this file parses arguments, reads the module and its weights, and prints.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from harden.core import progress
from harden.tools.cli import ArgumentParser, CommandError, run_command

TOOL = "harden-export"


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=TOOL,
        description="Writes the chip configuration of a hardened, scheduled module (harden-opt "
        "--harden-pipeline=\"lower=false\"): chip.json (projection, resources, memory map, layers) and "
        "each weight matrix's ROM image.",
        usage_exit_code=1,
    )
    parser.add_argument("input", metavar="SCHEDULED.mlir", help="a scheduled harden-level module")
    parser.add_argument("-o", dest="output", metavar="DIR", help="the export directory (created; a previous export is replaced)")
    parser.add_argument("--check", metavar="DIR", help="re-derive the export and compare it with DIR instead of writing")
    parser.add_argument("--quiet", action="store_true", help="no progress display on stderr")
    return parser


def _load(path: str):
    """The module, its weights and the sha256 of its text; errors as one line."""
    from torch_mlir import ir

    from harden.core.source import SourceError, parse_module, read_source
    from harden.core.weights import WeightError, WeightStore, parameter_file_of, resource_blobs
    from harden.dialects.context import make_context

    try:
        text, name = read_source(path)
    except SourceError as e:
        raise CommandError(str(e)) from None
    context = make_context()
    try:
        module = parse_module(text, name, context)
        module.verify()  # the harden ops' own checks (operand shapes, attributes) before reading them
    except ir.MLIRError as e:
        first = e.error_diagnostics[0] if e.error_diagnostics else None
        where = f"{first.location}: " if first is not None and "loc(" in str(first.location) else ""
        raise CommandError(f"'{path}' is not a valid module: {where}{first.message if first else e}") from None
    try:
        store = WeightStore(resource_blobs(text), parameter_file_of(module, Path(path).parent))
    except WeightError as e:
        raise CommandError(f"'{path}' lacks its weights: {e}") from None
    return context, module, store, hashlib.sha256(text.encode()).hexdigest()


def export(argv: list[str]) -> int:
    from harden.chip.export import ExportError, build_export, check_output_dir, first_difference, write_export

    args = make_parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    if bool(args.output) == bool(args.check):
        raise CommandError("give exactly one of -o DIR (write) and --check DIR (compare)")
    target = Path(args.output or args.check)
    if args.output:
        if Path(args.input).exists() and Path(args.input).resolve() == target.resolve():
            raise CommandError(f"output '{args.output}' is the input file; refusing to overwrite it")
        try:
            check_output_dir(target)
        except ExportError as e:
            raise CommandError(str(e)) from None
    elif not target.is_dir():
        raise CommandError(f"cannot check '{args.check}': not a directory")
    context, module, store, digest = _load(args.input)
    try:
        with context, progress.stage(f"deriving the chip configuration of {args.input}"):
            result = build_export(module, args.input, store, digest)
    except ExportError as e:
        raise CommandError(str(e)) from None
    if args.check:
        difference = first_difference(result, target)
        if difference:
            raise CommandError(f"'{args.check}' differs from the export of '{args.input}': {difference}")
        print(f"{TOOL}: '{args.check}' matches the export of '{args.input}' ({len(result.files)} files)")
        return 0
    write_export(result, target)
    chip = result.chip
    per_user = chip["tokens_per_s"]
    print(f"{TOOL}: wrote {target}: {len(chip['layers'])} weight matrices, {chip['weight_bytes']} weight bytes, "
          f"{chip['resources']['chips']} chip(s) of {chip['machine']['name']}, "
          f"{per_user:.4g} tokens/s per user, {chip['pipelined_tokens_per_s']:.4g} pipelined, "
          f"{chip['energy_per_token_j']:.3g} J/token, {chip['area_mm2']:.4g} mm2")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(TOOL, lambda: export(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
