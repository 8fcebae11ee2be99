"""Importing a Llama into torch-dialect MLIR: `prefill` and `decode` in one module.

The model is exported with `torch.export` (no decompositions, so `torch.aten.linear`
stays for the passes to match) and imported with torch-mlir's FxImporter into a context
from `harden.dialects.context.make_context()`, so the result lives beside the harden dialect.

The export traces a model whose parameters are fake tensors: only shapes are needed to
trace. The weights come in through an importer hook, one tensor at a time, by name:
* inline: a `torch.vtensor.literal` with a `DenseElementsAttr` (readable by the passes
  through numpy), tagged `harden.name = "<weight name>"`;
* external (large models): a `harden.param {param_name = "<weight name>"}` op, the tensor
  streamed into a safetensors file beside the MLIR, named by the module attribute
  `harden.params` (a file name relative to the MLIR file). A tensor used by both
  functions is stored once. No weight is ever printed into MLIR text.

Weight names are the reference model's (`layers.0.attention.wq.weight`) when the
reference model is exported and Hugging Face's (`model.layers.0.self_attn.q_proj.weight`)
when HF's modeling code is.

The provenance (`harden.provenance`, see provenance.py) records where the module came from.

Function signatures (KV cache layout [n_layers, 1, n_kv_heads, T, head_dim], f32):
    prefill(tokens: [1, S] si64) -> (logits [1, S, vocab], k_cache, v_cache)
    decode(token: [1, 1] si64, pos: [1] si64, k_cache, v_cache) -> (logits [1, 1, vocab], k_cache, v_cache)
    decode_<B>(token, pos, k_cache [.., B, ..], v_cache [.., B, ..]) -> (logits, k_cache, v_cache)
    prefill_<B>(tokens) -> (logits, k_cache [.., B, ..], v_cache [.., B, ..])   (B: the smallest bucket)
    prefill_last(tokens: [1, S] si64, last: [1] si64) -> (logits [1, 1, vocab], k_cache, v_cache)
    prefill_last_<B>(tokens, last) -> (logits [1, 1, vocab], k_cache [.., B, ..], v_cache [.., B, ..])

The `decode_<B>` functions are decode over a cache of only B < T positions (decode
buckets): a decode step writes and attends over every position of the cache it is given,
so a runtime that holds the cache at the smallest bucket above the position pays for the
positions filled so far (within 2x), not for the capacity. By default they are 256, 512,
1024, ... below T when T >= 1024 (a 2048-position cache costs as much at position 150 as a
256-position import); `decode_buckets` chooses others, () none. `prefill_<B>` is prefill
returning caches of the smallest bucket's size, so that a prompt does not write T positions.

`prefill_last` (entry "prefill_last", one of the defaults) is prefill returning the logits
of one position, `last`, instead of all S: what generation needs after a prompt padded to
S tokens, and what llama.cpp computes for a prompt (`llama-bench -p` asks for the last
token's logits only). The classifier is the largest matrix of a small model (SmolLM2's
49152 x 576), so computing its S - 1 unused rows costs a fifth of a prompt's work. With
decode buckets it is `prefill_last_<B>`, writing caches of the smallest bucket, as
`prefill_<B>`; without, it writes T positions, as `prefill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks

from harden.core import progress
from harden.core.safetensors_writer import write_safetensors
from harden.core.weights import PARAMS_ATTR, WEIGHT_NAME, param_op
from harden.dialects.context import make_context
from harden.frontend.checkpoints import Source
from harden.frontend.hf import HfCheckpoint
from harden.frontend.llama import DecodeProgram, LlamaConfig, PrefillLastProgram, PrefillProgram
from harden.frontend.llama2c import EMBEDDED_MODELS
from harden.frontend.provenance import PROVENANCE_ATTR, Provenance
from harden.frontend.tokenizer import TextTokenizer, check_vocabulary
from harden.frontend.torch_models import build_frontend_model
from harden.frontend.weights import FrontendError, WeightSource

ENTRIES = ("prefill", "decode", "prefill_last")
BUCKET_PREFIX = "decode_"
PREFILL_BUCKET_PREFIX = "prefill_"
PREFILL_LAST = "prefill_last"  # and prefill_last_<B> with decode buckets
SMALLEST_BUCKET = 256
FRONTENDS = ("reference", "hf")
DEFAULT_SEQ_LEN = 64
DEFAULT_MAX_SEQ_LEN = 2048
# Above this many bytes of f32 weights, they go to a parameter file by default: inline
# weights print as hex, twice (one copy per function), so 32 MiB makes ~130 MB of text.
INLINE_WEIGHT_LIMIT = 32 << 20

def external_by_default(config: LlamaConfig) -> bool:
    """Whether a model's weights go to a parameter file unless told otherwise."""
    return 4 * config.num_parameters() > INLINE_WEIGHT_LIMIT


