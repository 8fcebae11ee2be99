"""Where a decode step goes: IREE's own HAL profiler over one module's decode (or prefill) function.

    .venv/bin/python -m bench.profile_decode MODULE.mlir [--function decode_256] [--pos 150] [--repeat 20] [--top 30]

The module (any level harden-opt or harden-import writes) is lowered and compiled as
harden-run compiles it, then `iree-benchmark-module` runs the decode function `--repeat`
times on a cache filled up to `--pos` (zeros: the work does not depend on the values;
a prefill function runs on a prompt of ones, `prefill_last` with the last position's logits) with
`--device_profiling_mode=host-execution`, and `iree-profile statistics` reads the
capture. Printed and written to MODULE.profile.json: dispatches per step, the time of
each dispatch class (by what IREE named the executable: matmul, batch_matmul, generic
elementwise/reduction, softmax, the C kernels' custom dispatches...) and the share of the
step each takes, with the CPU. The wall time includes IREE's per-call overheads, which
the dispatch times do not.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.pareto import cpu_model
from harden.backend.compile import PARAMETER_SCOPE, compile_vmfb
from harden.backend.modules import load_module

BIN = Path(sys.executable).parent


def dispatch_class(name: str) -> str:
    """A dispatch's class from IREE's executable name (`..._dispatch_3_matmul_1x576x1536_f32`)."""
    tail = re.sub(r"^.*_dispatch_\d+_?", "", name)
    kind = re.split(r"_\d|_[a-z]\d", tail)[0] or "other"
    return {"matmul_transpose_b": "matmul"}.get(kind, kind)


def profile(path: Path, function: str, pos: int, repeat: int, iree_flags: tuple[str, ...] = ()) -> dict:
    """Compiles `path` (with `iree_flags` added to iree-compile's), profiles `function` at
    `pos` and returns the summary (see `summarize`)."""
    loaded = load_module(path)
    if function not in loaded.signature:
        raise SystemExit(f"'{path}' has no function '{function}' (it has {', '.join(loaded.signature)})")
    arguments = loaded.signature[function][0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "m.vmfb").write_bytes(compile_vmfb(loaded.lowered_text, iree_flags))
        if len(arguments) <= 2:  # a prefill: its prompt of token ids (ones: the work does not depend on them)
            shape = _shape(arguments[0])
            np.save(tmp / "tokens.npy", np.ones(shape, np.int64))
            np.save(tmp / "last.npy", np.array([shape[1] - 1], np.int64))  # prefill_last's position
            inputs = ["tokens.npy", "last.npy"][: len(arguments)]
        else:
            np.save(tmp / "token.npy", np.ones((1, 1), np.int64))
            np.save(tmp / "pos.npy", np.array([pos], np.int64))
            np.save(tmp / "cache.npy", np.zeros(_shape(arguments[2]), np.float32))
            inputs = ["token.npy", "pos.npy", "cache.npy", "cache.npy"]
        command = [
            str(BIN / "iree-benchmark-module"), f"--module={tmp / 'm.vmfb'}", f"--function={function}", "--device=local-task",
            *(f"--input=@{tmp / name}" for name in inputs),
            f"--benchmark_min_time={repeat}x", "--benchmark_format=json",
            # dispatch-events is not implemented by the local (CPU) HAL; host-execution times each dispatch
            "--device_profiling_mode=host-execution", f"--device_profiling_output={tmp / 'p.ireeprof'}",
        ]
        if loaded.parameter_file is not None:
            command.insert(2, f"--parameters={PARAMETER_SCOPE}={loaded.parameter_file}")
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"iree-benchmark-module failed:\n{run.stderr[-2000:]}")
        bench = [b for b in json.loads(run.stdout)["benchmarks"] if b.get("run_type") == "iteration"]
        unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[bench[0]["time_unit"]]
        wall_ms = min(b["real_time"] for b in bench) * unit
        stats = subprocess.run([str(BIN / "iree-profile"), "statistics", "--format=jsonl", str(tmp / "p.ireeprof")], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in stats.stdout.splitlines() if line.strip()]
    return {"module": str(path), "function": function, "pos": pos, "cpu": cpu_model(), "iree_flags": list(iree_flags),
            "wall_ms_per_step": wall_ms, **summarize(rows)}


def _shape(tensor_type: str) -> list[int]:
    return [int(d) for d in re.findall(r"\d+(?=x)", tensor_type)]


def summarize(rows: list[dict]) -> dict:
    """Dispatches and milliseconds per step, in total and per dispatch class. A step is one
    call of the function: every dispatch runs at least once per call, so the fewest
    samples of any dispatch is the number of calls profiled."""
    functions = [r for r in rows if r.get("row_type") == "host_execution_function" and r.get("function_name")]
    calls = min(r["sample_count"] for r in functions)
    classes: dict[str, dict] = defaultdict(lambda: {"dispatches": 0.0, "ms": 0.0})
    executables = []
    for r in functions:
        per_step, ms = r["sample_count"] / calls, r["total_duration_ns"] / 1e6 / calls
        entry = classes[dispatch_class(r["function_name"])]
        entry["dispatches"] += per_step
        entry["ms"] += ms
        executables.append({"name": r["function_name"], "dispatches": per_step, "ms": ms})
    total = sum(c["ms"] for c in classes.values())
    return {
        "dispatches_per_step": sum(c["dispatches"] for c in classes.values()),
        "dispatch_ms_per_step": total,
        "classes": {k: {**v, "share": v["ms"] / total} for k, v in sorted(classes.items(), key=lambda kv: -kv[1]["ms"])},
        # IREE deduplicates equal dispatch functions, so one executable serves every layer's copy
        "executables": sorted(executables, key=lambda e: (-e["dispatches"], -e["ms"], e["name"])),
    }


def format_profile(result: dict, top: int = 0) -> str:
    lines = [
        f"{result['module']} @{result['function']} at position {result['pos']} ({result['cpu']}): "
        f"{result['wall_ms_per_step']:.2f} ms per call, {result['dispatch_ms_per_step']:.2f} ms in {result['dispatches_per_step']:.0f} dispatches",
        f"  {'dispatch class':<28}{'per step':>9}{'ms':>9}{'share':>8}",
    ]
    for name, c in result["classes"].items():
        lines.append(f"  {name:<28}{c['dispatches']:>9.0f}{c['ms']:>9.3f}{c['share']:>8.1%}")
    if top:
        lines.append(f"  {'executable (most dispatched first)':<60}{'per step':>9}{'ms':>9}")
        for e in result["executables"][:top]:
            lines.append(f"  {e['name'][-60:]:<60}{e['dispatches']:>9.0f}{e['ms']:>9.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", type=Path)
    parser.add_argument("--function", default="decode")
    parser.add_argument("--pos", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--top", type=int, default=0, help="also list this many executables, the most dispatched first")
    parser.add_argument("--iree-flag", action="append", default=[], help="an extra iree-compile flag (repeatable)")
    args = parser.parse_args()
    result = profile(args.module, args.function, args.pos, args.repeat, tuple(args.iree_flag))
    print(format_profile(result, args.top))
    args.module.with_suffix(".profile.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
