"""Named real-world Llama shapes with seeded random weights (`--random-init`)."""

from __future__ import annotations

import hashlib

import torch

from harden.frontend.llama import Llama, Llama3RopeScaling, LlamaConfig
from harden.frontend.weights import FrontendError, WeightSource, build_reference_model, reference_weight_shapes

# Real published shapes (from the models' config.json) plus `tiny` for fast tests and
# `llama-100m`, a GPT-2-small-sized Llama (about 110M parameters) between the two.
SHAPES: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig(
        dim=64, hidden_dim=176, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=256,
        max_seq_len=256, rope_layout="half", tie_embeddings=False,
    ),
    "llama-100m": LlamaConfig(
        dim=768, hidden_dim=2048, n_layers=12, n_heads=12, n_kv_heads=4, vocab_size=32000,
        max_seq_len=2048, rope_layout="half", tie_embeddings=True,
    ),
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
    "tinyllama-1.1b": LlamaConfig(
        dim=2048, hidden_dim=5632, n_layers=22, n_heads=32, n_kv_heads=4, vocab_size=32000,
        max_seq_len=2048, norm_eps=1e-5, rope_theta=10000.0, rope_layout="half", tie_embeddings=False,
    ),
    # meta-llama/Llama-3.2-1B
    "llama-3.2-1b": LlamaConfig(
        dim=2048, hidden_dim=8192, n_layers=16, n_heads=32, n_kv_heads=8, vocab_size=128256,
        max_seq_len=131072, norm_eps=1e-5, rope_theta=500000.0, rope_layout="half",
        rope_scaling=Llama3RopeScaling(32.0, 1.0, 4.0, 8192), tie_embeddings=True, head_dim=64,
    ),
    # meta-llama/Llama-3.1-8B
    "llama-3.1-8b": LlamaConfig(
        dim=4096, hidden_dim=14336, n_layers=32, n_heads=32, n_kv_heads=8, vocab_size=128256,
        max_seq_len=131072, norm_eps=1e-5, rope_theta=500000.0, rope_layout="half",
        rope_scaling=Llama3RopeScaling(8.0, 1.0, 4.0, 8192), tie_embeddings=False, head_dim=128,
    ),
}
BIAS_STD = 0.02  # transformers' initializer_range for Llama
NORM_STD = 0.1  # norm weights around 1, not all 1, so a misplaced norm changes the output


class RandomWeights(WeightSource):
    """Seeded random weights: each tensor has its own generator seeded from (seed, name),
    so any tensor can be produced alone and in any order, always with the same values.

    Matrices are N(0, 1/in_features): for the real shapes (dim 2048) that is transformers'
    std 0.02, and small test shapes still get logits of order 1 instead of near-uniform ones.
    """

    def __init__(self, config: LlamaConfig, seed: int):
        super().__init__(reference_weight_shapes(config))
        self.seed = seed

    def _load(self, name: str) -> torch.Tensor:
        digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        shape = self.shapes[name]
        if name.endswith("norm.weight"):
            return 1.0 + NORM_STD * torch.randn(shape, generator=generator)
        std = shape[1] ** -0.5 if len(shape) == 2 else BIAS_STD
        return std * torch.randn(shape, generator=generator)


class RandomInit:
    """A named shape (`SHAPES`) with seeded random weights."""

    kind = "random"
    sha256 = None

    def __init__(self, name: str, seed: int = 0, config: LlamaConfig | None = None):
        if name not in SHAPES:
            raise FrontendError(f"unknown shape '{name}' (known: {', '.join(SHAPES)})")
        self.name = name
        self.seed = seed
        self.config = config or SHAPES[name]
        self.weights = RandomWeights(self.config, seed)

    def reference_model(self) -> Llama:
        return build_reference_model(self.config, self.weights)
