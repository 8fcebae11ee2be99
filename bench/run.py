"""Benchmark suite: torch, IREE f32, IREE ternary (three variants) and llama.cpp, side by side.

Engines: torch eager f32/bf16, IREE f32 (unhardened), IREE ternary (hardened, with
kernel=exact, and with the classifier in int8) and llama.cpp, measured in one run, per model
shape: the random-weight shapes as TQ2_0 written by harden; SmolLM2-135M-Instruct (real
weights) as the GGUF its package ships (Q4_1) and requantized by llama-quantize to TQ2_0 and
TQ1_0.

For each shape: import it and run harden-opt's pipelines (timed per stage: bench/artifacts.py),
compile the pipeline outputs with IREE (timed), load every engine (bench/subjects.py), then
measure in rounds. A round runs every engine once (warm prefill of S tokens, then decode
steps on its KV cache), in an order that rotates from round to round, between two
measurements of the memory read bandwidth (bench/bandwidth.py); rounds taken while the
bandwidth collapsed are dropped (bench/report.py). PyTorch runs with 2 threads (this
machine has 2 cores), IREE on its `local-task` driver (a worker per core), llama.cpp with
`-t 2`. The "IREE ternary (hardened)" engine is `--harden-pipeline=policy=none`: every
linear ternary (kernel=auto: the C kernels where this host runs them); "IREE ternary kernel=exact"
adds `kernel=exact` (the portable pure-linalg kernel); "IREE ternary, int8 classifier" adds
`keep=output,tok_embeddings keep-as=int8`.

    .venv/bin/python -m bench.run            # make bench: stories260k, smollm2-135m, llama-100m, tinyllama-1.1b
    .venv/bin/python -m bench.run --quick    # make bench-quick: llama-100m, 3 rounds of 8 decode steps

Writes bench/results.json (--quick: out/bench/results-quick.json; or --json) and prints
one table. Files go to out/bench/<shape>/;
`--reuse` keeps those made by an identical command before (their stage times then read
"reused") and uses the IREE compile cache.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from bench import llama_cpp
from bench.artifacts import StageError, prepare, stages_json
from bench.bandwidth import BandwidthProbe
from bench.pareto import cpu_model
from bench.report import CONTENDED, Round, ShapeReport, format_table
from bench.subjects import CORES, LlamaCppSubject, Subject, iree_subject, torch_subjects
from harden.backend.compile import IREE_CPU_FLAGS
from harden.frontend.checkpoints import PACKAGED_MODELS
from harden.frontend.llama2c import EMBEDDED_MODELS
from harden.frontend.random_init import SHAPES

NAMED_MODELS = (*EMBEDDED_MODELS, *PACKAGED_MODELS)  # real weights, imported with --model

FULL_SHAPES = ["stories260k", "smollm2-135m", "llama-100m", "tinyllama-1.1b"]
# stories260k (1 MB of weights) measures per-call overheads only; the quick run spends its
# three minutes on the smallest shape where weights dominate.
QUICK_SHAPES = ["llama-100m"]
SEQ_LEN = 128  # prefill tokens
# KV-cache positions: what harden-import gives by default (the model's context up to 2048,
# with decode buckets), so decode costs what a user's module costs; --max-seq-len sets one.
MAX_SEQ_LEN = None
LLAMA_CPP_LABEL = "llama.cpp TQ2_0"
DEFAULT_TERNARY = "IREE ternary (hardened)"  # the row of --harden-pipeline=policy=none (all ternary)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def short(error: Exception, width: int = 240) -> str:
    """An error as a note: its type and lines cut at `width` (IREE prints whole target attributes)."""
    lines = [line if len(line) <= width else line[:width] + " ..." for line in str(error).splitlines()]
    return f"{type(error).__name__}: " + "\n".join(lines)


def build_subjects(files, args, report: ShapeReport, llama_bench: Path | None) -> tuple[list[Subject], int]:
    """Every engine of one shape, loaded and compiled, and the vocabulary size; failures
    become notes, not aborts."""
    from harden.backend.cache import CompileCache, default_cache_dir
    from harden.backend.modules import load_module
    from harden.frontend.provenance import exported_model_from_provenance
    from harden.frontend.random_init import SHAPES
    from harden.kernels.contract import unavailable_reason as vnni_unavailable_reason

    cache = CompileCache(default_cache_dir()) if args.reuse else None
    loaded = {label: load_module(path) for label, path in files.pipeline_outputs.items()}
    any_module = next(iter(loaded.values()))
    subjects: list[Subject] = []
    log(f"[{files.shape}] building the PyTorch models ...")
    model = exported_model_from_provenance(any_module.provenance)
    subjects += torch_subjects(model, any_module.seq_len, any_module.max_seq_len)
    for label, module in loaded.items():
        stage = f"IREE compile {files.pipeline_outputs[label].stem}"
        if label == DEFAULT_TERNARY and (why := vnni_unavailable_reason()):
            report.notes.append(f"{label}: kernel=auto lowered with the exact kernel, {why}")
        try:
            subject, seconds, hit = iree_subject(label, module, cache, args.iree_flag)
        except Exception as e:  # noqa: BLE001 - any failure is reported with its message
            report.notes.append(f"{label}: IREE compile/load failed: {short(e)}")
            log(f"[{files.shape}] {label}: FAILED: {short(e)}")
            continue
        report.stages[stage] = {"seconds": seconds, "cache_hit": hit}
        subjects.append(subject)
    config = any_module.provenance.config
    if llama_bench is not None and files.shape in PACKAGED_MODELS:
        subjects += real_model_llama_cpp_subjects(files, args, report, llama_bench)
    elif llama_bench is not None:
        if files.shape not in SHAPES or not llama_cpp.supports(config):
            report.notes.append(f"{LLAMA_CPP_LABEL}: not measured (written for random-init shapes whose rows are "
                                "multiples of 256, TQ2_0's block)")
        else:
            gguf = files.directory / "tq2_0.gguf"
            if not (args.reuse and gguf.exists()):
                log(f"[{files.shape}] writing {gguf} ...")
                start = time.perf_counter()
                llama_cpp.write_gguf(files.shape, gguf)
                report.stages["GGUF TQ2_0 write"] = {"seconds": time.perf_counter() - start}
            bench = llama_cpp.LlamaBench(llama_bench, gguf, CORES)
            subjects.append(LlamaCppSubject(LLAMA_CPP_LABEL, bench, llama_cpp.gguf_bytes_per_token(gguf)))
    return subjects, config.vocab_size


def real_model_llama_cpp_subjects(files, args, report: ShapeReport, llama_bench: Path) -> list[Subject]:
    """llama.cpp on a real model's GGUF as shipped, and requantized to TQ2_0 and TQ1_0 with
    llama-quantize (which keeps its own fall-back types for rows that do not fit 256-blocks:
    the label gives the effective bits per weight, from the file size)."""
    from harden.frontend.checkpoints import PACKAGED_MODELS, open_model

    shipped = PACKAGED_MODELS[files.shape].path(files.shape)
    parameters = open_model(files.shape).config.num_parameters()
    shipped_type = shipped.stem.rsplit(".", 1)[-1]
    ggufs = {f"{shipped_type} (as shipped)": shipped}
    for qtype in ("TQ2_0", "TQ1_0"):
        target = files.directory / f"{qtype.lower()}.gguf"
        if not (args.reuse and target.exists()):
            log(f"[{files.shape}] llama-quantize {qtype} ...")
            start = time.perf_counter()
            try:
                llama_cpp.requantize(shipped, target, qtype, args.llama_cpp_dir)
            except (RuntimeError, OSError) as e:
                report.notes.append(f"llama.cpp {qtype}: {short(e)}")
                continue
            report.stages[f"llama-quantize {qtype}"] = {"seconds": time.perf_counter() - start}
        ggufs[f"{qtype} (requantized)"] = target
    subjects = []
    for what, gguf in ggufs.items():
        bits = gguf.stat().st_size * 8 / parameters
        label = f"llama.cpp {what}, {bits:.1f} b/w"
        subjects.append(LlamaCppSubject(label, llama_cpp.LlamaBench(llama_bench, gguf, CORES), llama_cpp.gguf_bytes_per_token(gguf)))
    return subjects


def measure_shape(shape: str, args, probe: BandwidthProbe, llama_bench: Path | None) -> ShapeReport:
    report = ShapeReport(shape, {})
    try:
        files = prepare(shape, args.out / shape, SEQ_LEN, args.max_seq_len, args.reuse)
    except StageError as e:
        report.notes.append(short(e))
        log(f"[{shape}] FAILED: {short(e)}")
        return report
    report.stages = stages_json(files.stages)
    subjects, vocab = build_subjects(files, args, report, llama_bench)
    report.weight_bytes_per_token = {s.label: s.weight_bytes_per_token for s in subjects}
    prompt = np.random.default_rng(0).integers(0, vocab, size=(1, SEQ_LEN), dtype=np.int64)

    log(f"[{shape}] warm-up ...")
    for s in list(subjects):
        try:
            s.run_round(prompt, 2)
        except Exception as e:  # noqa: BLE001
            report.notes.append(f"{s.label}: failed to run: {short(e)}")
            log(f"[{shape}] {s.label}: FAILED: {short(e)}")
            subjects.remove(s)
            report.weight_bytes_per_token.pop(s.label)
    before = probe.measure()
    for index in range(args.rounds):
        load = os.getloadavg()[0]
        shift = index % max(len(subjects), 1)
        results = {}
        for s in subjects[shift:] + subjects[:shift]:
            results[s.label] = s.run_round(prompt, args.decode_steps)
        after = probe.measure()
        report.rounds.append(Round(min(before, after), load, results))
        before = after
        rates = "  ".join(f"{label}: {r.prefill_tokens_per_s:.1f}/{r.decode_tokens_per_s:.2f}" for label, r in results.items())
        log(f"[{shape}] round {index + 1}/{args.rounds}: {report.rounds[-1].bandwidth_gb_s:.1f} GB/s, load {load:.1f}; "
            f"prefill/decode tok/s  {rates}")
    report.mark_dropped_rounds()
    for s in subjects:
        s.close()
    return report


def locate_llama_bench(args) -> tuple[Path | None, str | None]:
    """The llama-bench binary, building it in full runs; (None, why) when unavailable."""
    if args.no_llama_cpp:
        return None, "llama.cpp skipped (--no-llama-cpp)"
    binary = llama_cpp.bench_binary(args.llama_cpp_dir)
    if binary.exists() and (args.quick or all(llama_cpp.tool_binary(t, args.llama_cpp_dir).exists() for t in llama_cpp.TARGETS)):
        return binary, None
    if args.quick:
        return None, f"llama.cpp not built ({binary} missing; `make llama-cpp` builds it, about 10 minutes)"
    try:
        return llama_cpp.build(args.llama_cpp_dir), None
    except (RuntimeError, OSError) as e:
        return None, f"llama.cpp could not be built: {e}"


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "iree": version("iree-base-runtime"),
        "iree_driver": "local-task",
        "llama_cpp_threads": CORES,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="llama-100m only, 3 rounds of 8 decode steps")
    parser.add_argument("--shapes", help=f"comma-separated shapes (default {','.join(FULL_SHAPES)}; quick: {','.join(QUICK_SHAPES)})")
    parser.add_argument("--rounds", type=int, help="measured rounds per shape (default 5; quick 3)")
    parser.add_argument("--decode-steps", type=int, help="decode steps per round (default 16; quick 8)")
    parser.add_argument("--max-seq-len", type=int, default=MAX_SEQ_LEN, help="KV-cache positions of every import (default: harden-import's, "
                        "the model's context up to 2048)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="working directory (default out/bench)")
    parser.add_argument("--json", type=Path, help="results file (default bench/results.json; quick: out/bench/results-quick.json, "
                        "so a quick run never replaces the full results the README quotes)")
    parser.add_argument("--reuse", action="store_true", help="reuse files made by identical commands in an earlier run, and the IREE compile "
                        "cache (does not notice changes to harden's code)")
    parser.add_argument("--iree-flag", action="append", default=[], metavar="FLAG",
                        help="an extra iree-compile flag for both IREE engines, e.g. "
                             "--iree-flag=--iree-llvmcpu-stack-allocation-limit=524288 (repeatable; shown with the results)")
    parser.add_argument("--iree-runtime-flag", action="append", default=[], metavar="FLAG",
                        help="an IREE runtime flag, e.g. --iree-runtime-flag=--task_worker_stack_size=1048576 (repeatable)")
    parser.add_argument("--no-llama-cpp", action="store_true", help="leave llama.cpp out")
    parser.add_argument("--llama-cpp-dir", type=Path, default=llama_cpp.DEFAULT_DIR, help="llama.cpp build directory (default out/llama.cpp)")
    args = parser.parse_args(argv)
    shapes = args.shapes.split(",") if args.shapes else (QUICK_SHAPES if args.quick else FULL_SHAPES)
    unknown = [shape for shape in shapes if shape not in SHAPES and shape not in NAMED_MODELS]
    if unknown:
        parser.error(f"unknown shape {', '.join(unknown)} (known: {', '.join(NAMED_MODELS)}, {', '.join(SHAPES)})")
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.decode_steps = args.decode_steps or (8 if args.quick else 16)
    args.json = args.json or (args.out / "results-quick.json" if args.quick else Path("bench/results.json"))
    if not 1 <= args.decode_steps <= (args.max_seq_len or SEQ_LEN + 128) - SEQ_LEN:
        parser.error(f"--decode-steps must be in [1, {(args.max_seq_len or SEQ_LEN + 128) - SEQ_LEN}]")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg).*")
    torch.set_num_threads(CORES)
    if args.iree_runtime_flag:
        import iree.runtime

        iree.runtime.flags.parse_flags(*args.iree_runtime_flag)

    started = time.perf_counter()
    llama_bench, why_not = locate_llama_bench(args)
    probe = BandwidthProbe(gib=1.0, threads=CORES)
    load_start = os.getloadavg()
    reports = []
    for shape in shapes:
        reports.append(measure_shape(shape, args, probe, llama_bench))
        gc.collect()
        log(format_table(reports[-1:]))
    notes = [why_not] if why_not else []
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "settings": {
            "prefill_tokens": SEQ_LEN,
            "kv_cache_positions": args.max_seq_len or "harden-import's default (the model's context up to 2048), per shape",
            "decode_steps_per_round": args.decode_steps,
            "rounds": args.rounds,
            "iree_compile_flags": list(IREE_CPU_FLAGS),  # harden's own, before the extra ones
            "extra_iree_compile_flags": args.iree_flag,
            "extra_iree_runtime_flags": args.iree_runtime_flag,
            "bandwidth_probe": f"fastest of 3 reads of {probe.nbytes / 2**30:.0f} GiB by a {CORES}-thread torch f32 gemv "
                               f"and a {CORES}-thread numpy uint64 OR-reduce (bench/bandwidth.py)",
            "decode_token_positions": f"{SEQ_LEN}..{SEQ_LEN + args.decode_steps - 1} after the prefill "
                                      f"(llama.cpp: llama-bench tg at the same depth, -d {SEQ_LEN})",
        },
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - started,
        "shapes": {r.shape: r.to_json() for r in reports},
        "notes": notes,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"harden benchmark, {result['date']}: {result['machine']['cpu']}, {result['machine']['cores']} cores; "
          f"torch {CORES} threads, IREE local-task, llama.cpp -t {CORES}; load average at start "
          f"{load_start[0]:.1f} (1 min), at end {result['load_average_end'][0]:.1f}")
    if args.iree_flag or args.iree_runtime_flag:
        print(f"extra IREE flags (not harden's defaults): compile {' '.join(args.iree_flag) or '-'}; "
              f"runtime {' '.join(args.iree_runtime_flag) or '-'}")
    print(f"prefill: {SEQ_LEN} tokens; decode: median of {args.decode_steps} steps after it; medians over "
          f"{args.rounds} interleaved rounds; ratios against torch eager f32 of the same run; roofline = weight "
          "bytes per token x decode tok/s / bandwidth; CPU own/others = share of the machine's CPU time used by the "
          f"engine / by other processes while it ran ('contended' above {CONTENDED})")
    print(format_table(reports))
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.json} in {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
