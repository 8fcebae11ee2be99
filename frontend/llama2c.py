"""Karpathy's llama2.c checkpoints (`.bin`, legacy version-0 format), read and written.

A header of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
a negative vocab_size means a separate classifier follows the other tensors), then f32
tensors stacked over layers, in the order of `llama2c_layout`. RoPE pairs adjacent
dimensions. The embedded stories260K (frontend/models/) is one.
"""

from __future__ import annotations

import struct
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from harden.core.files import atomic_path
from harden.frontend.llama import Llama, LlamaConfig
from harden.frontend.weights import FrontendError, WeightSource, build_reference_model, reference_weight_shapes, sha256_of_files

LLAMA2C_HEADER = struct.Struct("<7i")
LLAMA2C_V1_MAGIC = 0x616B3432  # "ak42": the newer export.py versions, a different layout
EMBEDDED_MODELS = {"stories260k": "stories260k.bin"}
STORIES260K_SHA256 = "9414d5a285453a7eab631713d171753232c978f6f97654211469aff8be93c8d6"


def embedded_model_path(name: str) -> Path:
    """The path of a checkpoint shipped in the package (see frontend/models/)."""
    return Path(str(resources.files("harden.frontend") / "models" / EMBEDDED_MODELS[name]))


def llama2c_layout(config: LlamaConfig) -> list[tuple[str | None, tuple[int, ...], bool]]:
    """(name, shape, stacked over layers) of a llama2.c file's tensors, in file order.

    Name None marks the two legacy RoPE tables [seq_len, head_dim/2] (cos, then sin),
    which the reference model does not read: it computes RoPE from positions.
    """
    c = config
    q_dim = c.n_heads * c.head_dim
    layout: list[tuple[str | None, tuple[int, ...], bool]] = [
        ("tok_embeddings.weight", (c.vocab_size, c.dim), False),
        ("attention_norm.weight", (c.dim,), True),
        ("attention.wq.weight", (q_dim, c.dim), True),
        ("attention.wk.weight", (c.kv_dim, c.dim), True),
        ("attention.wv.weight", (c.kv_dim, c.dim), True),
        ("attention.wo.weight", (c.dim, q_dim), True),
        ("ffn_norm.weight", (c.dim,), True),
        ("feed_forward.w1.weight", (c.hidden_dim, c.dim), True),
        ("feed_forward.w2.weight", (c.dim, c.hidden_dim), True),
        ("feed_forward.w3.weight", (c.hidden_dim, c.dim), True),
        ("norm.weight", (c.dim,), False),
        (None, (2, c.max_seq_len, c.head_dim // 2), False),
    ]
    if not c.tie_embeddings:
        layout.append(("output.weight", (c.vocab_size, c.dim), False))
    return layout


class Llama2cWeights(WeightSource):
    """Memory-mapped llama2.c tensors; layer l of a stacked [L, ...] tensor is one weight."""

    def __init__(self, path: Path, config: LlamaConfig):
        c = config
        self._offsets: dict[str, tuple[int, tuple[int, ...]]] = {}
        offset = 0
        for name, shape, per_layer in llama2c_layout(c):
            size = int(np.prod(shape))
            for i in range(c.n_layers if per_layer else 1):
                if name is not None:
                    self._offsets[f"layers.{i}.{name}" if per_layer else name] = (offset, shape)
                offset += size
        self.num_floats = offset
        self._path = path
        self._data: np.memmap | None = None
        super().__init__({n: s for n, (_, s) in self._offsets.items()})
        # Module order, so iteration matches `reference_weight_shapes`.
        self.shapes = {n: self.shapes[n] for n in reference_weight_shapes(c)}

    def _load(self, name: str) -> torch.Tensor:
        if self._data is None:
            self._data = np.memmap(self._path, dtype="<f4", mode="r", offset=LLAMA2C_HEADER.size)
        start, shape = self._offsets[name]
        size = int(np.prod(shape))
        return torch.from_numpy(np.array(self._data[start : start + size]).reshape(shape))


def write_llama2c(path: Path, config: LlamaConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """Writes a model as a llama2.c (version 0) checkpoint that `Llama2cCheckpoint` and
    llama2.c's run.c read; refuses configs the format cannot express."""
    c = config
    unsupported = [
        why
        for why, bad in (
            ("q/k/v or o biases", c.qkv_bias or c.o_bias),
            ("the half-split RoPE layout", c.rope_layout != "adjacent"),
            ("a RoPE theta other than 10000", c.rope_theta != 10000.0 or c.rope_scaling is not None),
            ("an RMSNorm epsilon other than 1e-5", c.norm_eps != 1e-5),
            ("a head_dim other than dim / n_heads", c.head_dim * c.n_heads != c.dim),
        )
        if bad
    ]
    if unsupported:
        raise FrontendError(f"a llama2.c checkpoint cannot hold a model with {unsupported[0]}")
    vocab = c.vocab_size if c.tie_embeddings else -c.vocab_size
    parts = [np.frombuffer(LLAMA2C_HEADER.pack(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab, c.max_seq_len), np.uint8)]
    for name, shape, per_layer in llama2c_layout(c):
        if name is None:  # computed as llama2.c's export.py does, in float32
            freqs = 1.0 / (10000.0 ** (torch.arange(0, c.head_dim, 2)[: c.head_dim // 2].float() / c.head_dim))
            angles = torch.outer(torch.arange(c.max_seq_len), freqs).float()
            tables = [torch.cos(angles).numpy(), torch.sin(angles).numpy()]
        else:
            names = [f"layers.{i}.{name}" for i in range(c.n_layers)] if per_layer else [name]
            tables = [state_dict[n].detach().cpu().numpy() for n in names]
        parts += [np.ascontiguousarray(t, dtype="<f4").view(np.uint8).reshape(-1) for t in tables]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for part in parts:
            f.write(part.tobytes())


class Llama2cCheckpoint:
    """A llama2.c `.bin` checkpoint (see the module docstring); `name` is set for embedded ones."""

    kind = "llama2c"
    given = None  # the path as the user gave it

    def __init__(self, path: Path, name: str | None = None):
        self.path = path
        self.name = name
        self.config = self._read_config(path)
        self.weights = Llama2cWeights(path, self.config)
        expected = LLAMA2C_HEADER.size + 4 * self.weights.num_floats
        size = path.stat().st_size
        if size != expected:
            c = self.config
            raise FrontendError(
                f"'{path}': file has {size} bytes but its llama2.c header (dim={c.dim}, "
                f"hidden_dim={c.hidden_dim}, n_layers={c.n_layers}, n_heads={c.n_heads}, "
                f"n_kv_heads={c.n_kv_heads}, vocab_size={c.vocab_size}, seq_len={c.max_seq_len}, "
                f"{'tied' if c.tie_embeddings else 'separate'} classifier) describes {expected} bytes"
            )

    @staticmethod
    def _read_config(path: Path) -> LlamaConfig:
        with open(path, "rb") as f:
            header = f.read(LLAMA2C_HEADER.size)
        if len(header) < LLAMA2C_HEADER.size:
            raise FrontendError(
                f"'{path}': truncated: {len(header)} bytes, a llama2.c header needs {LLAMA2C_HEADER.size}"
            )
        if struct.unpack_from("<I", header)[0] == LLAMA2C_V1_MAGIC:
            raise FrontendError(
                f"'{path}': llama2.c export version 1+ (magic 'ak42') is not supported; "
                "use the legacy version-0 format (export.py --version 0)"
            )
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = LLAMA2C_HEADER.unpack(header)
        if heads <= 0 or dim % heads:
            raise FrontendError(f"'{path}': not a llama2.c checkpoint header: dim {dim} is not a multiple of n_heads {heads}")
        try:
            return LlamaConfig(
                dim=dim,
                hidden_dim=hidden,
                n_layers=layers,
                n_heads=heads,
                n_kv_heads=kv_heads,
                vocab_size=abs(vocab),
                max_seq_len=seq_len,
                norm_eps=1e-5,
                rope_theta=10000.0,
                rope_layout="adjacent",
                tie_embeddings=vocab > 0,
            )
        except ValueError as e:
            raise FrontendError(f"'{path}': not a llama2.c checkpoint header: {e}") from None

    @property
    def sha256(self) -> str:
        return sha256_of_files([self.path])

    def reference_model(self) -> Llama:
        return build_reference_model(self.config, self.weights)


def open_embedded(name: str) -> Llama2cCheckpoint:
    return Llama2cCheckpoint(embedded_model_path(name), name=name)
