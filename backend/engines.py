"""Engines that run a Llama's `prefill` and `decode`: PyTorch eager, or an IREE module.

Both keep the same contract as the imported module (see frontend/importer.py):
    prefill(tokens [1, S] int64) -> (logits [1, S, vocab], k_cache, v_cache)
    prefill(tokens, last=i) -> (logits [1, 1, vocab] of position i, k_cache, v_cache)
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
from harden.frontend.importer import BUCKET_PREFIX, PREFILL_BUCKET_PREFIX


@dataclass
class EngineState:
    k_cache: object
    v_cache: object
    length: int | None = None  # positions of the caches (IREE: the decode bucket they are held at)


class Engine(ABC):
    """A model that can prefill a [1, S] prompt and decode one token at a time."""

    label: str
    seq_len: int  # the prefill length S (static in compiled modules)
    max_seq_len: int  # positions of the KV cache

    @abstractmethod
    def prefill(self, tokens: np.ndarray, last: int | None = None) -> tuple[np.ndarray, EngineState]:
        """Logits of every position, or with `last` those of position `last` only ([1, 1, vocab]:
        the classifier runs on that row alone where the model allows it), and the caches."""

    @abstractmethod
    def decode(self, token: int, pos: int, state: EngineState) -> tuple[np.ndarray, EngineState]: ...


class TorchEngine(Engine):
    """PyTorch eager on the CPU (the model harden-import exported)."""

    def __init__(self, model: torch.nn.Module, seq_len: int, max_seq_len: int, label: str = "torch"):
        self.model = model.eval()
        self.seq_len, self.max_seq_len, self.label = seq_len, max_seq_len, label

    @torch.no_grad()
    def prefill(self, tokens, last=None):
        position = None if last is None else torch.tensor([last], dtype=torch.int64)
        logits, k, v = self.model.prefill(torch.from_numpy(np.asarray(tokens, np.int64)), self.max_seq_len, last=position)
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
    """A compiled module on IREE's CPU runtime; caches stay on the device between calls.

    With decode buckets (`decode_<B>` functions, see frontend/importer.py) the caches are
    held at the smallest size B above the position being decoded, so a step costs what the
    filled positions need; they move to the next size (a host copy, padded with zeros) when
    the position reaches B: a handful of times per sequence. Positions at or above B are
    never written while the caches are held at B, so cutting them off loses nothing."""

    def __init__(self, module: IreeModule, seq_len: int, max_seq_len: int, label: str, decode_buckets: tuple[int, ...] = (),
                 prefill_bucket: int | None = None, prefill_last: str | None = None):
        self.module = module
        self.seq_len, self.max_seq_len, self.label = seq_len, max_seq_len, label
        self.sizes = (*sorted(decode_buckets), max_seq_len)
        self.prefill_bucket = prefill_bucket
        self.prefill_last = prefill_last  # modules imported before prefill_last slice prefill's logits

    @classmethod
    def of(cls, module: IreeModule, loaded, label: str) -> "IreeEngine":
        """The engine of a compiled `LoadedModule`, with its buckets."""
        return cls(module, loaded.seq_len, loaded.max_seq_len, label, loaded.decode_buckets, loaded.prefill_bucket, loaded.prefill_last)

    def prefill(self, tokens, last=None):
        length = self.prefill_bucket or self.max_seq_len
        tokens = np.asarray(tokens, np.int64)
        if last is not None and self.prefill_last:
            logits, k, v = self.module.call_raw(self.prefill_last, tokens, np.array([last], np.int64))
            return _host_copy(logits), EngineState(k, v, length)
        function = f"{PREFILL_BUCKET_PREFIX}{self.prefill_bucket}" if self.prefill_bucket else "prefill"
        logits, k, v = self.module.call_raw(function, tokens)
        logits = _host_copy(logits)
        return (logits if last is None else logits[:, last : last + 1]), EngineState(k, v, length)

    def decode(self, token, pos, state):
        size = next((s for s in self.sizes if pos < s), self.max_seq_len)
        k, v = state.k_cache, state.v_cache
        if state.length != size:
            k, v = _resized(k, size), _resized(v, size)
        function = "decode" if size == self.max_seq_len else f"{BUCKET_PREFIX}{size}"
        logits, k, v = self.module.call_raw(function, np.array([[token]], np.int64), np.array([pos], np.int64), k, v)
        return _host_copy(logits), EngineState(k, v, size)


def _resized(cache, size: int) -> np.ndarray:
    """A cache [L, 1, kv, T, hd] cut or zero-padded to `size` positions (on the host)."""
    array = np.asarray(cache.to_host() if hasattr(cache, "to_host") else cache)
    if array.shape[3] >= size:
        return np.ascontiguousarray(array[:, :, :, :size])
    padded = np.zeros((*array.shape[:3], size, array.shape[4]), array.dtype)
    padded[:, :, :, : array.shape[3]] = array
    return padded