# ---------------------------------------------------------------------------------------
# Import


class _WeightHooks(FxImporterHooks):
    """Resolves every parameter/buffer of the exported program to a named weight, inline
    or as a `harden.param` (see the module docstring)."""

    def __init__(self, weights: WeightSource, prefix: str, external: bool):
        self.weights = weights
        self.prefix = prefix
        self.external = external
        self.used: dict[str, None] = {}  # weight names in order of first use
        self._attrs: dict[str, ir.DenseElementsAttr] = {}

    def resolve_input(self, gni, value, info):
        target = info.input_spec.target
        name = target[len(self.prefix) :] if target.startswith(self.prefix) else target
        if name not in self.weights.shapes:
            raise FrontendError(f"the exported model reads '{name}', which the checkpoint does not provide")
        self.used[name] = None
        if self.external:
            return param_op(name, info.ir_type).result
        if name not in self._attrs:
            self._attrs[name] = ir.DenseElementsAttr.get(self.weights.tensor(name).numpy())
        op = torch_d.ValueTensorLiteralOp(self._attrs[name], results=[info.ir_type])
        op.operation.attributes[WEIGHT_NAME] = ir.StringAttr.get(name)
        return op.result


@dataclass
class ImportedModel:
    """The result of `import_model`: the module and, for external weights, what to write."""

    module: ir.Module
    provenance: Provenance
    weights: WeightSource
    external_weights: list[str] | None  # names for the parameter file, None when inline

    def mlir_text(self) -> str:
        return self.module.operation.get_asm(assume_verified=True)


def _mutates(exported: torch.export.ExportedProgram) -> bool:
    return any(
        node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload) and node.target._schema.is_mutable
        for node in exported.graph.nodes
    )


