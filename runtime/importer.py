"""Importing a Llama into torch-dialect MLIR: `prefill` and `decode` in one module.

The model is exported with `torch.export` (no decompositions, so `torch.aten.linear`
stays for the passes to match) and imported with torch-mlir's FxImporter into a context
from `harden.core.context.make_context()`, so the result lives beside the harden dialect.

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

Provenance is one module attribute, `harden.provenance`, a dictionary:
    kind        "llama2c" | "hf" | "random"
    source      embedded model name (stories260k), absolute path, or shape name (tiny, ...)
    frontend    "reference" | "hf": whose modeling code was exported
    config      the LlamaConfig as canonical JSON (the model's own max_seq_len)
    seq_len     prefill length S;  max_seq_len: KV-cache positions T
    sha256      of the checkpoint's weight file(s) (absent for random init)
    seed        random-init seed (absent otherwise)
`load_provenance(module)` reads it back; `reference_model_from_provenance` and
`exported_model_from_provenance` rebuild the PyTorch models it came from.

Function signatures (KV cache layout [n_layers, 1, n_kv_heads, T, head_dim], f32):
    prefill(tokens: [1, S] si64) -> (logits [1, S, vocab], k_cache, v_cache)
    decode(token: [1, 1] si64, pos: [1] si64, k_cache, v_cache) -> (logits [1, 1, vocab], k_cache, v_cache)
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks

from harden.core.context import make_context
from harden.core.weights import PARAMS_ATTR, WEIGHT_NAME
from harden.dialects.harden import build_param
from harden.runtime.checkpoints import (
    EMBEDDED_MODELS,
    FrontendError,
    HfCheckpoint,
    Llama2cCheckpoint,
    MergedWeights,
    RandomInit,
    RenamedWeights,
    TensorWeights,
    WeightSource,
    build_reference_model,
    hf_weight_names,
    open_embedded,
)
from harden.runtime.llama import DecodeProgram, Llama, LlamaConfig, PrefillProgram

PROVENANCE_ATTR = "harden.provenance"
ENTRIES = ("prefill", "decode")
FRONTENDS = ("reference", "hf")
DEFAULT_SEQ_LEN = 64
DEFAULT_MAX_SEQ_LEN = 2048
# Above this many bytes of f32 weights, they go to a parameter file by default: inline
# weights print as hex, twice (one copy per function), so 32 MiB makes ~130 MB of text.
INLINE_WEIGHT_LIMIT = 32 << 20

Source = Llama2cCheckpoint | HfCheckpoint | RandomInit


def external_by_default(config: LlamaConfig) -> bool:
    """Whether a model's weights go to a parameter file unless told otherwise."""
    return 4 * config.num_parameters() > INLINE_WEIGHT_LIMIT


