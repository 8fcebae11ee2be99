"""The reference Llama: against Hugging Face's LlamaForCausalLM, KV-cache decode against
prefill, the two RoPE layouts, Llama 3 RoPE scaling, random-init shapes."""

import dataclasses

import pytest
import torch
from frontend_helpers import LLAMA3_ROPE, load_hf_llama, one_torch_thread, save_hf_llama  # noqa: F401 (fixture)

from harden.frontend.hf import HfCheckpoint
from harden.frontend.hf_llama import HfLlama
from harden.frontend.llama import DecodeProgram, Llama, LlamaConfig, greedy_generate, rope_inverse_frequencies
from harden.frontend.random_init import SHAPES, RandomInit, RandomWeights
from harden.frontend.weights import build_reference_model

TOKENS = torch.tensor([[1, 5, 17, 42, 3, 96, 0, 64, 8, 8, 33, 71]])


def max_diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.fixture(scope="module", params=[(False, True), (False, False), (True, True), (True, False)], ids=["tied", "untied", "bias-tied", "bias-untied"])
def hf_checkpoint(request, tmp_path_factory):
    bias, tied = request.param
    return save_hf_llama(tmp_path_factory.mktemp("hf"), bias=bias, tied=tied)


def test_reference_matches_hugging_face(hf_checkpoint):
    hf = load_hf_llama(hf_checkpoint)
    reference = HfCheckpoint(hf_checkpoint).reference_model()
    with torch.no_grad():
        expected = hf(TOKENS).logits
        got = reference(TOKENS)
    assert expected.abs().max() > 1.0  # the weights are not degenerate
    assert max_diff(got, expected) <= 1e-5


def test_hf_wrapper_prefill_and_decode_match_reference(hf_checkpoint):
    """HfLlama (what is exported for HF checkpoints) against the reference, cache included."""
    hf = HfLlama(load_hf_llama(hf_checkpoint))
    reference = HfCheckpoint(hf_checkpoint).reference_model()
    prompt, rest = TOKENS[:, :5], TOKENS[0, 5:]
    with torch.no_grad():
        got = hf.prefill(prompt, 32)
        expected = reference.prefill(prompt, 32)
        # harden's grouped attention against transformers' own eager attention
        assert max_diff(got[0], load_hf_llama(hf_checkpoint)(prompt).logits) <= 1e-5
        for step, token in enumerate(rest):
            pos = torch.tensor([5 + step])
            got = hf.decode(token.view(1, 1), pos, got[1], got[2])
            expected = reference.decode(token.view(1, 1), pos, expected[1], expected[2])
            for g, e in zip(got, expected):
                assert max_diff(g, e) <= 1e-5


def test_hf_wrapper_rotates_as_transformers_does_bit_for_bit_without_a_concatenation(hf_checkpoint):
    """The wrapped model's RoPE (the reference's factors, no rotate_half) gives exactly
    transformers' q and k; transformers' own function is back in place afterwards; the
    exported decode step has no concatenation, and one negation for all layers (both
    frontends give the passes the same RoPE ops)."""
    from transformers.models.llama import modeling_llama

    from harden.frontend.hf_llama import RotaryTable, reference_rope

    model = load_hf_llama(hf_checkpoint)
    own = modeling_llama.apply_rotary_pos_emb
    positions = torch.tensor([[0, 3, 7, 30]])
    q, k = torch.randn(1, 4, 4, model.config.head_dim), torch.randn(1, 2, 4, model.config.head_dim)
    with torch.no_grad():
        expected = own(q, k, *model.model.rotary_emb(q, positions))
        table = RotaryTable(model.model.rotary_emb, 32)
        with reference_rope():
            got = modeling_llama.apply_rotary_pos_emb(q, k, *table(q, positions))
    assert modeling_llama.apply_rotary_pos_emb is own
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    hf = HfLlama(model, 32)
    cache = hf.empty_cache()
    with torch.no_grad():
        program = torch.export.export(DecodeProgram(hf), (torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64), cache, cache.clone()))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert not [t for t in targets if t.startswith("aten.cat")]
    assert len([t for t in targets if t.startswith("aten.neg")]) == 1  # -sin, once per step, not per layer


def test_llama3_rope_scaling_matches_hugging_face(tmp_path):
    path = save_hf_llama(tmp_path, bias=False, tied=True, rope=LLAMA3_ROPE)
    hf = load_hf_llama(path)
    source = HfCheckpoint(path)
    assert source.config.rope_scaling is not None
    assert torch.equal(rope_inverse_frequencies(source.config), hf.model.rotary_emb.inv_freq)
    # Scaling changes the frequencies (else this test would not test it).
    plain = dataclasses.replace(source.config, rope_scaling=None)
    assert not torch.equal(rope_inverse_frequencies(plain), hf.model.rotary_emb.inv_freq)
    with torch.no_grad():
        assert max_diff(source.reference_model()(TOKENS), hf(TOKENS).logits) <= 1e-5


