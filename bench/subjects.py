"""The engines under test, each able to run one timed round, with the weight bytes it reads per token.

* torch eager f32 and bf16: the reference `Llama` that harden-import exported (rebuilt from
  the module's provenance, `harden.frontend.importer`), the bf16 one a cast copy of it;
  PyTorch's threads are set by the caller (2 on this machine).
* IREE f32 (unhardened) and IREE ternary (hardened): harden-opt's outputs compiled with
  IREE for this CPU and run on the `local-task` driver (`harden.backend.modules/engines`).
* llama.cpp TQ2_0 (bench/llama_cpp.py): a child process per round.

A round is one prefill of the S-token prompt (timed) followed by `decode_steps` single-token
decode steps at positions S, S+1, ... on that prompt's KV cache (each timed); its decode
rate is 1 / median step time. Over the round, `CpuMeter` records the share of the machine's
CPU time the engine used and the share other processes (or the hypervisor: steal time)
took: on a shared machine the second says how much a number is worth.

Weight bytes per decoded token are read off what each engine actually holds, never from a
formula: the torch module's parameters (their dtype's element size), the constants and
parameter globals the lowered `decode` function loads (with their element types: packed
i8 codes, f32 scales, f32 embedding/classifier...), and the tensors of the GGUF file. A
table that is only gathered from (the token embedding, unless it is also the classifier)
counts one row: a decode step reads one row of it.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from harden.backend.cache import CompileCache
from harden.backend.engines import Engine, IreeEngine, TorchEngine
from harden.backend.modules import LoadedModule, compile_module
from harden.frontend.llama import Llama

CORES = 2


@dataclass
class RoundResult:
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    cpu_share: float  # of the machine's CPU time over the round, used by the engine
    others_share: float  # ... used by other processes and the hypervisor (steal)


def _busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent busy (everything but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and its finished children (llama-bench)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """`with CpuMeter() as m:` -> m.own_share, m.others_share of the machine over the block."""

    def __enter__(self):
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc):
        wall, busy, own = (end - start for end, start in zip((time.perf_counter(), _busy_seconds(), _own_seconds()), self._start))
        capacity = wall * CORES
        self.own_share = own / capacity
        self.others_share = max(busy - own, 0.0) / capacity


class Subject(ABC):
    label: str
    weight_bytes_per_token: int

    @abstractmethod
    def run_round(self, prompt: np.ndarray, decode_steps: int) -> RoundResult: ...

    def close(self) -> None:
        """Releases the engine's memory before the next shape is loaded."""


class EngineSubject(Subject):
    """A harden `Engine` (torch or IREE) timed in this process."""

    def __init__(self, label: str, engine: Engine, weight_bytes_per_token: int):
        self.label, self.engine, self.weight_bytes_per_token = label, engine, weight_bytes_per_token

    def run_round(self, prompt, decode_steps):
        with CpuMeter() as cpu:
            start = time.perf_counter()
            _, state = self.engine.prefill(prompt, last=prompt.shape[1] - 1)  # as llama-bench: the last token's logits
            prefill_seconds = time.perf_counter() - start
            steps = []
            for pos in range(prompt.shape[1], prompt.shape[1] + decode_steps):
                start = time.perf_counter()
                _, state = self.engine.decode(1, pos, state)
                steps.append(time.perf_counter() - start)
        return RoundResult(prompt.shape[1] / prefill_seconds, 1.0 / statistics.median(steps), cpu.own_share, cpu.others_share)

    def close(self):
        self.engine = None


# ---------------------------------------------------------------------------------------
# torch


def bf16_copy(model: Llama) -> Llama:
    """`model` with bf16 weights, built on the meta device so no f32 copy is made on the way."""
    with torch.device("meta"):
        copy = Llama(model.config)
    copy.load_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, assign=True)
    return copy.eval()


def torch_bytes_per_token(model: Llama) -> int:
    """Bytes of the module's parameters (each tensor once), the untied embedding as one row."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        nbytes = p.numel() * p.element_size()
        if name == "tok_embeddings.weight" and model.output is not None:
            nbytes //= p.shape[0]
        total += nbytes
    return total


def torch_subjects(model: Llama, seq_len: int, max_seq_len: int) -> list[Subject]:
    subjects = []
    for label, m in (("torch eager f32", model), ("torch eager bf16", bf16_copy(model))):
        engine = TorchEngine(m, seq_len, max_seq_len, label)
        subjects.append(EngineSubject(label, engine, torch_bytes_per_token(m)))
    return subjects


# ---------------------------------------------------------------------------------------
# IREE


def _tensor_bytes(tensor_type) -> tuple[int, int]:
    """(bytes, rows) of a static ranked tensor type."""
    t = tensor_type.maybe_downcast()
    shape = list(t.shape)
    return math.prod(shape) * t.element_type.width // 8, (shape[0] if shape else 1)


def _only_gathered(value) -> bool:
    """Whether every use of `value` is a `tensor.extract` (an element or row gather)."""
    uses = list(value.uses)
    return bool(uses) and all(getattr(use.owner, "operation", use.owner).name == "tensor.extract" for use in uses)


def iree_bytes_per_token(lowered_text: str, function: str = "decode") -> int:
    """Bytes of the non-splat constants and parameter globals that `function` of a lowered
    module loads, a table that is only gathered from counted as one row."""
    from torch_mlir import ir

    from harden.core.graph import functions
    from harden.dialects.context import make_context

    with make_context():
        module = ir.Module.parse(lowered_text)
        globals_ = {}
        for op in module.body.operations:
            if op.operation.name == "ml_program.global":
                globals_[ir.StringAttr(op.attributes["sym_name"]).value] = ir.TypeAttr(op.attributes["type"]).value
        func = next(f for f in functions(module.operation) if f.sym_name.value == function)
        total, loaded_globals = 0, set()

        def visit(op):
            nonlocal total
            name = op.operation.name
            if name == "arith.constant" and isinstance(op.result.type.maybe_downcast(), ir.RankedTensorType):
                value = op.attributes["value"]
                if isinstance(value, ir.DenseElementsAttr) and value.is_splat:
                    return
                nbytes, rows = _tensor_bytes(op.result.type)
            elif name == "ml_program.global_load_const":
                symbol = ir.FlatSymbolRefAttr(op.attributes["global"]).value
                if symbol in loaded_globals:
                    return
                loaded_globals.add(symbol)
                nbytes, rows = _tensor_bytes(globals_[symbol])
            else:
                return
            total += nbytes // rows if _only_gathered(op.result) else nbytes

        for block in func.regions[0].blocks:
            for op in block.operations:
                visit(op)
        return total


def iree_subject(label: str, loaded: LoadedModule, cache: CompileCache | None, extra_flags=()) -> tuple[Subject, float, bool]:
    """(subject, IREE compile seconds, cache hit) for a pipeline output."""
    compiled = compile_module(loaded, cache, extra_flags=extra_flags)
    engine = IreeEngine.of(compiled.module, loaded, label)
    return EngineSubject(label, engine, iree_bytes_per_token(loaded.lowered_text)), compiled.compile_seconds, compiled.cache_hit


# ---------------------------------------------------------------------------------------
# llama.cpp


class LlamaCppSubject(Subject):
    def __init__(self, label: str, bench, weight_bytes_per_token: int):
        self.label, self.bench, self.weight_bytes_per_token = label, bench, weight_bytes_per_token

    def run_round(self, prompt, decode_steps):
        with CpuMeter() as cpu:
            prefill, decode = self.bench.run(prompt.shape[1], decode_steps)
        return RoundResult(prefill, decode, cpu.own_share, cpu.others_share)