def _functional(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program without in-place ops. torch.export's graph keeps every op undecomposed
    (aten.linear included); it is functional already unless the model updates tensors in
    place, and only then is it re-traced with an empty decomposition table, which
    functionalizes but costs twice the export itself."""
    return exported.run_decompositions({}) if _mutates(exported) else exported


def default_decode_buckets(max_seq_len: int) -> tuple[int, ...]:
    """256, 512, ... below `max_seq_len` when it is 1024 or more, else none."""
    if max_seq_len < 4 * SMALLEST_BUCKET:
        return ()
    buckets, size = [], SMALLEST_BUCKET
    while size < max_seq_len:
        buckets.append(size)
        size *= 2
    return tuple(buckets)


def _example_inputs(entry: str, config: LlamaConfig, seq_len: int, max_seq_len: int):
    if entry == "prefill":
        return (torch.zeros(1, seq_len, dtype=torch.int64),)
    if entry == PREFILL_LAST:
        return (torch.zeros(1, seq_len, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
    shape = (config.n_layers, 1, config.n_kv_heads, max_seq_len, config.head_dim)
    # Two distinct tensors: torch.export merges an input passed twice into one argument.
    return (torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64), torch.zeros(shape), torch.zeros(shape))


def import_model(
    source: Source,
    *,
    frontend: str | None = None,
    entries: tuple[str, ...] = ENTRIES,
    seq_len: int | None = None,
    max_seq_len: int | None = None,
    external_weights: bool | None = None,
    params_file: str | None = None,
    tokenizer: TextTokenizer | None = None,
    decode_buckets: tuple[int, ...] | None = None,
) -> ImportedModel:
    """Exports `source` and imports it as torch-dialect MLIR (see the module docstring).

    frontend: "reference" (default for llama2.c, GGUF and random init) or "hf" (default
    for Hugging Face directories). seq_len (default 64) is the prefill length, max_seq_len
    (default min(model context, 2048)) the KV-cache length. external_weights defaults to
    True above INLINE_WEIGHT_LIMIT; then `params_file` (a name relative to the MLIR file)
    is recorded as `harden.params`. `tokenizer` is recorded in the provenance (its ids
    must fit the vocabulary). `decode_buckets` (default `default_decode_buckets`) adds a
    `decode_<B>` function per size, each above the prefill length and below max_seq_len.
    Raises FrontendError for bad arguments.
    """
    config = source.config
    frontend = frontend or ("hf" if isinstance(source, HfCheckpoint) else "reference")
    if frontend not in FRONTENDS:
        raise FrontendError(f"unknown frontend '{frontend}' (known: {', '.join(FRONTENDS)})")
    if not entries or len(set(entries)) != len(entries) or not set(entries) <= set(ENTRIES):
        raise FrontendError(f"entries must be distinct names among {', '.join(ENTRIES)}, got '{','.join(entries)}'")
    if max_seq_len is None:
        max_seq_len = min(config.max_seq_len, DEFAULT_MAX_SEQ_LEN)
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, max_seq_len)
    if seq_len < 1 or max_seq_len < 1:
        raise FrontendError("--seq-len and --max-seq-len must be positive")
    if max_seq_len > config.max_seq_len:
        raise FrontendError(f"--max-seq-len {max_seq_len} exceeds the model's context length {config.max_seq_len}")
    if seq_len > max_seq_len:
        raise FrontendError(f"--seq-len {seq_len} exceeds --max-seq-len {max_seq_len}")
    if decode_buckets is None:
        decode_buckets = tuple(b for b in default_decode_buckets(max_seq_len) if b > seq_len) if "decode" in entries else ()
    bad = [b for b in decode_buckets if not seq_len < b < max_seq_len]
    if bad or len(set(decode_buckets)) != len(decode_buckets):
        raise FrontendError(f"decode buckets must be distinct sizes above --seq-len {seq_len} and below --max-seq-len {max_seq_len}, got {','.join(map(str, decode_buckets))}")
    if decode_buckets and "decode" not in entries:
        raise FrontendError("decode buckets need the decode entry")
    if external_weights is None:
        external_weights = external_by_default(config)
    if external_weights and not params_file:
        raise FrontendError("external weights need a parameter file name")

    if tokenizer is not None:
        check_vocabulary(tokenizer, config.vocab_size)

    model, weights, prefix = build_frontend_model(source, frontend, fake=True, max_seq_len=max_seq_len)
    path = getattr(source, "path", None)
    provenance = Provenance(
        kind=source.kind,
        source=source.name or getattr(source, "given", None) or str(path),
        frontend=frontend,
        config=config,
        seq_len=seq_len,
        max_seq_len=max_seq_len,
        sha256=source.sha256,
        seed=getattr(source, "seed", None),
        path=str(path) if path is not None and source.name not in EMBEDDED_MODELS else None,
        tensor_types=getattr(source, "tensor_types", None),
        tokenizer=tokenizer.source if tokenizer is not None else None,
    )
    hooks = _WeightHooks(weights, prefix, external_weights)
    importer = FxImporter(context=make_context(), hooks=hooks)
    programs = {"prefill": PrefillProgram, "decode": lambda model, length: DecodeProgram(model), PREFILL_LAST: PrefillLastProgram}
    # (function name, entry, cache positions)
    exports = [(entry, entry, max_seq_len) for entry in entries if entry != PREFILL_LAST]
    exports += [(f"{BUCKET_PREFIX}{size}", "decode", size) for size in sorted(decode_buckets)]
    smallest = min(decode_buckets, default=None)
    if smallest and "prefill" in entries:
        exports.append((f"{PREFILL_BUCKET_PREFIX}{smallest}", "prefill", smallest))
    if PREFILL_LAST in entries:
        exports.append((f"{PREFILL_LAST}_{smallest}", PREFILL_LAST, smallest) if smallest else (PREFILL_LAST, PREFILL_LAST, max_seq_len))
    for name, entry, length in exports:
        with progress.stage(f"exporting and importing {name}"), torch.no_grad():
            exported = torch.export.export(programs[entry](model, length), _example_inputs(entry, config, seq_len, length))
            importer.import_program(_functional(exported), func_name=name)

    module = importer.module
    with module.context:
        module.operation.attributes[PROVENANCE_ATTR] = provenance.to_attribute()
        if external_weights:
            module.operation.attributes[PARAMS_ATTR] = ir.StringAttr.get(params_file)
    if not module.operation.verify():
        raise FrontendError("the imported module does not verify")
    return ImportedModel(module, provenance, weights, list(hooks.used) if external_weights else None)


# ---------------------------------------------------------------------------------------
# Parameter files

def write_parameter_file(path: str | Path, weights: WeightSource, names: list[str]) -> None:
    """Writes tensors `names` of `weights` as an f32 safetensors file, one tensor in memory
    at a time, atomically, with a progress bar on a terminal."""
    entries = [(name, np.dtype(np.float32), tuple(weights.shapes[name])) for name in names]
    with progress.bar(desc=f"writing {Path(path).name}", total=len(names), unit="tensor") as bar:
        try:
            write_safetensors(path, entries, lambda name: weights.tensor(name).numpy(), on_tensor=lambda _: bar.update())
        except ValueError as e:
            raise FrontendError(str(e)) from None
