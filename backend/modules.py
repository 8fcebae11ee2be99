"""Loading an MLIR file for execution: lowering if needed, IREE compilation with a cache."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch_mlir import ir

from harden.backend.cache import CompileCache
from harden.backend.compile import IREE_CPU_FLAGS, IreeModule, compile_vmfb, lower_module_for_iree
from harden.core import progress
from harden.core.graph import body_ops, functions
from harden.core.memory import available_memory_bytes, format_bytes
from harden.core.source import parse_module, read_source
from harden.core.tensor_types import tensor_info
from harden.core.weights import PARAMS_ATTR
from harden.dialects.context import make_context
from harden.frontend.importer import BUCKET_PREFIX, PREFILL_BUCKET_PREFIX, PREFILL_LAST
from harden.frontend.provenance import PROVENANCE_ATTR, Provenance, load_provenance
from harden.quant.precision import BITS_ATTR
from harden.schedule.ops import dtype_bytes

ENTRY_POINTS = ("prefill", "decode")


class ModuleError(Exception):
    """A module that cannot be run (missing function, unexpected signature); names it."""


@dataclass
class LoadedModule:
    """An MLIR file ready for IREE: its lowered text, parameters and signature."""

    path: Path
    lowered_text: str
    parameter_file: Path | None
    provenance: Provenance | None
    signature: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # function -> (inputs, results)
    seq_len: int  # prefill length S of prefill(tokens [1, S])
    max_seq_len: int  # KV-cache positions T of decode(token, pos, k_cache [L, 1, kv, T, hd], v_cache)
    decode_buckets: tuple[int, ...] = ()  # cache sizes B < T of the decode_<B> functions, ascending
    prefill_bucket: int | None = None  # B of prefill_<B> (caches of the smallest bucket), if there is one
    prefill_last: str | None = None  # the function returning one position's logits (prefill_last[_<B>]), if any
    schedule_summary: dict[str, dict] = field(default_factory=dict)  # function -> harden.schedule


def _needs_lowering(module: ir.Operation) -> bool:
    return any(
        op.operation.name.startswith(("torch.", "torch_c.", "harden."))
        for func in functions(module)
        for op in body_ops(func)
    )


def load_module(path: str | Path) -> LoadedModule:
    """Reads an MLIR file (torch/harden level or already lowered) and lowers it for IREE.

    Raises SourceError for an unreadable or non-text file, ir.MLIRError for unparsable text,
    LoweringError if lowering fails, ModuleError if prefill/decode are missing.
    """
    path = Path(path)
    context = make_context()
    text, _ = read_source(str(path))
    module = parse_module(text, str(path), context)
    attrs = module.attributes
    provenance = load_provenance(module) if PROVENANCE_ATTR in attrs else None
    parameter_file = path.parent / attrs[PARAMS_ATTR].maybe_downcast().value if PARAMS_ATTR in attrs else None
    schedule_summary = _schedule_summary(module)
    _check_cache_fits_memory(path, module)
    if _needs_lowering(module):
        lower_module_for_iree(module)
    signature, inputs, outputs = {}, {}, {}
    for func in functions(module):
        ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
        signature[func.sym_name.value] = (tuple(map(str, ftype.inputs)), tuple(map(str, ftype.results)))
        inputs[func.sym_name.value] = [tensor_info(t) for t in ftype.inputs]
        outputs[func.sym_name.value] = [tensor_info(t) for t in ftype.results]
    missing = [name for name in ENTRY_POINTS if name not in signature]
    if missing:
        raise ModuleError(f"'{path}' has no function '{missing[0]}' (harden-import writes prefill and decode)")
    results = {name: list(signature[name][1]) for name in ENTRY_POINTS}
    caches = list(signature["decode"][0][2:4])
    if (len(inputs["prefill"]) != 1 or len(inputs["decode"]) != 4 or len(results["prefill"]) != 3
            or results["decode"][1:] != caches or None in inputs["decode"][2:4] or inputs["decode"][2].rank != 5):
        raise ModuleError(f"'{path}' does not have harden-import's prefill(tokens) -> (logits, k_cache, v_cache) and "
                          "decode(token, pos, k_cache, v_cache) -> (logits, k_cache, v_cache)")
    max_seq_len = inputs["decode"][2].shape[3]
    buckets = []
    for name, args in inputs.items():
        size = name.removeprefix(BUCKET_PREFIX)
        if name.startswith(BUCKET_PREFIX) and size.isdigit():
            if len(args) != 4 or args[2].shape[3] != int(size) or not int(size) < max_seq_len:
                raise ModuleError(f"'{path}': function '{name}' is not decode over a cache of {size} positions below {max_seq_len}")
            buckets.append(int(size))
    prefill_bucket = _prefill_bucket(path, inputs, signature, buckets)
    return LoadedModule(
        path,
        # With locations, IREE's diagnostics point into the file the user gave.
        module.get_asm(assume_verified=True, enable_debug_info=True),
        parameter_file,
        provenance,
        signature,
        seq_len=inputs["prefill"][0].shape[1],
        max_seq_len=max_seq_len,
        decode_buckets=tuple(sorted(buckets)),
        prefill_bucket=prefill_bucket,
        prefill_last=_prefill_last(path, signature, inputs, outputs, prefill_bucket),
        schedule_summary=schedule_summary,
    )


def _check_cache_fits_memory(path: Path, module: ir.Operation) -> None:
    """Refuses, before lowering and compiling, a module whose KV caches cannot be held: each
    decode step passes the key and value caches in and gets the updated ones back, so a run
    holds at least twice their size (an 8B import at 131072 positions needs 64 GiB of f32)."""
    decode = next((f for f in functions(module) if f.sym_name.value == "decode"), None)
    if decode is None:
        return  # the missing function is reported after lowering, with the others
    ftype = ir.FunctionType(ir.TypeAttr(decode.attributes["function_type"]).value)
    caches = [tensor_info(t) for t in list(ftype.inputs)[2:4]]
    if len(caches) != 2 or None in caches or any(None in c.shape for c in caches):
        return
    needed = 2 * sum(dtype_bytes(c.dtype) * math.prod(c.shape) for c in caches)
    available = available_memory_bytes()
    if needed > available:
        positions = caches[0].shape[3] if caches[0].rank == 5 else "?"
        raise ModuleError(
            f"'{path}': its KV caches of {positions} positions need {format_bytes(needed)} per decode step (keys and values, "
            f"passed in and returned), more than the {format_bytes(available)} of memory available; import it with a smaller --max-seq-len"
        )


def _prefill_bucket(path: Path, inputs: dict, signature: dict, buckets: list[int]) -> int | None:
    """The B of a `prefill_<B>` function (prefill into the smallest decode bucket), checked."""
    names = [name for name in inputs if name.startswith(PREFILL_BUCKET_PREFIX) and name.removeprefix(PREFILL_BUCKET_PREFIX).isdigit()]
    if not names:
        return None
    (name,) = names
    size = int(name.removeprefix(PREFILL_BUCKET_PREFIX))
    if size != min(buckets, default=None) or signature[name][0] != signature["prefill"][0]:
        raise ModuleError(f"'{path}': function '{name}' is not prefill into the smallest decode bucket")
    return size


def _prefill_last(path: Path, signature: dict, inputs: dict, outputs: dict, prefill_bucket: int | None) -> str | None:
    """The name of the `prefill_last` function the engine's prefill pairs with, checked: the
    prefill's tokens and a position in, one row of logits and the same caches out."""
    name = f"{PREFILL_LAST}_{prefill_bucket}" if prefill_bucket else PREFILL_LAST
    if name not in signature:
        return None
    prefill = f"{PREFILL_BUCKET_PREFIX}{prefill_bucket}" if prefill_bucket else "prefill"
    (args, results), (prefill_args, prefill_results) = signature[name], signature[prefill]
    ok = len(args) == 2 and args[0] == prefill_args[0] and len(results) == 3 and results[1:] == prefill_results[1:]
    if ok:
        position, one_row, all_rows = inputs[name][1], outputs[name][0], outputs[prefill][0]
        ok = None not in (position, one_row, all_rows) and position.shape == (1,) and one_row.shape == (1, 1, all_rows.shape[-1])
    if not ok:
        raise ModuleError(f"'{path}': function '{name}' is not prefill(tokens, last) -> (logits of one position, k_cache, v_cache)")
    return name


