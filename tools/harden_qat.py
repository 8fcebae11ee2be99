"""harden-qat: ternary quantization-aware training with distillation from the f32 model."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

from harden.core import progress
from harden.core.pass_base import PassOptionError
from harden.quant.options import TernaryOptions
from harden.tools.cli import ArgumentParser, CommandError, check_output_path, run_command, write_output

TOOL = "harden-qat"


def make_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=TOOL,
        description="Trains a ternary copy of a Llama against its f32 self (straight-through estimator, KL "
        "distillation on sequences sampled from the f32 model) and writes a checkpoint whose linears are "
        "exactly ternary x scale, so harden-ternarize with the same options hardens it losslessly.",
        usage_exit_code=2,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="stories260k, tiny, a llama2.c .bin file or a Hugging Face directory")
    source.add_argument("--random-init", metavar="SHAPE", help="a named shape with seeded random weights")
    p.add_argument(
        "--method",
        choices=("absmean", "twn", "ls", "gptq"),
        default="absmean",
        help="absmean/twn: latent weights ternarized each step; ls/gptq: start from the compiler's calibrated rounding "
        "(gptq: error feedback on Hessians from sampled sequences) and train what --train says",
    )
    p.add_argument(
        "--train",
        choices=("scales", "all"),
        help="with ls/gptq: scales (codes fixed, the default) or all (scales and codes through a latent weight); norms train too",
    )
    p.add_argument("--scale", choices=("tensor", "channel", "group"), default="channel")
    p.add_argument("--group-size", type=int, help="input columns per scale (with --scale group)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="train for this many minutes of wall time (default 15)")
    budget.add_argument("--steps", type=int, help="train for this many steps (deterministic for a seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training samples (the held-out set has its own)")
    p.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per training sequence (default 128)")
    p.add_argument("--lr", type=float, help="peak learning rate of latent weights (default 2e-3), or with ls/gptq and --train all of the latent codes, in units of their scale (default 1e-2)")
    p.add_argument("--lr-scales", type=float, help="with ls/gptq: peak learning rate of the scales (default 1e-4)")
    p.add_argument("--pool", type=int, default=1024, help="teacher sequences sampled per refresh of the training pool (default 1024), each used 4 times")
    p.add_argument("--history", metavar="FILE.json", help="write the held-out evaluations (for plots) to this file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("-o", dest="output", required=True, help="checkpoint: FILE.bin (llama2.c) or a directory (Hugging Face)")
    return p


def _progress_line(entry: dict, total: str) -> str:
    return (
        f"{chr(13) if progress.enabled() else ''}{TOOL}: step {entry['step']:>6}  {entry['seconds'] / 60:5.1f} of {total} min  loss {entry['loss']:.4f}  "
        f"held-out top-1 {entry['top1_agreement']:.4f}  KL {entry['kl']:.4f}"
    )


def qat(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    try:
        ternary = TernaryOptions(method=args.method, scale=args.scale, group_size=args.group_size)
    except PassOptionError as e:
        raise CommandError(str(e), 2) from None
    calibrated = args.method in ("ls", "gptq")
    if args.train and not calibrated:
        raise CommandError(f"--train needs --method ls or gptq (method {args.method} trains latent weights)", 2)
    if args.pool < 1:
        raise CommandError("--pool must be positive", 2)
    if (args.steps is not None and args.steps <= 0) or (args.minutes is not None and args.minutes <= 0):
        raise CommandError("--steps and --minutes must be positive", 2)
    output = Path(args.output)
    check_output_path(args.output, [args.model] if args.model else [])
    if output.exists() and output.is_dir() and any(output.iterdir()):
        raise CommandError(f"'{output}' exists and is not empty; choose a new checkpoint directory")

    from harden.eval.qat import QatOptions, train
    from harden.frontend.checkpoints import open_model, write_checkpoint
    from harden.frontend.random_init import RandomInit
    from harden.frontend.weights import FrontendError

    try:
        source = open_model(args.model) if args.model else RandomInit(args.random_init)
        teacher = source.reference_model()
    except FrontendError as e:
        raise CommandError(str(e)) from None
    if output.suffix == ".bin" and teacher.config.rope_layout != "adjacent":
        raise CommandError(f"'{output}': a llama2.c .bin holds adjacent-pair RoPE models only; give a directory for a Hugging Face checkpoint")
    if output.suffix != ".bin" and teacher.config.rope_layout != "half":
        raise CommandError(f"'{output}': this model (adjacent-pair RoPE) is written as a llama2.c checkpoint: name it FILE.bin")
    rates = {k: v for k, v in (("lr_codes" if calibrated else "lr", args.lr), ("lr_scales", args.lr_scales)) if v is not None}
    if any(v <= 0 for v in rates.values()):
        raise CommandError("--lr and --lr-scales must be positive", 2)
    options = QatOptions(**rates, ternary=ternary, batch=args.batch, seq_len=args.seq_len, pool=args.pool, train=(args.train or "scales") if calibrated else "latent")
    minutes = None if args.steps is not None else (args.minutes or 15.0)
    total = f"{minutes:g}" if minutes is not None else "?"

    def show(entry: dict) -> None:
        # one line redrawn on a terminal, one line per evaluation in a log (none with --quiet)
        if not args.quiet:
            print(_progress_line(entry, total), end="" if progress.enabled() else "\n", file=sys.stderr, flush=True)

    result = train(teacher, options, steps=args.steps, minutes=minutes, seed=args.seed, progress=show)
    if progress.enabled():
        print(file=sys.stderr)
    try:
        write_checkpoint(output, teacher.config, result.model.state_dict())
    except FrontendError as e:
        raise CommandError(str(e)) from None
    if args.history:
        write_output(args.history, json.dumps({"options": dataclasses.asdict(options), "setup_seconds": result.setup_seconds, "evaluations": result.history}, indent=2) + "\n")
    final = result.history[-1]
    print(
        f"{TOOL}: wrote {output} after {final['step']} steps ({final['seconds'] / 60:.1f} min, {result.setup_seconds / 60:.1f} min of set-up before): held-out top-1 "
        f"{final['top1_agreement']:.4f}, KL {final['kl']:.4f} nats against the f32 model"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg).*")
    return run_command(TOOL, lambda: qat(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
