"""The PyTorch model of a source, as it is exported and as it runs as the reference.

Two modeling codes: harden's reference `Llama` (frontend/llama.py), or Hugging Face's own
`LlamaForCausalLM` behind the same prefill/decode interface (frontend/hf_llama.py, which
needs transformers). For export the parameters are fake tensors (only shapes are traced;
the weights enter through the importer's hook); to run, they hold the source's weights.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from harden.frontend.checkpoints import Source
from harden.frontend.hf import HfCheckpoint, hf_weight_names
from harden.frontend.llama import Llama, rope_tables
from harden.frontend.weights import FrontendError, MergedWeights, build_reference_model, RenamedWeights, TensorWeights, WeightSource


def _hf_parts(source: Source, max_seq_len: int):
    """(HF config, HF-named weights including computed buffers) of a source, for a KV cache
    of `max_seq_len` positions."""
    if source.config.rope_layout != "half":
        raise FrontendError(
            "the hf frontend needs the half-split RoPE layout of Hugging Face checkpoints; "
            f"this {source.kind} model pairs adjacent dimensions (use --frontend reference)"
        )
    from harden.frontend import hf_llama
    hf_cfg = (
        hf_llama.hf_config_from_dict(source.raw_config, f"'{source.path / 'config.json'}'")
        if isinstance(source, HfCheckpoint)
        else hf_llama.hf_config(source.config)
    )
    weights = MergedWeights(
        RenamedWeights(source.weights, hf_weight_names(source.config)),
        TensorWeights(hf_llama.computed_buffers(hf_cfg, max_seq_len)),
    )
    return hf_cfg, weights


def build_frontend_model(source: Source, frontend: str, fake: bool, max_seq_len: int) -> tuple[torch.nn.Module, WeightSource, str]:
    """(model with prefill/decode for a KV cache of `max_seq_len` positions, its weights and
    computed buffers by export name, state-dict prefix of the weights inside the export
    wrappers). With `fake`, parameters are fake tensors (for tracing only) and the weights
    stay in the source."""
    if frontend == "reference":
        config = replace(source.config, max_seq_len=max_seq_len)
        weights = MergedWeights(source.weights, TensorWeights(rope_tables(config, max_seq_len)))
        if fake:
            with FakeTensorMode():
                model = Llama(config)
        else:
            model = build_reference_model(config, source.weights)
        return model.eval(), weights, "model."

    hf_cfg, weights = _hf_parts(source, max_seq_len)
    from transformers import LlamaForCausalLM

    from harden.frontend.hf_llama import HfLlama

    if fake:
        with FakeTensorMode():
            model = HfLlama(LlamaForCausalLM(hf_cfg), max_seq_len)
    else:
        model = HfLlama(LlamaForCausalLM(hf_cfg), max_seq_len)
        state = {name: weights.tensor(name) for name in weights.names()}
        model.hf.load_state_dict(state, strict=True)
    return model.eval(), weights, "model.hf."
