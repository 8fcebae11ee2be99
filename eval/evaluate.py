"""Evaluation inputs and runs: sampled sequences, teacher-forced logits, greedy generation,
perplexity over a text, speed.

Compiled modules have a static prefill length S, so shorter token sequences are padded
at the end: attention is causal, so padding never changes the logits of the real
positions, and decode steps overwrite the padded cache positions before reading them.
Longer sequences have their first S tokens prefilled and the rest fed one decode step
each, which gives the same logits.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from harden.backend.engines import Engine, EngineState
from harden.eval.metrics import log_softmax

PAD_TOKEN = 0
BOS = 1  # the BOS of llama2.c models and SmolLM2's <|im_start|>: where sampled sequences start


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
        logits, state = engine.prefill(_padded(tokens, engine.seq_len), last=0)
        next_logits = logits[0, 0]
        while len(tokens) < length:
            probs = np.exp(log_softmax(next_logits.astype(np.float64) / temperature))
            tokens.append(int(rng.choice(len(probs), p=probs / probs.sum())))
            if len(tokens) < length:
                logits, state = engine.decode(tokens[-1], len(tokens) - 1, state)
                next_logits = logits[0, 0]
        sequences.append(tokens)
    return sequences


@torch.no_grad()
def sample_tokens(model, count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """[count, length] sequences from BOS, sampled at temperature 1 from a PyTorch model
    (the reference `Llama`) all at once, through its KV cache."""
    tokens = torch.full((count, 1), BOS, dtype=torch.int64)
    logits, k, v = model.prefill(tokens, max_seq_len=length)
    out = [tokens]
    for pos in range(1, length):
        probs = torch.softmax(logits[:, -1].float(), dim=-1)
        out.append(torch.multinomial(probs, 1, generator=generator))
        if pos + 1 < length:
            logits, k, v = model.decode(out[-1], torch.tensor([pos]), k, v)
    return torch.cat(out, dim=1)


def run_prompt(engine: Engine, tokens: list[int], every_position: bool = True) -> tuple[np.ndarray, EngineState]:
    """Logits [L, vocab] at every position of `tokens` and the cache after them: one prefill
    of the first S tokens, then one decode step per further token. Without
    `every_position`, the prefill computes the logits of its last token only (generation
    needs no others; rows before it are then missing from the result)."""
    if len(tokens) > engine.max_seq_len:
        raise ValueError(f"{len(tokens)} tokens do not fit the KV cache of {engine.max_seq_len} positions")
    head = tokens[: engine.seq_len]
    if every_position:
        logits, state = engine.prefill(_padded(head, engine.seq_len))
        rows = [logits[0, : len(head)]]
    else:
        logits, state = engine.prefill(_padded(head, engine.seq_len), last=len(head) - 1)
        rows = [logits[0]]
    for pos in range(len(head), len(tokens)):
        logits, state = engine.decode(tokens[pos], pos, state)
        rows.append(logits[0, :1])
    return np.concatenate(rows), state


def teacher_forced_logits(engine: Engine, sequences: list[list[int]]) -> np.ndarray:
    """Logits [N, L, vocab] of each sequence's positions (sequences of one length)."""
    return np.stack([run_prompt(engine, seq)[0] for seq in sequences])


@dataclass
class Generation:
    tokens: list[int]  # the greedy continuation, without the end-of-sequence token
    ms_per_token: float  # mean wall time of the decode steps that produced it
    stopped: bool  # ended at an end-of-sequence token


def greedy_generate(engine: Engine, prompt: list[int], steps: int, eos_ids: frozenset[int] = frozenset()) -> Generation:
    """Up to `steps` greedy tokens after `prompt` (prefill, then cached decode steps),
    stopping at a token of `eos_ids`."""
    logits, state = run_prompt(engine, prompt, every_position=False)
    token = int(logits[-1].argmax())
    generated, times = [], []
    while token not in eos_ids and len(generated) < steps:
        generated.append(token)
        if len(generated) == steps or len(prompt) + len(generated) >= engine.max_seq_len:
            break
        start = time.perf_counter()
        logits, state = engine.decode(token, len(prompt) + len(generated) - 1, state)
        times.append(time.perf_counter() - start)
        token = int(logits[0, 0].argmax())
    return Generation(generated, 1000 * statistics.mean(times) if times else float("nan"), token in eos_ids)


def split_bos(tokenizer, ids: list[int]) -> tuple[int | None, list[int]]:
    """(the BOS the tokenizer led `ids` with, or None; the text's own tokens after it)."""
    bos = tokenizer.backend.bos_token_id if ids and ids[0] == tokenizer.backend.bos_token_id else None
    return bos, ids[1:] if bos is not None else ids


def text_windows(tokens: list[int], length: int, bos: int | None) -> list[list[int]]:
    """The text's tokens cut into consecutive windows of `length` (each starting with BOS
    when the model uses one, as llama.cpp's perplexity does); a text shorter than one window
    is one shorter window. A last partial window is dropped."""
    body = length - 1 if bos is not None else length
    if body < 1:
        raise ValueError("windows must hold at least one token of text")
    starts = range(0, max(len(tokens) - body + 1, 1), body)
    return [([bos] if bos is not None else []) + tokens[s : s + body] for s in starts]


def perplexity(logits: np.ndarray, sequences: list[list[int]]) -> float:
    """exp(mean negative log-likelihood) of each sequence's next tokens under `logits`
    [N, L, vocab] (positions 0..L-2 predicting tokens 1..L-1)."""
    targets = np.array([seq[1:] for seq in sequences])
    logp = log_softmax(logits[:, :-1].astype(np.float64))
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)
    return float(np.exp(nll.mean()))


def measure_speed(engine: Engine, rounds: int = 3, decode_steps: int = 16) -> dict[str, float]:
    """Warm prefill tokens/s (S / median prefill time) and decode tokens/s (1 / median step)."""
    tokens, last = _padded([1], engine.seq_len), engine.seq_len - 1  # the last token's logits, as llama-bench
    engine.prefill(tokens, last)  # warm-up
    prefill_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _, state = engine.prefill(tokens, last)
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
