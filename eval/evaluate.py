"""Evaluation inputs and runs: sampled sequences, teacher-forced logits, greedy generation, speed.

Compiled modules have a static prefill length S, so shorter token sequences are padded
at the end: attention is causal, so padding never changes the logits of the real
positions, and decode steps overwrite the padded cache positions before reading them.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from harden.backend.engines import Engine
from harden.eval.metrics import log_softmax

PAD_TOKEN = 0


def _padded(tokens: list[int], length: int) -> np.ndarray:
    if len(tokens) > length:
        raise ValueError(f"{len(tokens)} tokens do not fit the prefill length {length}")
    return np.array([tokens + [PAD_TOKEN] * (length - len(tokens))], np.int64)


def sample_sequences(engine: Engine, count: int, length: int, seed: int, bos: int, temperature: float = 1.0) -> list[list[int]]:
    """`count` sequences of `length` tokens sampled from `engine`, each starting at `bos`."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(count):
        tokens = [bos]
        logits, state = engine.prefill(_padded(tokens, engine.seq_len))
        next_logits = logits[0, 0]
        while len(tokens) < length:
            probs = np.exp(log_softmax(next_logits.astype(np.float64) / temperature))
            tokens.append(int(rng.choice(len(probs), p=probs / probs.sum())))
            if len(tokens) < length:
                logits, state = engine.decode(tokens[-1], len(tokens) - 1, state)
                next_logits = logits[0, 0]
        sequences.append(tokens)
    return sequences


def teacher_forced_logits(engine: Engine, sequences: list[list[int]]) -> np.ndarray:
    """Logits [N, L, vocab] of each sequence's positions from one prefill each."""
    return np.stack([engine.prefill(_padded(seq, engine.seq_len))[0][0, : len(seq)] for seq in sequences])


def greedy_generate(engine: Engine, prompt: list[int], steps: int) -> list[int]:
    """`steps` greedy tokens after `prompt`: prefill, then cached decode steps."""
    logits, state = engine.prefill(_padded(prompt, engine.seq_len))
    generated = [int(logits[0, len(prompt) - 1].argmax())]
    while len(generated) < steps:
        logits, state = engine.decode(generated[-1], len(prompt) + len(generated) - 1, state)
        generated.append(int(logits[0, 0].argmax()))
    return generated


def measure_speed(engine: Engine, rounds: int = 3, decode_steps: int = 16) -> dict[str, float]:
    """Warm prefill tokens/s (S / median prefill time) and decode tokens/s (1 / median step)."""
    tokens = _padded([1], engine.seq_len)
    engine.prefill(tokens)  # warm-up
    prefill_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _, state = engine.prefill(tokens)
        prefill_times.append(time.perf_counter() - start)
    steps = min(decode_steps, engine.max_seq_len - 1)
    decode_times = []
    for pos in range(1, steps + 1):
        start = time.perf_counter()
        _, state = engine.decode(1, pos, state)
        decode_times.append(time.perf_counter() - start)
    return {
        "prefill_tokens_per_s": engine.seq_len / statistics.median(prefill_times),
        "decode_tokens_per_s": 1.0 / statistics.median(decode_times[1:] or decode_times),
    }
