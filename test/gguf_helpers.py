"""A tiny random Llama written as GGUF by the gguf package's writer, with a small byte-level BPE vocabulary."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from transformers.convert_slow_tokenizer import bytes_to_unicode

from harden.frontend.gguf import GgufVocabulary, write_gguf
from harden.frontend.random_init import SHAPES, RandomWeights

# Merges of a toy byte-level BPE (GPT-2 spelling: "Ġ" is a space); each adds one token.
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġ c", "a t", "Ġc at", "o n", "Ġ s", "Ġs at", "Ġ on", "e r", "Ġ m", "Ġm at"]
SPECIAL = "<|endoftext|>"


def byte_level_vocabulary(extra_tokens: int = 0) -> GgufVocabulary:
    """256 byte tokens, one per merge, the special token (BOS and EOS), and `extra_tokens`
    padding tokens (to make a vocabulary that does not fit the model)."""
    tokens = list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in MERGES]
    types = [1] * len(tokens)
    tokens.append(SPECIAL)
    types.append(3)
    for i in range(extra_tokens):
        tokens.append(f"<pad{i}>")
        types.append(3)
    special = tokens.index(SPECIAL)
    return GgufVocabulary("gpt2", tokens, types, bos_id=special, eos_id=special, merges=MERGES)


VOCAB_SIZE = len(byte_level_vocabulary().tokens)  # 272
# Dimensions are multiples of 32, the block of Q8_0 and Q4_1.
CONFIG = replace(SHAPES["tiny"], hidden_dim=128, vocab_size=VOCAB_SIZE, max_seq_len=128)


def stored_type(name: str) -> str:
    """F32 norms, Q8_0 embedding, classifier and MLP, Q4_1 attention."""
    if name.endswith("norm.weight"):
        return "F32"
    return "Q4_1" if ".attention." in name else "Q8_0"


def write_tiny_gguf(path: Path, *, vocabulary: GgufVocabulary | None = None, tensor_type=stored_type, config=CONFIG, seed: int = 3) -> Path:
    write_gguf(path, config, RandomWeights(config, seed), tensor_type, "harden test model", vocabulary or byte_level_vocabulary())
    return path
