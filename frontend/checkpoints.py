"""Model sources by the name harden-import's --model gives, and checkpoints written back.

The formats are one file each: llama2c.py, hf.py (and random_init.py for seeded shapes);
this module picks among them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harden.frontend.hf import HfCheckpoint, write_hf_checkpoint
from harden.frontend.llama import LlamaConfig
from harden.frontend.llama2c import EMBEDDED_MODELS, Llama2cCheckpoint, open_embedded, write_llama2c
from harden.frontend.random_init import RandomInit
from harden.frontend.weights import FrontendError

Source = Llama2cCheckpoint | HfCheckpoint | RandomInit


def write_checkpoint(path: Path, config: LlamaConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """A llama2.c checkpoint for a path ending in .bin, else a Hugging Face directory."""
    if path.suffix == ".bin":
        write_llama2c(path, config, state_dict)
    else:
        write_hf_checkpoint(path, config, state_dict)


def open_model(spec: str) -> Source:
    """The source named by harden-import's --model: an embedded checkpoint (stories260k),
    `tiny` (random init), a llama2.c .bin file or a Hugging Face directory."""
    if spec in EMBEDDED_MODELS:
        return open_embedded(spec)
    if spec == "tiny":
        return RandomInit("tiny")
    path = Path(spec)
    if path.is_dir():
        return HfCheckpoint(path.resolve())
    if path.is_file():
        return Llama2cCheckpoint(path.resolve())
    raise FrontendError(
        f"'{spec}': no such file or directory (expected {', '.join(EMBEDDED_MODELS)}, tiny, "
        "a llama2.c .bin file or a Hugging Face directory)"
    )
