"""Calibration: what every linear of the PyTorch model sees, summed as H = X X^T per weight.

Captured on sequences sampled from the model itself (no data set needed) or on a text's
tokens, through forward hooks on the reference model's linears and on its final norm (the
classifier's input, which is the embedding table's for a tied model). Keys are the
frontend-independent weight names of core/llama_names.py, so a module imported with either
modeling code finds its Hessians; the q, k and v projections share their input, so a fused
`wq+wk+wv` weight finds theirs. H is divided by the token count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harden.core import progress
from harden.core.llama_names import canonical_name


@dataclass
class Calibration:
    hessians: dict[str, np.ndarray]  # canonical weight name -> H [in, in] (float64)
    tokens: int

    def hessian(self, weight_name: str) -> np.ndarray | None:
        """H of the input of the linear whose weight this is (any naming; fused q/k/v too)."""
        name = canonical_name(weight_name)
        if "+" in name:  # layers.0.attention.wq+wk+wv.weight: the inputs of wq
            head, _, tail = name.rpartition(".")
            prefix, _, members = head.rpartition(".")
            name = f"{prefix}.{members.split('+')[0]}.{tail}"
        return self.hessians.get(name)


def _classifier_input_name(model: torch.nn.Module) -> str:
    """The classifier's weight: output.weight, or the tied embedding table."""
    return "output.weight" if getattr(model, "output", None) is not None else "tok_embeddings.weight"


@torch.no_grad()
def calibrate(model: torch.nn.Module, sequences: list[list[int]], batch: int = 4) -> Calibration:
    """Hessians of every linear's input (and the classifier's) over `sequences` (the
    reference model `harden.frontend.llama.Llama`, or the HF wrapper)."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def add(name: str, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        sums[name] = sums.get(name, 0) + x.T @ x

    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            weight = canonical_name(module_name.removeprefix("hf.") + ".weight")
            hooks.append(module.register_forward_hook(lambda m, inputs, out, w=weight: add(w, inputs[0])))
    norm = getattr(model, "norm", None)
    if norm is not None:  # the reference model's final norm feeds F.linear(x, classifier)
        classifier = _classifier_input_name(model)
        hooks.append(norm.register_forward_hook(lambda m, inputs, out: add(classifier, out)))
    tokens = 0
    try:
        for start in progress.bar(range(0, len(sequences), batch), desc="calibration", unit="batch"):
            chunk = torch.tensor(sequences[start : start + batch], dtype=torch.int64)
            model.prefill(chunk, max(len(s) for s in sequences))
            tokens += chunk.numel()
    finally:
        for hook in hooks:
            hook.remove()
    return Calibration({name: (h / tokens).numpy() for name, h in sums.items()}, tokens)
