"""Where an imported module came from: the `harden.provenance` module attribute.

A dictionary:
    kind          "llama2c" | "hf" | "gguf" | "random"
    source        the model as named: a registered name (stories260k, smollm2-135m, a shape
                  such as tiny), or the path as the user gave it
    path          the checkpoint's absolute path at import time (files and directories only)
    frontend      "reference" | "hf": whose modeling code was exported
    config        the LlamaConfig as canonical JSON (the model's own max_seq_len)
    seq_len       prefill length S;  max_seq_len: KV-cache positions T
    sha256        of the checkpoint's weight file(s) (absent for random init)
    seed          random-init seed (absent otherwise)
    tensor_types  GGUF only: how many weights the file stores in each type ({"Q4_1": 210, ...})
    tokenizer     {kind, path, sha256} of the tokenizer (absent when the model has none)
`load_provenance(module)` reads it back; `exported_model_from_provenance` rebuilds the
PyTorch model it came from, finding the checkpoint by name, at its recorded path, at the
path as given (relative to the working directory or to the module's file) or where the
caller says (`--checkpoint`), and checking its sha256: a module survives a move of the
checkpoint, and a wrong file is never used silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch_mlir import ir

from harden.core.memory import available_memory_bytes
from harden.frontend.checkpoints import EMBEDDED_MODELS, PACKAGED_MODELS, Source, open_checkpoint
from harden.frontend.gguf import GgufCheckpoint
from harden.frontend.llama import Llama, LlamaConfig
from harden.frontend.llama2c import open_embedded
from harden.frontend.random_init import RandomInit
from harden.frontend.tokenizer import TextTokenizer, TokenizerSource, load_tokenizer
from harden.frontend.torch_models import build_frontend_model
from harden.frontend.weights import FrontendError, build_reference_model, reference_weight_shapes

PROVENANCE_ATTR = "harden.provenance"
KINDS = ("llama2c", "hf", "gguf", "random")


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
    path: str | None = None
    tensor_types: dict[str, int] | None = None
    tokenizer: TokenizerSource | None = None

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
        if self.path is not None:
            entries["path"] = ir.StringAttr.get(self.path)
        if self.tensor_types is not None:
            entries["tensor_types"] = ir.DictAttr.get({k: ir.IntegerAttr.get(i64, v) for k, v in self.tensor_types.items()})
        if self.tokenizer is not None:
            entries["tokenizer"] = ir.DictAttr.get({k: ir.StringAttr.get(v) for k, v in self.tokenizer.__dict__.items()})
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

            def dictionary(name):
                if name not in entries:
                    return None
                return {a.name: a.attr.maybe_downcast().value for a in ir.DictAttr(entries[name])}

            tokenizer = dictionary("tokenizer")
            return cls(
                kind=value("kind"),
                source=value("source"),
                frontend=value("frontend"),
                config=LlamaConfig.from_json(value("config")),
                seq_len=value("seq_len"),
                max_seq_len=value("max_seq_len"),
                sha256=value("sha256", required=False),
                seed=value("seed", required=False),
                path=value("path", required=False),
                tensor_types=dictionary("tensor_types"),
                tokenizer=TokenizerSource(**tokenizer) if tokenizer is not None else None,
            )
        except (KeyError, ValueError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise FrontendError(f"malformed '{PROVENANCE_ATTR}' attribute ({e.__class__.__name__}: {e})") from None


def load_provenance(module: ir.Module | ir.Operation) -> Provenance:
    """The provenance harden-import recorded on `module` (raises FrontendError if absent)."""
    op = module.operation
    if PROVENANCE_ATTR not in op.attributes:
        raise FrontendError(f"the module has no '{PROVENANCE_ATTR}' attribute (not written by harden-import)")
    return Provenance.from_attribute(op.attributes[PROVENANCE_ATTR])


def _checkpoint_path(prov: Provenance, checkpoint: Path | None, module_dir: Path | None) -> Path:
    """Where the recorded checkpoint is now (see the module docstring)."""
    if checkpoint is not None:
        if not checkpoint.exists():
            raise FrontendError(f"--checkpoint '{checkpoint}': no such file or directory")
        return checkpoint
    candidates = [Path(p) for p in (prov.path, prov.source) if p]
    if module_dir is not None and not Path(prov.source).is_absolute():
        candidates.append(module_dir / prov.source)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    digest = f" (sha256 {prov.sha256[:16]}...)" if prov.sha256 else ""
    raise FrontendError(
        f"this module needs the checkpoint it was imported from, '{prov.source}'{digest}, which is not at "
        f"'{prov.path or prov.source}' any more; pass --checkpoint PATH"
    )


def open_source_from_provenance(prov: Provenance, checkpoint: Path | None = None, module_dir: Path | None = None) -> Source:
    """Opens the recorded source again and checks it is the same model (sha256, config).
    `checkpoint` overrides where the file is; `module_dir` is where the module's file is."""
    if prov.kind not in KINDS:
        raise FrontendError(f"unknown source kind '{prov.kind}' in the provenance")
    if prov.kind == "random":
        source = RandomInit(prov.source, seed=prov.seed or 0)
    elif prov.kind == "llama2c" and prov.source in EMBEDDED_MODELS and checkpoint is None:
        source = open_embedded(prov.source)
    elif prov.kind == "gguf" and prov.source in PACKAGED_MODELS and checkpoint is None:
        source = GgufCheckpoint(PACKAGED_MODELS[prov.source].path(prov.source), name=prov.source)
    else:
        source = open_checkpoint(_checkpoint_path(prov, checkpoint, module_dir))
        if source.kind != prov.kind:
            raise FrontendError(f"'{source.path}' is a {source.kind} checkpoint; the module was imported from a {prov.kind} one")
    if prov.sha256 is not None and source.sha256 != prov.sha256:
        raise FrontendError(f"'{source.path}' is not the checkpoint the module was imported from (sha256 differs)")
    if source.config != prov.config:
        raise FrontendError(f"'{prov.source}' has another configuration than the imported model")
    return source


