"""Where a model's weights come from: tensors by name, produced on demand.

Every model source gives a `LlamaConfig` and its weights by name in the reference model's
naming (`harden.frontend.llama`), read lazily one tensor at a time (memory-mapped files,
or seeded generation), so a multi-gigabyte model can be streamed into a parameter file
without ever being held whole. Every problem with the input is a `FrontendError` with a
one-line message naming the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from harden.frontend.llama import Llama, LlamaConfig, rope_tables


class FrontendError(Exception):
    """A model that cannot be loaded or imported, with a message fit for one error line."""


class WeightSource:
    """Tensors by name, produced on demand. Subclasses implement `_load`."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = shapes

    def names(self) -> list[str]:
        return list(self.shapes)

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor `name` as contiguous float32 on the CPU."""
        if name not in self.shapes:
            raise KeyError(f"no weight named '{name}'")
        t = self._load(name)
        return t.to(torch.float32).contiguous()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: self.tensor(name) for name in self.shapes}

    def _load(self, name: str) -> torch.Tensor:
        raise NotImplementedError


def reference_weight_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """The state dict of `Llama(config)`: names and shapes, in module order."""
    c = config
    q_dim = c.n_heads * c.head_dim
    shapes = {"tok_embeddings.weight": (c.vocab_size, c.dim)}
    for i in range(c.n_layers):
        p = f"layers.{i}."
        shapes[p + "attention_norm.weight"] = (c.dim,)
        for proj, rows in (("wq", q_dim), ("wk", c.kv_dim), ("wv", c.kv_dim)):
            shapes[p + f"attention.{proj}.weight"] = (rows, c.dim)
            if c.qkv_bias:
                shapes[p + f"attention.{proj}.bias"] = (rows,)
        shapes[p + "attention.wo.weight"] = (c.dim, q_dim)
        if c.o_bias:
            shapes[p + "attention.wo.bias"] = (c.dim,)
        shapes[p + "ffn_norm.weight"] = (c.dim,)
        shapes[p + "feed_forward.w1.weight"] = (c.hidden_dim, c.dim)
        shapes[p + "feed_forward.w2.weight"] = (c.dim, c.hidden_dim)
        shapes[p + "feed_forward.w3.weight"] = (c.hidden_dim, c.dim)
    shapes["norm.weight"] = (c.dim,)
    if not c.tie_embeddings:
        shapes["output.weight"] = (c.vocab_size, c.dim)
    return shapes


def build_reference_model(config: LlamaConfig, weights: WeightSource) -> Llama:
    """A `Llama` in eval mode holding `weights` (reference names)."""
    model = Llama(config)
    model.load_state_dict({**weights.state_dict(), **rope_tables(config, config.max_seq_len)}, strict=True)
    return model.eval()


def sha256_of_files(paths: list[Path]) -> str:
    """One digest over the files' bytes in the given order (for one file: its sha256sum)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


class SafetensorsWeights(WeightSource):
    """Tensors of safetensors files by stored name (read lazily through safetensors' mmap)."""

    def __init__(self, files: dict[str, Path], shapes: dict[str, tuple[int, ...]]):
        super().__init__(shapes)
        self._files = files
        self._handles: dict[Path, object] = {}

    def _load(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        path = self._files[name]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path].get_tensor(name)


class RenamedWeights(WeightSource):
    """Another source's tensors under other names (`names` maps new name -> source name)."""

    def __init__(self, source: WeightSource, names: dict[str, str]):
        super().__init__({new: source.shapes[old] for new, old in names.items()})
        self._source = source
        self._names = names

    def _load(self, name: str) -> torch.Tensor:
        return self._source.tensor(self._names[name])


class TensorWeights(WeightSource):
    """Tensors already in memory."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__({name: tuple(t.shape) for name, t in tensors.items()})
        self._tensors = tensors

    def _load(self, name: str) -> torch.Tensor:
        return self._tensors[name]


class MergedWeights(WeightSource):
    """The union of sources with distinct names."""

    def __init__(self, *sources: WeightSource):
        self._owner = {name: source for source in sources for name in source.shapes}
        super().__init__({name: source.shapes[name] for name, source in self._owner.items()})

    def _load(self, name: str) -> torch.Tensor:
        return self._owner[name].tensor(name)
