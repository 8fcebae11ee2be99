"""A readable reference Llama in plain PyTorch, with prefill and KV-cache decode entry points.

The model covers the Llama family as checkpoints ship it: token embedding, RMSNorm,
rotary position embeddings (RoPE) in both pair layouts, grouped-query attention with
separate q/k/v/o projections (optional biases), a SwiGLU MLP and a tied or separate
classifier. It is written to be exported: `torch.export` + torch-mlir turn every step
into linalg that IREE compiles, so it avoids data-dependent shapes, in-place updates and
non-persistent buffers (the FX importers cannot resolve those). RoPE tables are computed
once per model as tables (buffers) the forward pass looks positions up in.

RoPE pair layouts (`LlamaConfig.rope_layout`):
* "adjacent": dimensions (2i, 2i+1) of a head form a rotated pair, as in Meta's original
  code and llama2.c;
* "half": dimensions (i, i + head_dim/2) form a pair, as in Hugging Face, whose
  conversion script permutes the rows of wq and wk accordingly.
The two are the same model up to that row permutation of wq/wk (and of the q/k biases).

KV cache: two tensors `k_cache`, `v_cache` of shape
    [n_layers, 1, n_kv_heads, max_seq_len, head_dim]   (layer, batch, kv head, position, dim)
holding the rotated keys and the values of positions 0..max_seq_len-1; positions that
were not written yet hold zeros and are masked out by position. `prefill` returns a fresh
cache for its prompt, `decode` returns the cache with one more position written.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

ROPE_LAYOUTS = ("adjacent", "half")


@dataclass(frozen=True)
class Llama3RopeScaling:
    """Llama 3.1's frequency-dependent RoPE scaling (Hugging Face rope_type "llama3")."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class LlamaConfig:
    """The shape and numerics of a Llama model.

    `max_seq_len` is the longest sequence the model was built for (llama2.c's seq_len,
    Hugging Face's max_position_embeddings); the KV cache of an export may be shorter.
    `head_dim` defaults to dim // n_heads.
    """

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    hidden_dim: int
    max_seq_len: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_layout: str = "adjacent"
    rope_scaling: Llama3RopeScaling | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    tie_embeddings: bool = True
    head_dim: int = field(default=0)

    def __post_init__(self):
        if self.head_dim == 0 and self.n_heads > 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Why this configuration cannot describe a Llama model, or None."""
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "hidden_dim", "max_seq_len", "head_dim"):
            if getattr(self, name) <= 0:
                return f"{name} must be positive, got {getattr(self, name)}"
        if self.n_heads % self.n_kv_heads:
            return f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
        if self.head_dim % 2:
            return f"head_dim must be even for rotary embeddings, got {self.head_dim}"
        if self.rope_layout not in ROPE_LAYOUTS:
            return f"rope_layout must be one of {', '.join(ROPE_LAYOUTS)}, got '{self.rope_layout}'"
        return None

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def num_parameters(self) -> int:
        """Number of weights (all tensors of the state dict)."""
        q, kv = self.n_heads * self.head_dim, self.kv_dim
        attention = self.dim * (q + 2 * kv) + q * self.dim
        attention += (q + 2 * kv) * self.qkv_bias + self.dim * self.o_bias
        mlp = 3 * self.dim * self.hidden_dim
        per_layer = attention + mlp + 2 * self.dim
        classifier = 0 if self.tie_embeddings else self.vocab_size * self.dim
        return self.vocab_size * self.dim + self.n_layers * per_layer + self.dim + classifier

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): stable bytes for the same config."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "LlamaConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LlamaConfig fields: {', '.join(unknown)}")
        if data.get("rope_scaling") is not None:
            data["rope_scaling"] = Llama3RopeScaling(**data["rope_scaling"])
        return cls(**data)


def rope_inverse_frequencies(config: LlamaConfig) -> torch.Tensor:
    """theta^(-2i/head_dim) for i < head_dim/2, in float32 exactly as Hugging Face computes it,
    then Llama 3 scaling if configured."""
    hd = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    # Long wavelengths are stretched by `factor`, short ones kept, the band between is
    # interpolated smoothly (transformers' _compute_llama3_parameters).
    low_freq_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_freq_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    # logical_and, not `&`: torch-mlir has no lowering for aten.__and__.
    is_medium = torch.logical_and(wavelen >= high_freq_wavelen, wavelen <= low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def rope_tables(config: LlamaConfig, length: int) -> dict[str, torch.Tensor]:
    """cos and sin of position * frequency for positions 0..length-1, each [length,
    head_dim/2], computed as Hugging Face computes them (the f32 product, torch's sin/cos).

    The model looks its rows up instead of computing sin/cos in the graph: IREE's CPU sin
    and cos lose about 3e-8 x |angle| (2e-4 at position 8192, docs/toolchain.md), while
    these tables are exact to f32 rounding. Buffers of the model, so an export carries them
    as constants (`ROPE_TABLES`, filled in by the frontend like weights)."""
    angles = torch.arange(length).float()[:, None] * rope_inverse_frequencies(config)[None, :]
    return {"rope_cos": angles.cos(), "rope_sin": angles.sin()}


def rope_rotation(cos: torch.Tensor, sin: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors `apply_rope` multiplies a pair's first and second element by: a pair (x1, x2)
    becomes x1 * c + x2 * s with c = (cos, sin) and s = (-sin, cos) along the pair axis, laid
    out as x's head dimension viewed as pairs ([seq, 2, head_dim/2] for "half", [seq,
    head_dim/2, 2] for "adjacent"). Built once per call of the model, not per layer."""
    axis = -2 if layout == "half" else -1
    return torch.stack((cos, sin), dim=axis), torch.stack((-sin, cos), dim=axis)


def apply_rope(x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor], layout: str) -> torch.Tensor:
    """Rotates each pair of x [batch, heads, seq, head_dim] by its angle (`rope_rotation`).

    x1 * cos - x2 * sin and x1 * sin + x2 * cos, written as broadcasts of the pair's two
    elements against both factors: the same products and sums (x2 * -sin is exactly -(x2 *
    sin)), but no concatenation, so IREE fuses the rotation with its neighbours instead of
    the 8 dispatches per layer (4 products, 4 copies into the concatenation) of the form
    with torch.cat (bench/profile_decode)."""
    c, s = rotation
    if layout == "half":
        pairs = x.unflatten(-1, (2, -1))
        x1, x2 = pairs[..., 0:1, :], pairs[..., 1:2, :]
    else:
        pairs = x.unflatten(-1, (-1, 2))
        x1, x2 = pairs[..., 0:1], pairs[..., 1:2]
    return (x1 * c + x2 * s).flatten(-2)