def tokenizer_from_provenance(prov: Provenance, tokenizer: Path | None = None, checkpoint: Path | None = None) -> TextTokenizer:
    """The module's tokenizer; raises FrontendError when it has none. A tokenizer stored in
    the checkpoint (GGUF, Hugging Face) moves with --checkpoint."""
    if prov.tokenizer is None and tokenizer is None:
        raise FrontendError(f"the module records no tokenizer for '{prov.source}' (import it with --tokenizer FILE, or use --prompt-ids)")
    if prov.tokenizer is None:
        raise FrontendError("--tokenizer replaces a recorded tokenizer; this module records none (import it with --tokenizer FILE)")
    location = tokenizer
    if location is None and checkpoint is not None and prov.tokenizer.kind in ("gguf", "hf"):
        location = checkpoint
    if location is None and prov.tokenizer.kind == "gguf" and prov.source in PACKAGED_MODELS:
        location = PACKAGED_MODELS[prov.source].path(prov.source)
    return load_tokenizer(prov.tokenizer, prov.config.vocab_size, location)


def reference_memory_shortfall(prov: Provenance) -> str | None:
    """Why the PyTorch model of `prov` cannot be built here, or None: its f32 weights exceed
    the memory available now (an 8B model's 32 GB on a 24 GiB machine). Checked before
    loading it: the alternative is the kernel's OOM kill."""
    needed = 4 * sum(math.prod(shape) for shape in reference_weight_shapes(prov.config).values())
    available = available_memory_bytes()
    if needed <= available:
        return None
    return (f"the PyTorch model of '{prov.source}' needs {needed / 2**30:.1f} GiB of f32 weights, more than the "
            f"{available / 2**30:.1f} GiB of memory available")


def reference_model_from_provenance(prov: Provenance, checkpoint: Path | None = None, module_dir: Path | None = None) -> Llama:
    """The reference PyTorch model of an imported module, with the recorded weights.

    Its `config.max_seq_len` is the module's KV-cache length, so `prefill(tokens)` returns
    caches of the module's shape.
    """
    source = open_source_from_provenance(prov, checkpoint, module_dir)
    return build_reference_model(replace(source.config, max_seq_len=prov.max_seq_len), source.weights)


def exported_model_from_provenance(prov: Provenance, checkpoint: Path | None = None, module_dir: Path | None = None) -> torch.nn.Module:
    """The PyTorch model whose code was exported (the reference `Llama`, or `HfLlama` over
    Hugging Face's `LlamaForCausalLM`), with the recorded weights; prefill/decode as in
    the module, `prefill(tokens, prov.max_seq_len)` for the module's cache length."""
    if prov.frontend == "reference":
        return reference_model_from_provenance(prov, checkpoint, module_dir)
    return build_frontend_model(open_source_from_provenance(prov, checkpoint, module_dir), "hf", fake=False, max_seq_len=prov.max_seq_len)[0]
