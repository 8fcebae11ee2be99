"""Hugging Face's own `LlamaForCausalLM` with the prefill/decode interface of the reference model.

harden-import exports Hugging Face's modeling code for HF checkpoints, so the graph is
what transformers computes, not our re-implementation of it. Four things stand between
that code and torch-mlir/IREE (docs/toolchain.md), handled here:
1. the rotary `inv_freq` is a non-persistent buffer, which the FX importers cannot
   resolve: the rotary embedding is replaced by a table of its own outputs (persistent
   buffers; IREE's sin and cos are also too inexact to compute it in the graph), and
   `make_exportable` makes every other buffer persistent;
2. exporting with autograd on leaves a set-grad higher-order op: callers export under
   `torch.no_grad()`;
3./4. HF's own mask code calls `torch.diff` and emits a scalar i1 literal, neither of
   which lowers: we pass a ready 4-D additive mask, which HF uses as is;
and HF's StaticCache writes with in-place `index_copy_` (no torch-mlir lowering): our
`ExplicitKVCache` holds the cache tensors given as inputs and writes with a pure scatter.

Attention runs through `grouped_attention` (registered with transformers' attention
interface as "harden"), HF's eager attention with the reference model's work: the
queries of a key/value group stacked as rows against their one head instead of
`repeat_kv` copying the cache once per query head of the group, and a prefill that reads
only its own keys (its mask is [S, S]) instead of the whole cache. Same arithmetic per
score; the graph of both frontends then does the same work per token.

The KV cache layout is the reference model's: [n_layers, 1, n_kv_heads, max_seq_len, head_dim].
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import LlamaConfig as HfLlamaConfig
from transformers import AttentionInterface, LlamaForCausalLM
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.models.llama import modeling_llama
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from harden.frontend.llama import LlamaConfig, apply_rope, rope_rotation, write_cache
from harden.frontend.weights import FrontendError


def hf_config(config: LlamaConfig) -> HfLlamaConfig:
    """The transformers config of a reference config (rope_layout must be "half")."""
    if config.rope_layout != "half":
        raise ValueError("Hugging Face Llama pairs RoPE dimensions as halves; rope_layout must be 'half'")
    if config.qkv_bias != config.o_bias:
        raise ValueError("Hugging Face Llama has one attention_bias for q, k, v and o")
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        s = config.rope_scaling
        rope.update(
            rope_type="llama3",
            factor=s.factor,
            low_freq_factor=s.low_freq_factor,
            high_freq_factor=s.high_freq_factor,
            original_max_position_embeddings=s.original_max_position_embeddings,
        )
    return HfLlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.dim,
        intermediate_size=config.hidden_dim,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        rope_parameters=rope,
        attention_bias=config.qkv_bias,
        tie_word_embeddings=config.tie_embeddings,
        attn_implementation="eager",
    )


def hf_config_from_dict(raw: dict, where: str) -> HfLlamaConfig:
    """The transformers config of a checkpoint's config.json (`where`), set up for export.
    transformers checks the fields' types itself (an integer rms_norm_eps is refused)."""
    try:
        config = HfLlamaConfig.from_dict(raw)
    except (TypeError, ValueError, StrictDataclassError) as e:
        cause = " ".join(str(e).split())  # transformers' message spans lines
        raise FrontendError(f"{where}: transformers refuses it: {cause or type(e).__name__}") from None
    config._attn_implementation = "eager"
    return config


class RotaryTable(nn.Module):
    """Hugging Face's rotary embedding as a table of its own outputs for positions
    0..length-1, looked up by position. IREE's CPU sin and cos lose about 3e-8 x |angle|
    (docs/toolchain.md); the table holds exactly what transformers computes.

    It returns the reference model's rotation factors (`rope_rotation` of the tables' first
    halves, which equal the second: HF repeats its frequencies), which the attention layers
    apply with `apply_rope` instead of HF's `rotate_half` (see `reference_rope`)."""

    def __init__(self, rotary: LlamaRotaryEmbedding, length: int):
        super().__init__()
        with torch.no_grad():
            cos, sin = rotary(torch.zeros(1), torch.arange(length)[None])
        self.register_buffer("cos", cos[0])
        self.register_buffer("sin", sin[0])

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.cos.shape[-1] // 2
        cos = F.embedding(position_ids, self.cos[:, :half]).to(x.dtype)
        sin = F.embedding(position_ids, self.sin[:, :half]).to(x.dtype)
        c, s = rope_rotation(cos, sin, "half")  # [batch, seq, 2, head_dim / 2]
        return c.unsqueeze(1), s.unsqueeze(1)  # against [batch, heads, seq, 2, head_dim / 2]


def _apply_reference_rope(q, k, c, s, unsqueeze_dim=1):
    """HF's `apply_rotary_pos_emb` for the factors `RotaryTable` returns: the same products
    and sums as x * cos + rotate_half(x) * sin (x2 * -sin is exactly -x2 * sin, and each sum
    has the same two terms), without rotate_half's negation and concatenation, so both
    frontends give the passes, the scheduler and IREE the same RoPE ops."""
    return apply_rope(q, (c, s), "half"), apply_rope(k, (c, s), "half")


