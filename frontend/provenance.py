"""Where an imported module came from: the `harden.provenance` module attribute.

A dictionary:
    kind        "llama2c" | "hf" | "random"
    source      embedded model name (stories260k), absolute path, or shape name (tiny, ...)
    frontend    "reference" | "hf": whose modeling code was exported
    config      the LlamaConfig as canonical JSON (the model's own max_seq_len)
    seq_len     prefill length S;  max_seq_len: KV-cache positions T
    sha256      of the checkpoint's weight file(s) (absent for random init)
    seed        random-init seed (absent otherwise)
`load_provenance(module)` reads it back; `reference_model_from_provenance` and
`exported_model_from_provenance` rebuild the PyTorch models it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch_mlir import ir

from harden.frontend.checkpoints import Source
from harden.frontend.hf import HfCheckpoint
from harden.frontend.llama import Llama, LlamaConfig
from harden.frontend.llama2c import EMBEDDED_MODELS, Llama2cCheckpoint, open_embedded
from harden.frontend.random_init import RandomInit
from harden.frontend.torch_models import build_frontend_model
from harden.frontend.weights import FrontendError, build_reference_model

PROVENANCE_ATTR = "harden.provenance"


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
