"""One integer linear at a time: its two lowerings against f32, at SmolLM2-135M's shapes.

    .venv/bin/python -m bench.int_kernels [--rounds 5] [--json out/int_kernels.json]

For SmolLM2's linears (576->576 q/o, 576->1536 gate/up, 1536->576 down), `harden.int_linear`
with symmetric codes of 3 and 4 bits in groups of 64 (what the default pipeline picks most)
and of 8 bits with one scale per row, and `harden.int8_linear` (a layer kept with
keep-as=int8) at those shapes; at the classifier's (576->49152), 4-bit codes in groups of 32
(the default's tied classifier) and `int8_linear`; M = 1 (decode) and
M = 128 (prefill), seeded random codes and scales:

* `IREE matmul`: kernel=exact, the portable lowering (one token: int_linear a batch_matmul
  over the groups on one i8 per code, then a scaling generic, int8_linear a matmul on the i8
  codes; 128 tokens: the codes dequantized once per call, then IREE's f32 matmul);
* `C kernel`: kernel=vnni, the codes stored in 4 bits (up to 4-bit codes) or 8 on the VNNI
  kernels, exact fixed-point activations (kernel=auto takes them where this table says they
  are faster);
* `f32`: IREE's f32 linear on the dequantized weight (what an unhardened model runs).

Wall milliseconds per call on two threads (IREE `local-task`), all variants once per round,
interleaved; medians over rounds, with the CPU. Compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from torch_mlir import ir

from bench.pareto import cpu_model
from bench.ternary_kernels import IreeCall, linear_module, lowered, one_op_module, per_call_ms
from harden.backend.compile import compile_vmfb
from harden.dialects.harden import build_int8_linear, build_int_linear
from harden.kernels.contract import unavailable_reason
from harden.quant.int8 import quantize_int8
from harden.quant.intn import IntWeight, code_range

SHAPES = [("q/o", 576, 576), ("gate/up", 576, 1536), ("down", 1536, 576), ("classifier", 576, 49152)]
GRIDS = ((3, 64), (4, 64), (8, 0), ("int8_linear", 0))  # (bits, group size; 0: one scale per row)
# The classifier (576 -> 49152): as the default pipeline stores a tied one (4-bit codes in groups
# of 32, shared with the token table), or kept in int8.
CLASSIFIER_GRIDS = ((4, 32), ("int8_linear", 0))
ROWS = (1, 128)
FORMS = {"IREE matmul": "exact", "C kernel": "vnni", "f32": "f32"}


def int_module(x_shape, q: IntWeight) -> ir.Module:
    """main(x) = harden.int_linear(x) on the codes and scales of `q`."""
    return one_op_module(x_shape, q.codes.shape[0], lambda x, weights, y_type: build_int_linear(
        x, weights.literal(q.codes, "si8"), weights.literal(q.scales, "f16"), bits=q.bits, group_size=q.group_size, result_type=y_type))


def int8_module(x_shape, q) -> ir.Module:
    """main(x) = harden.int8_linear(x) on the codes and per-row scales of `q`."""
    return one_op_module(x_shape, q.codes.shape[0], lambda x, weights, y_type: build_int8_linear(
        x, weights.literal(q.codes, "si8"), weights.literal(q.scales, "f32"), result_type=y_type))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    configs = []
    for name, k, n in SHAPES:
        for bits, group in CLASSIFIER_GRIDS if name == "classifier" else GRIDS:
            group = group or k
            if bits == "int8_linear":
                q = quantize_int8((rng.standard_normal((n, k)) * 0.05).astype(np.float32))
                build, dense = lambda shape, q=q: int8_module(shape, q), q.dequantize()
            else:
                lo, hi = code_range(bits, affine=False)
                q = IntWeight(rng.integers(lo, hi + 1, (n, k)).astype(np.int8), (rng.random((n, k // group)) * 0.01 + 0.001).astype(np.float16), bits, group, None)
                build, dense = lambda shape, q=q: int_module(shape, q), q.dequantize()
            for rows in ROWS:
                x = rng.standard_normal((rows, k)).astype(np.float32)
                calls = {}
                for label, form in FORMS.items():
                    module = linear_module(x.shape, dense) if form == "f32" else build(x.shape)
                    calls[label] = IreeCall(compile_vmfb(lowered(module, form)), "local-task", x)
                grid = bits if bits == "int8_linear" else f"int{bits}g{group}" if group < k else f"int{bits}/row"
                configs.append({"linear": name, "in": k, "out": n, "grid": grid, "rows": rows, "calls": calls, "ms": {label: [] for label in calls}})
                print(f"compiled {name} {grid} M={rows}", flush=True)
    for r in range(args.rounds):
        for config in configs:
            for label, call in config["calls"].items():
                config["ms"][label].append(per_call_ms(call, time.perf_counter))
        print(f"round {r + 1} of {args.rounds}", flush=True)
    cpu = cpu_model()
    print(f"\nint_linear lowerings, wall ms per call on 2 threads ({cpu}; C kernels: {unavailable_reason() or 'available'})")
    print(f"{'linear':<11}{'grid':<13}{'M':>5}" + "".join(f"{label:>15}" for label in FORMS) + f"{'speed-up':>10}")
    rows = []
    for c in configs:
        ms = {label: statistics.median(v) for label, v in c["ms"].items()}
        print(f"{c['linear']:<11}{c['grid']:<13}{c['rows']:>5}" + "".join(f"{ms[label]:>15.4f}" for label in FORMS)
              + f"{ms['IREE matmul'] / ms['C kernel']:>9.2f}x")
        rows.append({k: v for k, v in c.items() if k not in ("calls", "ms")} | {"ms": ms})
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