def random_model(config: LlamaConfig, seed: int = 0) -> Llama:
    return build_reference_model(config, RandomWeights(config, seed))


GQA = LlamaConfig(dim=48, n_layers=2, n_heads=6, n_kv_heads=2, vocab_size=97, hidden_dim=80, max_seq_len=24, qkv_bias=True, tie_embeddings=False)


@pytest.mark.parametrize("layout", ["adjacent", "half"])
def test_decode_reproduces_prefill_position_by_position(layout):
    model = random_model(dataclasses.replace(GQA, rope_layout=layout))
    with torch.no_grad():
        full, k_full, v_full = model.prefill(TOKENS)
        assert full.abs().max() > 1.0
        logits, k_cache, v_cache = model.prefill(TOKENS[:, :1])
        assert max_diff(logits[0, 0], full[0, 0]) <= 1e-5
        for pos in range(1, TOKENS.shape[1]):
            logits, k_cache, v_cache = model.decode(TOKENS[:, pos : pos + 1], torch.tensor([pos]), k_cache, v_cache)
            assert max_diff(logits[0, 0], full[0, pos]) <= 1e-5, f"position {pos}"
    assert k_cache.shape == (2, 1, 2, 24, 8)
    # Positions past the prompt are never written.
    assert max_diff(k_cache, k_full) <= 1e-5 and not k_cache[:, :, :, TOKENS.shape[1] :].any()
    assert max_diff(v_cache, v_full) <= 1e-5


def test_greedy_generate_uses_the_cache_consistently():
    model = random_model(GQA)
    prompt = [1, 5, 17]
    tokens = greedy_generate(model, prompt, 8)
    # The same continuation without a cache: re-run the whole sequence every step.
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(8):
            sequence.append(int(model(torch.tensor([sequence]))[0, -1].argmax()))
    assert tokens == sequence[len(prompt) :]


def adjacent_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorders q/k rows of a "half" layout head (0..d/2-1 | d/2..d-1) to adjacent pairs."""
    rows = weight.shape[0] // n_heads
    return weight.reshape(n_heads, 2, rows // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def test_rope_layouts_differ_by_a_permutation_of_q_and_k():
    half = random_model(dataclasses.replace(GQA, rope_layout="half"))
    adjacent = Llama(dataclasses.replace(GQA, rope_layout="adjacent")).eval()
    state = half.state_dict()
    for name in list(state):
        if ".attention.wq." in name:
            state[name] = adjacent_rows(state[name], GQA.n_heads)
        if ".attention.wk." in name:
            state[name] = adjacent_rows(state[name], GQA.n_kv_heads)
    adjacent.load_state_dict(state)
    with torch.no_grad():
        assert max_diff(adjacent(TOKENS), half(TOKENS)) <= 1e-5
        # Without the permutation the layouts compute different models.
        adjacent.load_state_dict(half.state_dict())
        assert max_diff(adjacent(TOKENS), half(TOKENS)) > 1e-3


def test_random_weights_depend_on_seed_and_name_only():
    config = SHAPES["tiny"]
    a, b = RandomWeights(config, 0), RandomWeights(config, 0)
    name = "layers.1.attention.wk.weight"
    assert torch.equal(a.tensor(name), b.tensor(name))  # no hidden generator state
    b.tensor("norm.weight")
    assert torch.equal(a.tensor(name), b.tensor(name))
    assert not torch.equal(a.tensor(name), RandomWeights(config, 1).tensor(name))
    assert not torch.equal(a.tensor(name), a.tensor("layers.0.attention.wk.weight"))


@pytest.mark.parametrize(
    "shape, parameters",
    [
        # Published parameter counts of the real models.
        ("tinyllama-1.1b", 1_100_048_384),
        ("llama-3.2-1b", 1_235_814_400),
        ("llama-3.1-8b", 8_030_261_248),
    ],
)
def test_named_shapes_have_the_real_parameter_counts(shape, parameters):
    assert SHAPES[shape].num_parameters() == parameters


def test_tiny_parameter_count_matches_the_model():
    source = RandomInit("tiny")
    model = source.reference_model()
    assert sum(p.numel() for p in model.parameters()) == source.config.num_parameters()


def test_sharded_and_bfloat16_checkpoints_load_as_float32(tmp_path):
    original = load_hf_llama(save_hf_llama(tmp_path / "f32", bias=True, tied=False))
    original.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    original.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    for variant in ("sharded", "bf16"):
        source = HfCheckpoint(tmp_path / variant)
        hf = load_hf_llama(tmp_path / variant)  # transformers upcasts bf16 to f32 too
        for name, tensor in source.weights.state_dict().items():
            assert tensor.dtype == torch.float32, name
        with torch.no_grad():
            assert max_diff(source.reference_model()(TOKENS), hf(TOKENS).logits) <= 1e-5
