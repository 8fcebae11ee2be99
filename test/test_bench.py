"""The benchmark suite's own logic: byte counts per token, round dropping, the GGUF RoPE layout."""

import time
from dataclasses import replace

import pytest
import torch

from bench.report import BASELINE, Round, ShapeReport
from bench.subjects import CpuMeter, RoundResult, bf16_copy, iree_bytes_per_token, torch_bytes_per_token
from harden.frontend.gguf import permute_rope_rows
from harden.frontend.random_init import RandomInit
from harden.frontend.weights import TensorWeights, build_reference_model

LOWERED = """
#extern = #ml_program.extern : tensor<10x4xf32>
module {
  ml_program.global private @param.emb(#extern) : tensor<10x4xf32>
  ml_program.global private @param.out(#ml_program.extern : tensor<6x4xf32>) : tensor<6x4xf32>
  func.func @decode(%i: index) -> (f32, tensor<4xi8>, tensor<6x4xf32>) {
    %emb = ml_program.global_load_const @param.emb : tensor<10x4xf32>
    %c0 = arith.constant 0 : index
    %row = tensor.extract %emb[%i, %c0] : tensor<10x4xf32>
    %codes = arith.constant dense<[1, 2, 3, 4]> : tensor<4xi8>
    %zeros = arith.constant dense<0.0> : tensor<1024x1024xf32>
    %out = ml_program.global_load_const @param.out : tensor<6x4xf32>
    %out2 = ml_program.global_load_const @param.out : tensor<6x4xf32>
    return %row, %codes, %out : f32, tensor<4xi8>, tensor<6x4xf32>
  }
}
"""


def test_iree_bytes_count_gathered_tables_as_one_row_and_skip_splats():
    # one row of the gathered embedding (4 f32) + 4 i8 codes + the classifier once (24 f32)
    assert iree_bytes_per_token(LOWERED) == 4 * 4 + 4 + 24 * 4


def test_torch_bytes_count_the_untied_embedding_as_one_row():
    model = RandomInit("tiny").reference_model()
    c = model.config
    assert not c.tie_embeddings
    total = sum(p.numel() for p in model.parameters())
    expected = total - c.vocab_size * c.dim + c.dim
    assert torch_bytes_per_token(model) == 4 * expected
    assert torch_bytes_per_token(bf16_copy(model)) == 2 * expected


def test_bf16_copy_runs_prefill_and_decode():
    model = bf16_copy(RandomInit("tiny").reference_model())
    with torch.no_grad():
        logits, k, v = model.prefill(torch.tensor([[1, 2, 3]]), 8)
        logits, k, v = model.decode(torch.tensor([[4]]), torch.tensor([3]), k, v)
    assert logits.dtype == k.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_gguf_rope_permutation_turns_half_pairs_into_adjacent_pairs():
    """llama.cpp rotates adjacent pairs: the permuted weights in that layout are the same model."""
    source = RandomInit("tiny")
    half = source.reference_model()
    c = source.config
    state = {k: v.clone() for k, v in half.state_dict().items()}
    for name in state:
        if name.endswith(("wq.weight", "wk.weight")):
            heads = c.n_heads if "wq" in name else c.n_kv_heads
            state[name] = torch.from_numpy(permute_rope_rows(state[name].numpy(), heads))
    adjacent = build_reference_model(replace(c, rope_layout="adjacent"), TensorWeights(state))
    tokens = torch.tensor([[1, 5, 7, 9, 11]])
    with torch.no_grad():
        torch.testing.assert_close(adjacent(tokens), half(tokens), rtol=1e-5, atol=1e-5)


def _round(bandwidth, torch_decode, other_decode):
    return Round(bandwidth, 1.0, {
        BASELINE: RoundResult(100.0, torch_decode, 1.0, 0.0),
        "other": RoundResult(300.0, other_decode, 1.0, 0.0),
    })


def test_rounds_with_collapsed_bandwidth_are_dropped_and_ratios_use_the_rest():
    report = ShapeReport("s", {BASELINE: 4_000_000_000, "other": 1_000_000_000})
    report.rounds = [_round(20.0, 5.0, 15.0), _round(8.0, 1.0, 1.0), _round(19.0, 5.0, 15.0), _round(30.0, 5.0, 15.0)]
    report.mark_dropped_rounds()
    # a faster round (the machine got quieter) must not make the others look collapsed
    assert [r.kept for r in report.rounds] == [True, False, True, True]
    rows = report.summary()
    assert rows["other"]["decode_vs_torch_f32"] == pytest.approx(3.0)
    assert rows["other"]["prefill_vs_torch_f32"] == pytest.approx(3.0)
    # 1 GB per token x 15 tokens/s over each kept round's bandwidth, median of the fractions
    assert rows["other"]["roofline_fraction"] == pytest.approx(15 / 20)
    assert report.bandwidth() == pytest.approx(20.0)


def test_cpu_meter_sees_this_process_work():
    with CpuMeter() as cpu:
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            pass
    assert 0.0 < cpu.own_share <= 1.05 and cpu.others_share >= 0.0


def test_weight_precision_table_shows_int8_close_and_ternary_far(capsys):
    """The README's account of the missed QAT target rests on this table."""
    from bench import weight_precision

    weight_precision.main()
    rows = {line[:30].strip(): line.split()[-2:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(rows) == [f"int{b} per channel" for b in weight_precision.BIT_WIDTHS] + ["ternary absmean per channel"]
    top1, kl = (float(x) for x in rows["int8 per channel"])
    assert top1 > 0.8 and kl < 0.1
    assert float(rows["ternary absmean per channel"][1]) > 5
    kls = [float(rows[f"int{b} per channel"][1]) for b in weight_precision.BIT_WIDTHS]
    assert kls == sorted(kls)  # fewer bits, more loss


def test_profile_classes_dispatches_by_their_executable_name():
    from bench.profile_decode import dispatch_class, summarize

    assert dispatch_class("decode_dispatch_3_matmul_like_1x576x1536_f32") == "matmul_like"
    assert dispatch_class("decode_dispatch_0_elementwise_broadcast_4_i64xf32") == "elementwise_broadcast"
    assert dispatch_class("decode_64_dispatch_17_harden_ternary_kernel_2") == "harden_ternary_kernel"

    def row(name, calls, ns):
        return {"row_type": "host_execution_function", "function_name": name, "sample_count": calls, "total_duration_ns": ns}

    rows = [row("decode_dispatch_0_softmax_4x1x256_f32", 10, 2e6), row("decode_dispatch_1_matmul_like_1x64_f32", 20, 6e6),
            row("decode_dispatch_2_matmul_like_1x32_f32", 10, 2e6), {"row_type": "host_execution_queue_operation", "sample_count": 5}]
    summary = summarize(rows)  # 10 calls: dispatch 1 runs twice per call
    assert summary["dispatches_per_step"] == 4 and summary["dispatch_ms_per_step"] == pytest.approx(1.0)
    assert summary["classes"]["matmul_like"] == pytest.approx({"dispatches": 3, "ms": 0.8, "share": 0.8})
    first = summary["executables"][0]  # the most dispatched executable, with its share of each step
    assert first["name"] == "decode_dispatch_1_matmul_like_1x64_f32" and first["dispatches"] == 2 and first["ms"] == pytest.approx(0.6)
