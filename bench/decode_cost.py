"""What one decode step costs against the KV cache's capacity and the frontend (issue 18).

    .venv/bin/python -m bench.decode_cost [--out out/decode-cost] [--rounds 3]

SmolLM2-135M-Instruct in f32 on IREE (llvm-cpu, no harden passes: the cost of the graph
the import gives), imported by harden-import in these ways:

* `2048`: the default capacity (the model's context capped at 2048) with the default
  decode buckets (256, 512, 1024);
* `2048 no buckets`: the same with `--decode-buckets none`: every step writes and attends
  over all 2048 positions (harden before decode buckets);
* `256`: a 256-position cache, the size `make bench` uses;
* `hf 256`: the same weights written as a Hugging Face directory and exported through
  transformers' modeling code (`--frontend hf`), against `256` (the reference frontend).

Each round runs every variant once, interleaved: a prefill of 64 tokens, then decode steps
at positions 64 to 150, of which the last 10 are timed (the median is the rate). The CPU
and every number go to OUT/results.json; compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench.pareto import cpu_model, shipped_gguf, tool
from harden.backend.compile import IREE_CPU_FLAGS
from harden.backend.engines import IreeEngine
from harden.backend.modules import compile_module, load_module

PREFILL = 64
TIMED_FROM, TIMED_TO = 140, 150

VARIANTS = {  # label -> (model source, harden-import flags)
    "2048": ("gguf", ["--max-seq-len", "2048"]),
    "2048 no buckets": ("gguf", ["--max-seq-len", "2048", "--decode-buckets", "none"]),
    "256": ("gguf", ["--max-seq-len", "256"]),
    "hf 256": ("hf", ["--max-seq-len", "256", "--frontend", "hf"]),
}


def hf_directory(out: Path) -> Path:
    """SmolLM2's dequantized weights as a Hugging Face directory (once)."""
    from harden.frontend.checkpoints import open_model, write_checkpoint

    directory = out / "smollm2-hf"
    if not (directory / "config.json").exists():
        source = open_model(str(shipped_gguf()))
        write_checkpoint(directory, source.config, source.reference_model().state_dict())
    return directory


def one_round(engine: IreeEngine) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s at positions TIMED_FROM..TIMED_TO)."""
    tokens = np.ones((1, PREFILL), np.int64)
    start = time.perf_counter()
    _, state = engine.prefill(tokens, last=PREFILL - 1)
    prefill = PREFILL / (time.perf_counter() - start)
    times = []
    for pos in range(PREFILL, TIMED_TO):
        start = time.perf_counter()
        _, state = engine.decode(1, pos, state)
        if pos >= TIMED_FROM:
            times.append(time.perf_counter() - start)
    return prefill, 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/decode-cost")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engines = {}
    for label, (kind, flags) in VARIANTS.items():
        model = str(hf_directory(out)) if kind == "hf" else "smollm2-135m"
        path = out / f"{label.replace(' ', '-')}.mlir"
        if not path.exists():
            print(f"importing {label}", flush=True)
            tool("harden-import", "--model", model, "--seq-len", str(PREFILL), *flags, "-o", path)
        loaded = load_module(path)
        print(f"compiling {label}", flush=True)
        engines[label] = IreeEngine.of(compile_module(loaded, None).module, loaded, label)
        one_round(engines[label])  # warm-up
    rates = {label: [] for label in engines}
    for r in range(args.rounds):
        for label, engine in engines.items():
            rates[label].append(one_round(engine))
        print(f"round {r + 1}: " + "  ".join(f"{label} {rates[label][-1][1]:.1f}" for label in engines), flush=True)
    results = {
        "cpu": cpu_model(),
        "iree_flags": list(IREE_CPU_FLAGS),
        "prefill_tokens": PREFILL,
        "decode_positions_timed": [TIMED_FROM, TIMED_TO],
        "variants": {
            label: {
                "prefill_tokens_per_s": statistics.median(p for p, _ in rows),
                "decode_tokens_per_s": statistics.median(d for _, d in rows),
            }
            for label, rows in rates.items()
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nSmolLM2-135M f32 on IREE, {results['cpu']}: decode at positions {TIMED_FROM}-{TIMED_TO}, prefill of {PREFILL}")
    for label, row in results["variants"].items():
        print(f"  {label:<18} decode {row['decode_tokens_per_s']:7.1f} tok/s   prefill {row['prefill_tokens_per_s']:7.1f} tok/s")


if __name__ == "__main__":
    main()
