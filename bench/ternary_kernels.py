"""One linear at a time: the ternary kernels against f32, at TinyLlama-1.1B's decode shapes.

    .venv/bin/python -m bench.ternary_kernels [--rounds 5] [--json out/ternary_kernels.json]

For each linear of a TinyLlama-1.1B layer (2048->2560 qkv, 2048->2048 o, 2048->5632 gate/up,
5632->2048 down) and M = 1 (decode) and M = 128 (prefill) tokens, with seeded random weights:

* ternary (channel absmean scales) lowered by harden-lower-harden-ops with kernel=exact
  (pure linalg), kernel=vnni activations=f32 (C FIXED32) and kernel=vnni activations=int8
  (C INT8, BitNet numerics);
* IREE f32: harden-lower-linear's generic reading W as [N, K] (what unhardened models get);
  at M = 1 also torch-mlir's own aten.linear lowering (transpose + matmul), to check that
  the generic is not the slower form;
* torch eager f32 (`F.linear`).

Each module is compiled once; inputs live on the device. Two metrics, measured in the same
interleaved rounds (all variants once per round, medians over rounds):
* CPU ms per call on one thread (`time.thread_time` around IREE `local-sync` calls, torch
  with one thread) — robust on a shared machine;
* wall ms per call on two threads (IREE `local-task`, torch with two threads) — what a user
  sees, but inflated whenever other processes hold a core: the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_mlir import ir
from torch_mlir.dialects import func
from torch_mlir.dialects import torch as torch_d

from harden.backend.compile import compile_vmfb, lower_module_for_iree
from harden.core.diagnostics import DiagnosticSink
from harden.core.tensor_types import vtensor_type
from harden.core.weights import WeightStore
from harden.dialects.context import make_context
from harden.dialects.harden import build_ternary_linear
from harden.dialects.ternary_pack import pack_ternary_2bit
from harden.kernels import contract
from harden.pipelines.lower_to_linalg import TORCH_TO_LINALG
from harden.pipelines.pass_manager import run_steps
from harden.quant.ternary import ternarize

# (name, in_features, out_features) of one TinyLlama-1.1B decoder layer's linears.
SHAPES = [("qkv", 2048, 2560), ("o", 2048, 2048), ("gate/up", 2048, 5632), ("down", 5632, 2048)]
ROWS = (1, 128)
SECONDS_PER_SAMPLE = 0.25  # calls are repeated until a sample lasts this long


def one_op_module(x_shape, out_features: int, build) -> ir.Module:
    """main(x [M, K]) -> [M, out_features] = build(x, weights, result_type).result, one op on
    constants from a WeightStore (the linears these benchmarks time one at a time)."""
    with make_context(), ir.Location.unknown():
        module = ir.Module.create()
        weights = WeightStore()
        x_type, y_type = vtensor_type(x_shape, "f32"), vtensor_type((x_shape[0], out_features), "f32")
        with ir.InsertionPoint(module.body):
            f = func.FuncOp("main", ir.FunctionType.get([x_type], [y_type]))
        with ir.InsertionPoint(f.add_entry_block()):
            func.ReturnOp([build(f.arguments[0], weights, y_type).result])
    return module


def ternary_module(x_shape, weight: np.ndarray) -> ir.Module:
    """main(x) = harden.ternary_linear(x) with the absmean channel ternarization of `weight`."""
    tw = ternarize(weight, "absmean", "channel")
    n, k = weight.shape
    return one_op_module(x_shape, n, lambda x, weights, y_type: build_ternary_linear(
        x,
        weights.literal(pack_ternary_2bit(tw.ternary), "si8"),
        weights.literal(tw.scales, "f32"),
        in_features=k,
        out_features=n,
        group_size=tw.group_size,
        planes=1,
        scale_kind="channel",
        result_type=y_type,
    ))


def linear_module(x_shape, weight: np.ndarray) -> ir.Module:
    """main(x) = torch.aten.linear(x, W) with W an f32 constant (an unhardened linear)."""
    with make_context(), ir.Location.unknown():
        module = ir.Module.create()
        x_type, y_type = vtensor_type(x_shape, "f32"), vtensor_type((x_shape[0], weight.shape[0]), "f32")
        with ir.InsertionPoint(module.body):
            f = func.FuncOp("main", ir.FunctionType.get([x_type], [y_type]))
        with ir.InsertionPoint(f.add_entry_block()):
            w = WeightStore().literal(weight, "f32")
            none = torch_d.ConstantNoneOp(results=[ir.Type.parse("!torch.none")]).result
            y = torch_d.AtenLinearOp(y_type, f.arguments[0], w, none).result
            func.ReturnOp([y])
    return module


def lowered(module: ir.Module, form: str) -> str:
    """The module lowered to linalg in one of the forms below, as text for IREE."""
    if form == "torch-mlir":  # torch-mlir's aten.linear lowering, no harden pass
        assert run_steps(module.operation, TORCH_TO_LINALG, DiagnosticSink())
    elif form == "f32":  # harden-lower-linear's generic (part of harden-lower-to-linalg)
        lower_module_for_iree(module.operation)
    else:
        kernel, _, activations = form.partition("-")
        lower_module_for_iree(module.operation, kernel=kernel, activations=activations or "f32")
    return module.operation.get_asm()


class IreeCall:
    """main() of a compiled module on one IREE driver, with its input already on the device."""

    def __init__(self, vmfb: bytes, driver: str, x: np.ndarray):
        import iree.runtime as rt

        config = rt.Config(driver)
        context = rt.SystemContext(vm_modules=[rt.VmModule.copy_buffer(config.vm_instance, vmfb)], config=config)
        self._main = context.modules.module["main"]
        self._x = rt.asdevicearray(config.device, x)
        self._keep = context

    def __call__(self):
        return self._main(self._x)


class TorchCall:
    def __init__(self, weight: np.ndarray, x: np.ndarray):
        self._w, self._x = torch.from_numpy(weight), torch.from_numpy(x)

    def __call__(self):
        return torch.nn.functional.linear(self._x, self._w)


def per_call_ms(call, clock) -> float:
    """Milliseconds per call on `clock`, over enough calls to last SECONDS_PER_SAMPLE."""
    call()
    calls, start, now = 0, clock(), clock()
    while now - start < SECONDS_PER_SAMPLE or calls < 3:
        call()
        calls += 1
        now = clock()
    return (now - start) / calls * 1e3


@dataclass
class Variant:
    """One way to run a linear: a 1-thread CPU-time call and a 2-thread wall-time call."""

    name: str
    one_thread: object
    two_threads: object
    torch_threads: bool = False  # torch's own thread pool sets the thread count
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)

    def sample(self) -> None:
        if self.torch_threads:
            torch.set_num_threads(1)
        self.cpu_ms.append(per_call_ms(self.one_thread, time.thread_time))
        if self.torch_threads:
            torch.set_num_threads(2)
        self.wall_ms.append(per_call_ms(self.two_threads, time.perf_counter))


VARIANTS = ["exact", "vnni-f32", "vnni-int8", "f32", "torch-mlir"]
LABELS = {
    "exact": "ternary exact (linalg)",
    "vnni-f32": "ternary vnni f32 (C FIXED32)",
    "vnni-int8": "ternary vnni int8 (C INT8)",
    "f32": "IREE f32 (harden generic, W [N,K])",
    "torch-mlir": "IREE f32 (torch-mlir transpose+matmul)",
    "torch": "torch eager f32",
}


def build_variants(k: int, n: int, rows: int, rng, log) -> list[Variant]:
    weight = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    variants = []
    for form in VARIANTS:
        if form == "torch-mlir" and rows != 1:
            continue
        started = time.perf_counter()
        module = ternary_module(x.shape, weight) if form in ("exact", "vnni-f32", "vnni-int8") else linear_module(x.shape, weight)
        vmfb = compile_vmfb(lowered(module, form))
        log(f"  compiled {form} {rows}x{k}->{n} in {time.perf_counter() - started:.1f} s")
        variants.append(Variant(form, IreeCall(vmfb, "local-sync", x), IreeCall(vmfb, "local-task", x)))
    variants.append(Variant("torch", TorchCall(weight, x), TorchCall(weight, x), torch_threads=True))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--json", type=Path, help="also write the samples to this JSON file")
    args = parser.parse_args()
    reason = contract.unavailable_reason()
    if reason:
        raise SystemExit(f"the C kernels cannot run here: {reason}")
    log = lambda message: print(message, flush=True)
    rng = np.random.default_rng(0)
    configs = [(name, k, n, rows) for rows in ROWS for name, k, n in SHAPES]
    variants = {}
    for name, k, n, rows in configs:
        log(f"building {name} M={rows}")
        variants[(name, rows)] = build_variants(k, n, rows, rng, log)
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for config in variants.values():
            for variant in config:
                variant.sample()
        loads.append(os.getloadavg()[0])
        log(f"round {r + 1}/{args.rounds} done, load average {loads[-1]:.1f}")
    print_table(configs, variants, loads)
    if args.json:
        samples = {
            f"{name} M={rows}": {v.name: {"cpu_ms": v.cpu_ms, "wall_ms": v.wall_ms} for v in variants[(name, rows)]}
            for name, _, _, rows in configs
        }
        args.json.write_text(json.dumps({"cpu": contract.cpu_description(), "load_average": loads, "samples": samples}, indent=1))


def print_table(configs, variants, loads) -> None:
    print(f"\n{contract.cpu_description()}; load average (1 min) during the run: {min(loads):.1f} - {max(loads):.1f} on {os.cpu_count()} CPUs")
    for metric, title in (("cpu_ms", "1-thread CPU ms per call"), ("wall_ms", "2-thread wall ms per call")):
        for rows in ROWS:
            names = [name for name, _, _, r in configs if r == rows]
            header = [f"{name} {k}->{n}" for name, k, n, r in configs if r == rows]
            print(f"\n{title}, M={rows} (median of rounds; x = speed-up over IREE f32 generic)")
            print("| variant | " + " | ".join(header) + " |")
            print("|---" * (len(header) + 1) + "|")
            for form in [*VARIANTS, "torch"]:
                cells = []
                for name in names:
                    by_name = {v.name: v for v in variants[(name, rows)]}
                    if form not in by_name:
                        cells.append("—")
                        continue
                    value = statistics.median(getattr(by_name[form], metric))
                    base = statistics.median(getattr(by_name["f32"], metric))
                    cells.append(f"{value:.3f} ({base / value:.1f}x)")
                if any(c != "—" for c in cells):
                    print(f"| {LABELS[form]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
