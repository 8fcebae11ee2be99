"""What ternarizing each layer group costs in accuracy, and which groups to keep out of it.

Works on the PyTorch model a module was imported from, with the weights ternarized in
numpy exactly as `harden-ternarize` does it (the same function and options; q, k and v
ternarized as one fused weight, as the pipeline fuses them first), so the KL measured
here is the KL of the hardened module up to f32 rounding.

A layer group is named as core/llama_names.py names it, whatever the frontend:
`layers.3.attention` (q, k, v, o) or `layers.3.feed_forward` (gate, up, down). The
classifier (`output`) is a group of its own, only when the classifier is ternarized
and is its own linear (a classifier tied to the embedding is left out: ternarizing it
here would change the embedding too). Kept groups stay in f32, or with keep-as=int8 are
quantized per output channel as harden-ternarize does it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harden.backend.engines import TorchEngine
from harden.core import progress
from harden.core.llama_names import canonical_name, layer_group
from harden.eval.evaluate import teacher_forced_logits
from harden.eval.metrics import compare_logits
from harden.quant.int8 import int8_bytes, quantize_int8
from harden.quant.options import TernaryOptions
from harden.quant.ternary import ternarize_as, ternary_bytes

CLASSIFIERS = ("output", "lm_head")
FUSED_QKV = (("wq", "wk", "wv"), ("q_proj", "k_proj", "v_proj"))


@dataclass(frozen=True)
class GroupCost:
    group: str
    kl: float  # KL(f32 || model with only this group ternarized), nats
    top1_agreement: float
    f32_bytes: int
    ternary_bytes: int


def _weight_name(module_name: str) -> str:
    """Parameter names as the imported module names its weights (HfLlama wraps HF as `hf`)."""
    return module_name.removeprefix("hf.") + ".weight"


def linear_groups(model: torch.nn.Module, options: TernaryOptions) -> dict[str, list[str]]:
    """Layer group -> weight names of the linears the pipeline ternarizes, in model order."""
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf in CLASSIFIERS and not options.classifier:
            continue
        groups.setdefault(layer_group(_weight_name(name)), []).append(_weight_name(name))
    return groups


def _parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n.removeprefix("hf."): p for n, p in model.named_parameters()}


def _fused_sets(names: list[str]) -> list[list[str]]:
    """The names ternarized together: q, k, v as one fused weight, every other alone."""
    for triple in FUSED_QKV:
        members = [n for n in names if n.rsplit(".", 2)[-2] in triple]
        if len(members) == 3:
            return [members] + [[n] for n in names if n not in members]
    return [[n] for n in names]


def ternarized_weights(model, names: list[str], options: TernaryOptions) -> dict[str, torch.Tensor]:
    """The dequantized ternary weights harden-ternarize gives these linears."""
    params = _parameters(model)
    result = {}
    for members in _fused_sets(names):
        w = np.concatenate([params[n].detach().float().numpy() for n in members])
        dq = ternarize_as(w, options).dequantize()
        start = 0
        for n in members:
            rows = params[n].shape[0]
            result[n] = torch.from_numpy(dq[start : start + rows])
            start += rows
    return result


class SensitivityModel:
    """The f32 model, its logits on fixed sequences, and swaps of ternarized groups."""

    def __init__(self, model: torch.nn.Module, sequences: list[list[int]], seq_len: int, max_seq_len: int, options: TernaryOptions):
        self.model, self.sequences, self.options = model.eval(), sequences, options
        self.engine = TorchEngine(model, seq_len, max_seq_len)
        self.reference = teacher_forced_logits(self.engine, sequences)
        self.groups = linear_groups(model, options)
        self._params = _parameters(model)

    def evaluate(self, ternary_groups: list[str], int8_groups: list[str] = ()) -> dict[str, float]:
        """Metrics against f32 with these groups ternarized and those in int8 (the model is
        restored after)."""
        names = [n for g in ternary_groups for n in self.groups[g]]
        replaced = ternarized_weights(self.model, names, self.options)
        for n in (n for g in int8_groups for n in self.groups[g]):
            replaced[n] = torch.from_numpy(quantize_int8(self._params[n].detach().float().numpy()).dequantize())
        return self._with(replaced)

    def evaluate_weights(self, weights: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics against f32 with these weights replaced: named as a module names them
        (either frontend's names; a fused `wq+wk+wv` weight is split back into its rows)."""
        replaced = {}
        for name, w in weights.items():
            members = self._members(name)
            start = 0
            for member in members:
                rows = self._params[member].shape[0]
                replaced[member] = torch.from_numpy(np.ascontiguousarray(w[start : start + rows], dtype=np.float32))
                start += rows
            if start != w.shape[0]:
                raise ValueError(f"'{name}' has {w.shape[0]} rows, its parameters {start}")
        return self._with(replaced)

    def _members(self, name: str) -> list[str]:
        """The model's parameter names behind a module's weight name."""
        by_canonical = {canonical_name(n): n for n in self._params}
        reference = canonical_name(name)
        if "+" not in reference:
            return [by_canonical[reference]]
        head, _, tail = reference.rpartition(".")
        prefix, _, fused = head.rpartition(".")
        return [by_canonical[f"{prefix}.{member}.{tail}"] for member in fused.split("+")]

    def _with(self, replaced: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics with parameters replaced (restored after)."""
        saved = {n: self._params[n].detach().clone() for n in replaced}
        try:
            with torch.no_grad():
                for n, w in replaced.items():
                    self._params[n].copy_(w)
            return compare_logits(self.reference, teacher_forced_logits(self.engine, self.sequences))
        finally:
            with torch.no_grad():
                for n, w in saved.items():
                    self._params[n].copy_(w)

    def bytes_of(self, group: str) -> tuple[int, int]:
        """(f32 bytes, ternary bytes) of a group's weights."""
        shapes = [tuple(self._params[n].shape) for n in self.groups[group]]
        return sum(4 * a * b for a, b in shapes), sum(ternary_bytes(s, self.options) for s in shapes)

    def kept_bytes(self, group: str) -> int:
        """Bytes of a group's weights kept out of ternary (in the keep-as precision)."""
        if self.options.keep_as == "int8":
            return sum(int8_bytes(tuple(self._params[n].shape)) for n in self.groups[group])
        return self.bytes_of(group)[0]

    def extra_bytes(self, kept: list[str]) -> int:
        """What keeping these groups costs in bytes over ternarizing them."""
        return sum(self.kept_bytes(g) - self.bytes_of(g)[1] for g in kept)

    def group_costs(self) -> list[GroupCost]:
        """Each group ternarized alone."""
        costs = []
        for group in progress.bar(self.groups, desc="ternarizing each layer group alone", unit="group"):
            m = self.evaluate([group])
            costs.append(GroupCost(group, m["kl"], m["top1_agreement"], *self.bytes_of(group)))
        return costs

    def auto_keep(self, max_kl: float, costs: list[GroupCost]) -> tuple[list[str], dict[str, float]]:
        """The groups to keep (in the keep-as precision), most sensitive first, until KL with
        every other group ternarized is within `max_kl`. Returns (kept groups, metrics of
        that mix). With keep-as=int8 even keeping everything may miss the budget."""
        order = [c.group for c in sorted(costs, key=lambda c: (-c.kl, c.group))]
        kept: list[str] = []
        metrics = self.evaluate(order)
        while metrics["kl"] > max_kl and len(kept) < len(order):
            kept.append(order[len(kept)])
            int8 = kept if self.options.keep_as == "int8" else []
            metrics = self.evaluate([g for g in order if g not in kept], int8)
        return kept, metrics