def _schedule_summary(module: ir.Operation) -> dict[str, dict]:
    """Each function's static-schedule summary (`harden.schedule`, which survives the
    lowering), as plain Python values, by function name."""
    summaries = {}
    bits = ir.FloatAttr(module.attributes[BITS_ATTR]).value if BITS_ATTR in module.attributes else None
    for func in functions(module):
        if "harden.schedule" in func.attributes:
            summary = ir.DictAttr(func.attributes["harden.schedule"])
            summaries[func.sym_name.value] = {a.name: _python_value(a.attr) for a in summary}
            if bits is not None:  # what harden-ternarize stored, for the same line
                summaries[func.sym_name.value]["bits_per_weight"] = bits
    return summaries


def _python_value(attr: ir.Attribute):
    attr = attr.maybe_downcast()
    if isinstance(attr, ir.DictAttr):
        return {a.name: _python_value(a.attr) for a in attr}
    return attr.value if hasattr(attr, "value") else str(attr)


@dataclass
class CompiledModule:
    module: IreeModule
    compile_seconds: float
    cache_hit: bool


def compile_module(
    loaded: LoadedModule, cache: CompileCache | None, driver: str = "local-task", extra_flags: Sequence[str] = ()
) -> CompiledModule:
    """Compiles (or loads from the cache) a lowered module and loads it into IREE.
    `extra_flags` go to iree-compile after harden's own (and into the cache key)."""
    start = time.perf_counter()
    flags = [*IREE_CPU_FLAGS, *extra_flags]

    def compile_now() -> bytes:
        with progress.stage(f"compiling {loaded.path} with IREE (llvm-cpu)"):
            return compile_vmfb(loaded.lowered_text, extra_flags)

    if cache is None:
        vmfb, hit = compile_now(), False
    else:
        vmfb, hit = cache.get_or_compile(loaded.lowered_text, flags, compile_now)
    module = IreeModule(vmfb, driver=driver, parameter_file=loaded.parameter_file)
    return CompiledModule(module, time.perf_counter() - start, hit)
