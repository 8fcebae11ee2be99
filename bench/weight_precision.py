"""How much weight precision stories260K can lose: post-training quantization at several widths.

    .venv/bin/python -m bench.weight_precision

The linears harden-ternarize rewrites (q, k, v, o, gate, up, down; not the embedding or
the tied classifier) are quantized per output channel, each in turn to int8, int6, int5,
int4 and int3 (symmetric absmax) and to ternary (absmean, the compiler's own
`ternarize`), and compared in PyTorch with the f32 model on harden-qat's held-out
sequences (8 of 128 tokens sampled from the f32 model): top-1 agreement and
KL(f32 || quantized) in nats. It shows what the QAT target of issue 8 (top-1 >= 0.85,
KL <= 0.1) asks: fidelity between int6 and int8 from 1.6-bit weights. About 10 seconds.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from harden.eval.evaluate import sample_tokens
from harden.eval.qat import HELDOUT_SEED, agreement, ternarized_linears
from harden.frontend.checkpoints import open_model
from harden.quant.ternary import ternarize

BIT_WIDTHS = (8, 6, 5, 4, 3)


def integer_weight(w: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric per-output-channel absmax quantization to `bits` bits, dequantized."""
    levels = 2 ** (bits - 1) - 1
    absmax = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(absmax > 0, absmax / levels, 1.0).astype(np.float32)
    return (np.clip(np.rint(w / scale), -levels, levels) * scale).astype(np.float32)


def quantized(model, quantize) -> torch.nn.Module:
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        for module in ternarized_linears(copy_).values():
            module.weight.copy_(torch.from_numpy(quantize(module.weight.numpy())))
    return copy_


def main() -> None:
    teacher = open_model("stories260k").reference_model().eval()
    heldout = sample_tokens(teacher, 8, 128, torch.Generator().manual_seed(HELDOUT_SEED))
    with torch.no_grad():
        reference = F.log_softmax(teacher(heldout).float(), dim=-1)
    variants = [(f"int{bits} per channel", lambda w, b=bits: integer_weight(w, b)) for bits in BIT_WIDTHS]
    variants.append(("ternary absmean per channel", lambda w: ternarize(w, "absmean", "channel").dequantize()))
    print("stories260k, post-training quantization of the ternarized linears, 8 x 128 held-out tokens")
    print(f"{'weights':<30} {'top-1 agreement':>16} {'KL (nats)':>10}")
    for name, quantize in variants:
        result = agreement(reference, quantized(teacher, quantize), heldout)
        print(f"{name:<30} {result['top1_agreement']:>16.3f} {result['kl']:>10.3f}")


if __name__ == "__main__":
    main()