@dataclass(frozen=True)
class Provenance:
    """Where an imported module came from (see the module docstring)."""

    kind: str
    source: str
    frontend: str
    config: LlamaConfig
    seq_len: int
    max_seq_len: int
    sha256: str | None = None
    seed: int | None = None

    def to_attribute(self) -> ir.DictAttr:
        i64 = ir.IntegerType.get_signless(64)
        entries = {
            "kind": ir.StringAttr.get(self.kind),
            "source": ir.StringAttr.get(self.source),
            "frontend": ir.StringAttr.get(self.frontend),
            "config": ir.StringAttr.get(self.config.to_json()),
            "seq_len": ir.IntegerAttr.get(i64, self.seq_len),
            "max_seq_len": ir.IntegerAttr.get(i64, self.max_seq_len),
        }
        if self.sha256 is not None:
            entries["sha256"] = ir.StringAttr.get(self.sha256)
        if self.seed is not None:
            entries["seed"] = ir.IntegerAttr.get(i64, self.seed)
        return ir.DictAttr.get(entries)

    @classmethod
    def from_attribute(cls, attr: ir.Attribute) -> "Provenance":
        """Reads `to_attribute`'s dictionary back (raises FrontendError if it is malformed)."""
        try:
            entries = ir.DictAttr(attr)

            def value(name, required=True):
                if name not in entries:
                    if required:
                        raise KeyError(name)
                    return None
                return entries[name].maybe_downcast().value

            return cls(
                kind=value("kind"),
                source=value("source"),
                frontend=value("frontend"),
                config=LlamaConfig.from_json(value("config")),
                seq_len=value("seq_len"),
                max_seq_len=value("max_seq_len"),
                sha256=value("sha256", required=False),
                seed=value("seed", required=False),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise FrontendError(f"malformed '{PROVENANCE_ATTR}' attribute ({e.__class__.__name__}: {e})") from None


def load_provenance(module: ir.Module | ir.Operation) -> Provenance:
    """The provenance harden-import recorded on `module` (raises FrontendError if absent)."""
    op = module.operation
    if PROVENANCE_ATTR not in op.attributes:
        raise FrontendError(f"the module has no '{PROVENANCE_ATTR}' attribute (not written by harden-import)")
    return Provenance.from_attribute(op.attributes[PROVENANCE_ATTR])


def open_source_from_provenance(prov: Provenance) -> Source:
    """Opens the recorded source again and checks it is the same model (sha256, config)."""
    if prov.kind not in ("random", "llama2c", "hf"):
        raise FrontendError(f"unknown source kind '{prov.kind}' in the provenance")
    if prov.kind == "random":
        source = RandomInit(prov.source, seed=prov.seed or 0)
    elif prov.kind == "llama2c" and prov.source in EMBEDDED_MODELS:
        source = open_embedded(prov.source)
    elif not Path(prov.source).exists():
        raise FrontendError(f"'{prov.source}', the model this module was imported from, no longer exists")
    elif prov.kind == "llama2c":
        source = Llama2cCheckpoint(Path(prov.source))
    else:
        source = HfCheckpoint(Path(prov.source))
    if prov.sha256 is not None and source.sha256 != prov.sha256:
        raise FrontendError(f"'{prov.source}' changed since the import (sha256 differs)")
    if source.config != prov.config:
        raise FrontendError(f"'{prov.source}' has another configuration than the imported model")
    return source


def reference_model_from_provenance(prov: Provenance) -> Llama:
    """The reference PyTorch model of an imported module, with the recorded weights.

    Its `config.max_seq_len` is the module's KV-cache length, so `prefill(tokens)` returns
    caches of the module's shape.
    """
    source = open_source_from_provenance(prov)
    return build_reference_model(replace(source.config, max_seq_len=prov.max_seq_len), source.weights)


def exported_model_from_provenance(prov: Provenance) -> torch.nn.Module:
    """The PyTorch model whose code was exported (the reference `Llama`, or `HfLlama` over
    Hugging Face's `LlamaForCausalLM`), with the recorded weights; prefill/decode as in
    the module, `prefill(tokens, prov.max_seq_len)` for the module's cache length."""
    if prov.frontend == "reference":
        return reference_model_from_provenance(prov)
    return build_frontend_model(open_source_from_provenance(prov), "hf", fake=False)[0]


# ---------------------------------------------------------------------------------------
# Building the model to export


def _hf_parts(source: Source):
    """(HF config, HF-named weights including computed buffers) of a source."""
    if source.config.rope_layout != "half":
        raise FrontendError(
            "the hf frontend needs the half-split RoPE layout of Hugging Face checkpoints; "
            f"this {source.kind} model pairs adjacent dimensions (use --frontend reference)"
        )
    try:
        from harden.runtime import hf_llama
    except ImportError as e:
        raise FrontendError(f"the hf frontend needs transformers (pip install 'harden[hf]'): {e}") from None
    hf_cfg = (
        hf_llama.hf_config_from_dict(source.raw_config)
        if isinstance(source, HfCheckpoint)
        else hf_llama.hf_config(source.config)
    )
    weights = MergedWeights(
        RenamedWeights(source.weights, hf_weight_names(source.config)),
        TensorWeights(hf_llama.computed_buffers(hf_cfg)),
    )
    return hf_cfg, weights


def build_frontend_model(source: Source, frontend: str, fake: bool) -> tuple[torch.nn.Module, WeightSource, str]:
    """(model with prefill/decode, its weights by export name, state-dict prefix of the
    weights inside the export wrappers). With `fake`, parameters are fake tensors (for
    tracing only) and the weights stay in the source."""
    if frontend == "reference":
        if fake:
            with FakeTensorMode():
                model = Llama(source.config)
        else:
            model = source.reference_model()
        return model.eval(), source.weights, "model."

    hf_cfg, weights = _hf_parts(source)
    from transformers import LlamaForCausalLM

    from harden.runtime.hf_llama import HfLlama

    if fake:
        with FakeTensorMode():
            model = HfLlama(LlamaForCausalLM(hf_cfg))
    else:
        model = HfLlama(LlamaForCausalLM(hf_cfg))
        state = {name: weights.tensor(name) for name in weights.names()}
        model.hf.load_state_dict(state, strict=True)
    return model.eval(), weights, "model.hf."


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
            return build_param(name, info.ir_type).result
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


def _example_inputs(entry: str, config: LlamaConfig, seq_len: int, max_seq_len: int):
    if entry == "prefill":
        return (torch.zeros(1, seq_len, dtype=torch.int64),)
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
) -> ImportedModel:
    """Exports `source` and imports it as torch-dialect MLIR (see the module docstring).

    frontend: "reference" (default for llama2.c and random init) or "hf" (default for
    Hugging Face directories). seq_len (default 64) is the prefill length, max_seq_len
    (default min(model context, 2048)) the KV-cache length. external_weights defaults to
    True above INLINE_WEIGHT_LIMIT; then `params_file` (a name relative to the MLIR file)
    is recorded as `harden.params`. Raises FrontendError for bad arguments.
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
    if external_weights is None:
        external_weights = external_by_default(config)
    if external_weights and not params_file:
        raise FrontendError("external weights need a parameter file name")

    model, weights, prefix = build_frontend_model(source, frontend, fake=True)
    provenance = Provenance(
        kind=source.kind,
        source=source.name if source.name else str(source.path),
        frontend=frontend,
        config=config,
        seq_len=seq_len,
        max_seq_len=max_seq_len,
        sha256=source.sha256,
        seed=getattr(source, "seed", None),
    )
    hooks = _WeightHooks(weights, prefix, external_weights)
    importer = FxImporter(context=make_context(), hooks=hooks)
    programs = {"prefill": PrefillProgram(model, max_seq_len), "decode": DecodeProgram(model)}
    for entry in entries:
        with torch.no_grad():
            exported = torch.export.export(programs[entry], _example_inputs(entry, config, seq_len, max_seq_len))
        importer.import_program(_functional(exported), func_name=entry)

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

def write_safetensors(path: str | Path, weights: WeightSource, names: list[str]) -> None:
    """Writes tensors `names` of `weights` as a safetensors file, one tensor in memory at a
    time, atomically (a temporary file renamed into place)."""
    path = Path(path)
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        shape = weights.shapes[name]
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(encoded).to_bytes(8, "little"))
            f.write(encoded)
            for name in names:
                array = np.ascontiguousarray(weights.tensor(name).numpy(), dtype="<f4")
                if array.shape != tuple(weights.shapes[name]):
                    raise FrontendError(f"weight '{name}' has shape {list(array.shape)}, expected {list(weights.shapes[name])}")
                f.write(array.data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
