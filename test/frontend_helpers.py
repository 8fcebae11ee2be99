"""Shared by the test_frontend_* files: small Hugging Face Llama checkpoints written to disk."""

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig as HfLlamaConfig
from transformers import LlamaForCausalLM
from transformers.utils import logging as hf_logging


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and on a shared, loaded machine torch's
    second thread spins: 64 stories260k decode steps take 20 s on two threads, 0.8 s on one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# A tiny Llama with grouped-query attention (4 query heads share 2 key/value heads).
TINY_HF = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def save_hf_llama(path: Path, *, bias: bool, tied: bool, rope: dict | None = None, seed: int = 0) -> Path:
    """Writes a random tiny LlamaForCausalLM (config.json + model.safetensors) to `path`.

    Weights are N(0, 0.2) and norms N(1, 0.2) (not HF's near-zero init), so every layer
    moves the logits and a wrong mapping shows.
    """
    config = HfLlamaConfig(
        **TINY_HF,
        attention_bias=bias,
        tie_word_embeddings=tied,
        rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0},
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("norm.weight") else 0.0))
    hf_logging.disable_progress_bar()
    model.save_pretrained(path)
    return path


def load_hf_llama(path: Path) -> LlamaForCausalLM:
    """The checkpoint as transformers loads it (its own reading of config.json)."""
    return LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
