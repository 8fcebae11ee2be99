"""How far a model's logits are from a reference's: the numbers harden-run reports."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare_logits(reference: np.ndarray, model: np.ndarray) -> dict[str, float]:
    """Metrics over every position of logits shaped [..., vocab] (computed in float64).

    cosine is the mean over positions of the cosine similarity of the two logit vectors;
    kl is the mean over positions of KL(reference || model) in nats; top1_agreement is
    the fraction of positions whose argmax agrees.
    """
    ref = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
    out = model.reshape(-1, model.shape[-1]).astype(np.float64)
    diff = np.abs(ref - out)
    norms = np.linalg.norm(ref, axis=-1) * np.linalg.norm(out, axis=-1)
    cosine = (ref * out).sum(axis=-1) / np.maximum(norms, 1e-300)
    log_p, log_q = log_softmax(ref), log_softmax(out)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    return {
        "max_abs_err": float(diff.max()),
        "mean_abs_err": float(diff.mean()),
        "cosine": float(cosine.mean()),
        "top1_agreement": float((ref.argmax(-1) == out.argmax(-1)).mean()),
        "kl": float(max(kl.mean(), 0.0)),
    }
