"""The imported MLIR, with no harden passes, compiled by IREE for llvm-cpu, against torch
eager: prefill and 16 decode steps, for stories260k (reference model), a tiny Hugging
Face checkpoint (Hugging Face's modeling code), and one with Llama 3 RoPE and external
weights (IREE parameters)."""

import numpy as np
import pytest
import torch
from frontend_helpers import LLAMA3_ROPE, one_torch_thread, save_hf_llama  # noqa: F401 (autouse fixture)

from harden.backend.compile import IreeModule, compile_vmfb, lower_module_for_iree
from harden.core.source import parse_module
from harden.dialects.context import make_context
from harden.frontend.hf import HfCheckpoint
from harden.frontend.importer import import_model, write_parameter_file
from harden.frontend.llama2c import open_embedded
from harden.frontend.provenance import exported_model_from_provenance, load_provenance

SEQ_LEN, MAX_SEQ_LEN, DECODE_STEPS = 16, 64, 16
TOLERANCE = 1e-4
# Constant evaluation JIT-compiles weight preprocessing at build time; it doubles the
# compile time and changes nothing these tests check.
COMPILE_FLAGS = ["--iree-opt-const-eval=false"]


@pytest.fixture(scope="module", params=["stories260k", "hf-tiny", "hf-llama3-reference-external"])
def compiled(request, tmp_path_factory):
    """(IREE module, the torch model that was exported, provenance) of one model:
    stories260k and a Hugging Face checkpoint (HF's modeling code) with inline weights;
    a Hugging Face checkpoint with Llama 3 RoPE scaling through the reference model, its
    weights in a safetensors file that IREE reads as parameters."""
    work = tmp_path_factory.mktemp(request.param)
    params = None
    if request.param == "stories260k":
        imported = import_model(open_embedded("stories260k"), seq_len=SEQ_LEN, max_seq_len=MAX_SEQ_LEN)
    elif request.param == "hf-tiny":
        source = HfCheckpoint(save_hf_llama(work, bias=True, tied=False))
        imported = import_model(source, seq_len=SEQ_LEN, max_seq_len=MAX_SEQ_LEN)
    else:
        source = HfCheckpoint(save_hf_llama(work, bias=False, tied=True, rope=LLAMA3_ROPE))
        params = work / "weights.safetensors"
        imported = import_model(
            source, frontend="reference", seq_len=SEQ_LEN, max_seq_len=MAX_SEQ_LEN,
            external_weights=True, params_file=params.name,
        )
        write_parameter_file(params, imported.weights, imported.external_weights)
    # The module goes through its text form, as harden-import writes it for the next tool.
    module = parse_module(imported.mlir_text(), request.param, make_context())
    prov = load_provenance(module)
    lower_module_for_iree(module)
    vmfb = compile_vmfb(module.get_asm(), COMPILE_FLAGS)
    return IreeModule(vmfb, parameter_file=params), exported_model_from_provenance(prov), prov


def assert_close(got, expected, what):
    assert len(got) == len(expected)
    for name, g, e in zip(("logits", "k_cache", "v_cache"), got, expected):
        assert g.shape == tuple(e.shape), f"{what} {name}"
        assert np.abs(g - e.numpy()).max() <= TOLERANCE, f"{what} {name}: {np.abs(g - e.numpy()).max()}"


def test_prefill_matches_torch(compiled):
    iree, model, prov = compiled
    tokens = torch.randint(0, prov.config.vocab_size, (1, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.prefill(tokens, MAX_SEQ_LEN)
    assert expected[0].abs().max() > 1.0
    assert_close(iree.call("prefill", tokens.numpy()), expected, "prefill")


def test_prefill_last_is_one_row_of_prefill(compiled):
    """prefill_last(tokens, i): the logits of position i only (llama-bench's prompt work), the
    same caches; in PyTorch and IREE, at the first, a middle and the last position."""
    iree, model, prov = compiled
    tokens = torch.randint(0, prov.config.vocab_size, (1, SEQ_LEN), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits, k_cache, v_cache = model.prefill(tokens, MAX_SEQ_LEN)
        for last in (0, 5, SEQ_LEN - 1):
            position = torch.tensor([last])
            expected = (logits[:, last : last + 1], k_cache, v_cache)
            torch_last = model.prefill(tokens, MAX_SEQ_LEN, last=position)
            assert_close([t.numpy() for t in torch_last], expected, f"torch prefill at {last}")  # a 1-row GEMM rounds apart
            assert_close(iree.call("prefill_last", tokens.numpy(), position.numpy()), expected, f"prefill_last at {last}")


def test_decode_steps_match_torch(compiled):
    """Each side decodes from its own caches, greedily, for 16 steps after a prompt."""
    iree, model, prov = compiled
    tokens = torch.randint(0, prov.config.vocab_size, (1, SEQ_LEN), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, k_cache, v_cache = model.prefill(tokens, MAX_SEQ_LEN)
    _, k_iree, v_iree = iree.call("prefill", tokens.numpy())
    for step in range(DECODE_STEPS):
        token = logits[:, -1:].argmax(-1)
        pos = torch.tensor([SEQ_LEN + step])
        with torch.no_grad():
            logits, k_cache, v_cache = model.decode(token, pos, k_cache, v_cache)
        got = iree.call("decode", token.numpy(), pos.numpy(), k_iree, v_iree)
        assert_close(got, (logits, k_cache, v_cache), f"decode step {step}")
        _, k_iree, v_iree = got


def test_decode_with_a_kv_cache_slice_over_iree_stack_limit():
    """A layer's cache slice of 64 KiB (stories260k at 512 positions; 256 KiB at
    tinyllama-1.1b) must not be staged on the stack (llvm-cpu allows 32 KiB per dispatch):
    the one-position cache write is a select, not a scatter."""
    imported = import_model(open_embedded("stories260k"), entries=("decode",), seq_len=1, max_seq_len=512)
    module = parse_module(imported.mlir_text(), "stories260k", make_context())
    model = exported_model_from_provenance(load_provenance(module))
    lower_module_for_iree(module)
    iree = IreeModule(compile_vmfb(module.get_asm(), COMPILE_FLAGS))
    k_cache = torch.randn(model.empty_cache(512).shape, generator=torch.Generator().manual_seed(2))
    v_cache = torch.randn(k_cache.shape, generator=torch.Generator().manual_seed(3))
    token, pos = torch.tensor([[7]]), torch.tensor([300])
    with torch.no_grad():
        expected = model.decode(token, pos, k_cache, v_cache)
    logits, k_got, v_got = iree.call("decode", token.numpy(), pos.numpy(), k_cache.numpy(), v_cache.numpy())
    # 301 random keys per head: f32 rounding grows with them, so relative to the logits' scale
    assert np.abs(logits - expected[0].numpy()).max() <= TOLERANCE * expected[0].abs().max().item()
    for got, before, want in ((k_got, k_cache, expected[1]), (v_got, v_cache, expected[2])):
        # only position 300 is written (the rest is copied exactly) ...
        others = np.arange(512) != 300
        np.testing.assert_array_equal(got[:, :, :, others], before.numpy()[:, :, :, others])
        # ... with the new key/value
        assert np.abs(got[:, :, :, 300] - want.numpy()[:, :, :, 300]).max() <= TOLERANCE
        assert np.abs(got[:, :, :, 300] - before.numpy()[:, :, :, 300]).max() > 0.1