def write_cache(cache: torch.Tensor, new: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`cache[:, :, positions] = new` as a pure function.

    cache is [B, kv_heads, max_seq_len, head_dim], new is [B, kv_heads, len(positions), head_dim].
    One position (decode) is a select against a one-hot mask of the position axis: exact, and
    elementwise for IREE. A scatter there makes IREE stage a copy of the layer's whole cache on
    the stack (262,144 bytes for tinyllama-1.1b, over llvm-cpu's 32 KiB limit). Several
    positions (prefill) are a scatter along the position axis, which torch-mlir lowers to
    tm_tensor.scatter (aten.index_copy has no torch-mlir lowering).
    """
    if positions.shape[0] == 1:
        written = (torch.arange(cache.shape[2]) == positions).view(1, 1, -1, 1)
        return torch.where(written, new, cache)
    index = positions.view(1, 1, -1, 1).expand_as(new)
    return cache.scatter(2, index, new)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    """Grouped-query attention: n_heads query heads share n_kv_heads key/value heads."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        q_dim = config.n_heads * config.head_dim
        self.wq = nn.Linear(config.dim, q_dim, bias=config.qkv_bias)
        self.wk = nn.Linear(config.dim, config.kv_dim, bias=config.qkv_bias)
        self.wv = nn.Linear(config.dim, config.kv_dim, bias=config.qkv_bias)
        self.wo = nn.Linear(q_dim, config.dim, bias=config.o_bias)

    def forward(self, x, rotation, positions, k_cache, v_cache, allowed, keys_from_cache):
        """x [1, S, dim] at `positions` [S] (`rotation`: their `rope_rotation`); allowed [S, T]
        says which keys each query sees.

        The keys are the whole cache after writing the new ones (T = max_seq_len) when
        `keys_from_cache`, else only the S new ones (T = S: a prompt needs no older keys).
        Returns (output, k_cache, v_cache) with the new keys and values written at `positions`.
        """
        c = self.config
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q = apply_rope(q, rotation, c.rope_layout)
        k = apply_rope(k, rotation, c.rope_layout)
        k_cache = write_cache(k_cache, k, positions)
        v_cache = write_cache(v_cache, v, positions)
        keys, values = (k_cache, v_cache) if keys_from_cache else (k, v)

        # Query head h reads key/value head h // group. The group's queries are stacked as
        # rows against their one key/value head rather than the keys copied per query head:
        # a copy would write group x the cache every step (7 of tinyllama-1.1b's 63 ms).
        # Scores are viewed per query head again for the mask and softmax.
        group = c.n_heads // c.n_kv_heads
        q = q.reshape(batch, c.n_kv_heads, group * seq, c.head_dim)
        scores = torch.matmul(q, keys.transpose(2, 3)) * (c.head_dim**-0.5)
        scores = scores.view(batch, c.n_heads, seq, -1)
        # A finite fill keeps the IR free of infinities; exp() of it is exactly 0.
        scores = torch.where(allowed, scores, torch.finfo(scores.dtype).min)
        probabilities = F.softmax(scores, dim=-1).view(batch, c.n_kv_heads, group * seq, -1)
        attention = torch.matmul(probabilities, values).view(batch, c.n_heads, seq, c.head_dim)
        out = attention.transpose(1, 2).reshape(batch, seq, c.n_heads * c.head_dim)
        return self.wo(out), k_cache, v_cache


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); Hugging Face calls w1 gate, w3 up and w2 down."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.w2 = nn.Linear(config.hidden_dim, config.dim, bias=False)
        self.w3 = nn.Linear(config.dim, config.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x, rotation, positions, k_cache, v_cache, allowed, keys_from_cache):
        h, k_cache, v_cache = self.attention(
            self.attention_norm(x), rotation, positions, k_cache, v_cache, allowed, keys_from_cache
        )
        x = x + h
        return x + self.feed_forward(self.ffn_norm(x)), k_cache, v_cache


class Llama(nn.Module):
    """The reference Llama. Weight names follow Meta/llama2.c (tok_embeddings, layers.N.attention.wq, ...).

    Entry points: `prefill(tokens)` and `decode(token, pos, k_cache, v_cache)`; `forward(tokens)`
    returns only prefill's logits. See the module docstring for the cache layout.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        for name, table in rope_tables(config, config.max_seq_len).items():
            self.register_buffer(name, table)

    def classifier_weight(self) -> torch.Tensor:
        return self.tok_embeddings.weight if self.output is None else self.output.weight

    def empty_cache(self, max_seq_len: int | None = None, batch: int = 1) -> torch.Tensor:
        """A zero KV cache (one of k or v) for `max_seq_len` positions (default: config.max_seq_len).

        Exported modules use batch 1; PyTorch callers (training, batched sampling) may use more.
        """
        c = self.config
        length = c.max_seq_len if max_seq_len is None else max_seq_len
        return torch.zeros(c.n_layers, batch, c.n_kv_heads, length, c.head_dim)

    def _run(self, tokens, positions, k_cache, v_cache, allowed, keys_from_cache, last=None):
        cos, sin = F.embedding(positions, self.rope_cos), F.embedding(positions, self.rope_sin)
        x = self.tok_embeddings(tokens)
        if x.dtype != cos.dtype:  # a model cast to bf16 (benchmarks) rotates in its own dtype
            cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        rotation = rope_rotation(cos, sin, self.config.rope_layout)
        k_layers, v_layers = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, rotation, positions, k_cache[i], v_cache[i], allowed, keys_from_cache)
            k_layers.append(k)
            v_layers.append(v)
        if last is not None:  # only the rows whose logits are wanted go through the classifier
            x = x[:, last]
        logits = F.linear(self.norm(x), self.classifier_weight())
        return logits, torch.stack(k_layers), torch.stack(v_layers)

    def prefill(self, tokens: torch.Tensor, max_seq_len: int | None = None, last: torch.Tensor | None = None):
        """tokens [1, S] (int64) at positions 0..S-1 -> (logits [1, S, vocab], k_cache, v_cache).

        The returned cache has `max_seq_len` positions (default config.max_seq_len), the
        first S of them written. With `last` ([1] int64), the logits are those of position
        `last` only ([1, 1, vocab]): what generation needs after a (padded) prompt, without
        the classifier's work for the other S - 1 positions.
        """
        seq = tokens.shape[1]
        positions = torch.arange(seq)
        causal = positions[:, None] >= positions[None, :]
        cache = self.empty_cache(max_seq_len, batch=tokens.shape[0])
        if cache.dtype != self.tok_embeddings.weight.dtype:  # a model cast to bf16 keeps a bf16 cache
            cache = cache.to(self.tok_embeddings.weight.dtype)
        if seq > cache.shape[3]:
            raise ValueError(f"prompt of {seq} tokens does not fit a KV cache of {cache.shape[3]} positions")
        return self._run(tokens, positions, cache, cache, causal, keys_from_cache=False, last=last)

    def decode(self, token: torch.Tensor, pos: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor):
        """One step: token [1, 1] at position pos ([1], int64) attends to cache positions <= pos.

        Returns (logits [1, 1, vocab], k_cache, v_cache) with position pos written. The
        cache length (max_seq_len) is read from k_cache; pos must be below it.
        """
        positions = pos.reshape(1)
        allowed = (torch.arange(k_cache.shape[3]) <= positions)[None, :]
        return self._run(token, positions, k_cache, v_cache, allowed, keys_from_cache=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [1, S, vocab] of a prompt (prefill without the cache)."""
        return self.prefill(tokens, max_seq_len=tokens.shape[1])[0]


class PrefillProgram(nn.Module):
    """`model.prefill` as a module with a fixed cache length, for torch.export."""

    def __init__(self, model: nn.Module, max_seq_len: int):
        super().__init__()
        self.model = model
        self.max_seq_len = max_seq_len

    def forward(self, tokens):
        return self.model.prefill(tokens, self.max_seq_len)


class PrefillLastProgram(PrefillProgram):
    """`model.prefill` returning only the logits of position `last`, for torch.export."""

    def forward(self, tokens, last):
        return self.model.prefill(tokens, self.max_seq_len, last=last)


class DecodeProgram(nn.Module):
    """`model.decode` as a module, for torch.export."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, token, pos, k_cache, v_cache):
        return self.model.decode(token, pos, k_cache, v_cache)


@torch.no_grad()
def greedy_generate(model, prompt: list[int], steps: int, max_seq_len: int | None = None) -> list[int]:
    """Greedy continuation of `prompt` for `steps` tokens with prefill + cached decode."""
    logits, k_cache, v_cache = model.prefill(torch.tensor([prompt]), max_seq_len)
    generated = []
    for step in range(steps):
        generated.append(int(logits[0, -1].argmax()))
        if step + 1 < steps:
            pos = torch.tensor([len(prompt) + step])
            logits, k_cache, v_cache = model.decode(torch.tensor([[generated[-1]]]), pos, k_cache, v_cache)
    return generated