@contextmanager
def reference_rope():
    """Runs HF's Llama attention with `_apply_reference_rope` (the module-level name its
    forward calls), only while a wrapped model runs: a plain `LlamaForCausalLM` elsewhere in
    the process keeps transformers' own."""
    original = modeling_llama.apply_rotary_pos_emb
    modeling_llama.apply_rotary_pos_emb = _apply_reference_rope
    try:
        yield
    finally:
        modeling_llama.apply_rotary_pos_emb = original


def computed_buffers(config: HfLlamaConfig, length: int) -> dict[str, torch.Tensor]:
    """Buffers harden computes instead of loading them (the rotary tables for `length`
    positions), by their name in the wrapped `LlamaForCausalLM`'s state dict."""
    table = RotaryTable(LlamaRotaryEmbedding(config), length)
    return {f"model.rotary_emb.{name}": buffer for name, buffer in table.named_buffers()}


def grouped_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """HF's eager attention without `repeat_kv` and over the keys the mask covers (see the
    module docstring). query [B, H, S, D], key/value [B, KV, T, D], mask [B, 1, S, T' <= T]."""
    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    if attention_mask is not None and attention_mask.shape[-1] < key.shape[2]:
        key, value = key[:, :, : attention_mask.shape[-1]], value[:, :, : attention_mask.shape[-1]]
    group = heads // kv_heads
    scores = torch.matmul(query.reshape(batch, kv_heads, group * seq, dim), key.transpose(2, 3)) * scaling
    scores = scores.view(batch, heads, seq, -1)
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    attention = torch.matmul(probabilities.view(batch, kv_heads, group * seq, -1), value)
    return attention.view(batch, heads, seq, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register("harden", grouped_attention)


def make_exportable(model: LlamaForCausalLM) -> LlamaForCausalLM:
    """Eval mode, harden's grouped attention, all buffers persistent (see the module docstring)."""
    model.config._attn_implementation = "harden"
    for module in model.modules():
        module._non_persistent_buffers_set.clear()
    return model.eval()


class _ExplicitKVLayer(CacheLayerMixin):
    """One layer's cache: given tensors, updated functionally at the given positions."""

    is_compileable = True
    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.positions = keys, values, positions
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        """The tensors exist from the start."""

    def update(self, key_states, value_states, *args, **kwargs):
        self.keys = write_cache(self.keys, key_states, self.positions)
        self.values = write_cache(self.values, value_states, self.positions)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[2], 0

    def get_seq_length(self) -> int:
        return self.keys.shape[2]

    def get_max_length(self) -> int:
        return self.keys.shape[2]


class ExplicitKVCache(Cache):
    """A transformers Cache over explicit [n_layers, 1, kv_heads, max_seq_len, head_dim]
    tensors; after the forward pass `stacked()` returns the updated tensors."""

    def __init__(self, k_cache: torch.Tensor, v_cache: torch.Tensor, positions: torch.Tensor):
        super().__init__(
            layers=[_ExplicitKVLayer(k_cache[i], v_cache[i], positions) for i in range(k_cache.shape[0])]
        )

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([layer.keys for layer in self.layers]), torch.stack([layer.values for layer in self.layers])


def _additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """[S, T] booleans -> [1, 1, S, T] additive float mask (0 or the float32 minimum)."""
    return torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[None, None]


class HfLlama(nn.Module):
    """A `LlamaForCausalLM` behind the reference model's prefill/decode interface."""

    def __init__(self, model: LlamaForCausalLM, max_seq_len: int | None = None):
        super().__init__()
        c = model.config
        self.max_seq_len = c.max_position_embeddings if max_seq_len is None else max_seq_len
        model.model.rotary_emb = RotaryTable(model.model.rotary_emb, self.max_seq_len)
        self.hf = make_exportable(model)
        self.n_layers = c.num_hidden_layers
        self.n_kv_heads = c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads

    def empty_cache(self, max_seq_len: int | None = None) -> torch.Tensor:
        length = self.max_seq_len if max_seq_len is None else max_seq_len
        return torch.zeros(self.n_layers, 1, self.n_kv_heads, length, self.head_dim)

    def _run(self, tokens, positions, k_cache, v_cache, allowed, last=None):
        cache = ExplicitKVCache(k_cache, v_cache, positions)
        with reference_rope():
            out = self.hf(
                input_ids=tokens,
                attention_mask=_additive_mask(allowed),
                position_ids=positions[None],
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=0 if last is None else last,  # a [1] tensor: hidden[:, last], as the reference
            )
        return (out.logits, *cache.stacked())

    def prefill(self, tokens: torch.Tensor, max_seq_len: int | None = None, last: torch.Tensor | None = None):
        """tokens [1, S] -> (logits [1, S, vocab], k_cache, v_cache), like `Llama.prefill`
        (with `last`, the logits of that position only)."""
        cache = self.empty_cache(max_seq_len)
        positions = torch.arange(tokens.shape[1])
        causal = positions[None, :] <= positions[:, None]  # the prompt's own keys only
        return self._run(tokens, positions, cache, cache, causal, last)

    def decode(self, token, pos, k_cache, v_cache):
        """token [1, 1] at pos [1] -> (logits [1, 1, vocab], k_cache, v_cache), like `Llama.decode`."""
        positions = pos.reshape(1)
        allowed = (torch.arange(k_cache.shape[3]) <= positions)[None, :]
        return self._run(token, positions, k_cache, v_cache, allowed)
