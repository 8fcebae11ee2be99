"""Engines that run a Llama's `prefill` and `decode`: PyTorch eager, or an IREE module.

Both keep the same contract as the imported module (see frontend/importer.py):
    prefill(tokens [1, S] int64) -> (logits [1, S, vocab], k_cache, v_cache)
    decode(token [1, 1] int64, pos [1] int64, k_cache, v_cache) -> (logits [1, 1, vocab], ...)
The caches stay in the engine's own form (torch tensors, IREE device arrays) between
calls; only logits come back as numpy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from harden.backend.compile import IreeModule


@dataclass
class EngineState:
    k_cache: object
    v_cache: object


class Engine(ABC):
    """A model that can prefill a [1, S] prompt and decode one token at a time."""

    label: str
    seq_len: int  # the prefill length S (static in compiled modules)
    max_seq_len: int  # positions of the KV cache

    @abstractmethod
    def prefill(self, tokens: np.ndarray) -> tuple[np.ndarray, EngineState]: ...

    @abstractmethod
    def decode(self, token: int, pos: int, state: EngineState) -> tuple[np.ndarray, EngineState]: ...


class TorchEngine(Engine):
    """PyTorch eager on the CPU (the model harden-import exported)."""

    def __init__(self, model: torch.nn.Module, seq_len: int, max_seq_len: int, label: str = "torch"):
        self.model = model.eval()
        self.seq_len, self.max_seq_len, self.label = seq_len, max_seq_len, label

    @torch.no_grad()
    def prefill(self, tokens):
        logits, k, v = self.model.prefill(torch.from_numpy(np.asarray(tokens, np.int64)), self.max_seq_len)
        return logits.float().numpy(), EngineState(k, v)

    @torch.no_grad()
    def decode(self, token, pos, state):
        logits, k, v = self.model.decode(
            torch.tensor([[token]], dtype=torch.int64), torch.tensor([pos], dtype=torch.int64), state.k_cache, state.v_cache
        )
        return logits.float().numpy(), EngineState(k, v)


def _host_copy(array) -> np.ndarray:
    """A numpy copy of a device array: `to_host()` maps the device buffer, which IREE
    reuses once the array is released, so a view would change under the caller."""
    return np.array(array.to_host(), copy=True)


class IreeEngine(Engine):
    """A compiled module on IREE's CPU runtime; caches stay on the device between calls."""

    def __init__(self, module: IreeModule, seq_len: int, max_seq_len: int, label: str):
        self.module = module
        self.seq_len, self.max_seq_len, self.label = seq_len, max_seq_len, label

    def prefill(self, tokens):
        logits, k, v = self.module.call_raw("prefill", np.asarray(tokens, np.int64))
        return _host_copy(logits), EngineState(k, v)

    def decode(self, token, pos, state):
        logits, k, v = self.module.call_raw(
            "decode", np.array([[token]], np.int64), np.array([pos], np.int64), state.k_cache, state.v_cache
        )
        return _host_copy(logits), EngineState(k, v)
