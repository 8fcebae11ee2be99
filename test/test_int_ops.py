"""`harden.int_linear` and `harden.int_embedding` (n-bit codes in groups, f16 scales): the
quantizers against their references, and the lowering on IREE against numpy."""

import re

import numpy as np
import pytest
from torch_mlir import ir
from torch_mlir.dialects import func

from harden.backend.compile import IreeModule, compile_vmfb, lower_module_for_iree
from harden.core.tensor_types import vtensor_type
from harden.core.weights import WeightStore
from harden.dialects.context import make_context
from harden.dialects.harden import build_int_embedding, build_int_linear
from harden.kernels.contract import CUSTOM_DISPATCH_ATTR, kernel_isa, unavailable_reason
from harden.kernels import vnni
from harden.quant.gptq import Grid, gptq_int, gptq_ternary, quantize_gptq
from harden.quant.intn import IntWeight, code_range, exact_affine_grid, int_bits_per_weight, quantize_intn

# (rows shape, in_features, out_features, bits, group_size, affine, bias)
LINEARS = [
    ((1, 1), 64, 48, 4, 32, False, False),  # decode: one token
    ((1, 5), 96, 20, 3, 32, False, True),
    ((7,), 64, 9, 8, 64, False, False),  # 2-D activation
    ((1, 3), 64, 16, 4, 32, True, False),  # affine: codes 0..15 plus a min per group
    ((1, 2), 128, 8, 2, 64, False, True),
    # decode cases the C kernels take where the host runs them (4-bit codes up to 4 bits, else 8)
    ((1, 1), 96, 20, 3, 32, False, True),
    ((1, 1), 64, 16, 4, 32, True, False),
    ((1, 1), 128, 8, 2, 64, False, True),
    ((1, 1), 64, 24, 5, 32, False, False),
    ((1, 1), 37, 9, 8, 37, False, False),  # odd sizes, one scale per row
    ((1, 1), 48, 7, 6, 16, True, True),
    ((128,), 80, 33, 4, 16, False, False),  # prefill
]


def _random_grid_weight(rng, rows, columns, bits, group_size, affine) -> IntWeight:
    lo, hi = code_range(bits, affine)
    codes = rng.integers(lo, hi + 1, size=(rows, columns)).astype(np.int8)
    scales = (rng.random((rows, columns // group_size)) * 0.1 + 0.01).astype(np.float16)
    mins = (rng.standard_normal((rows, columns // group_size)) * 0.1).astype(np.float16) if affine else None
    return IntWeight(codes, scales, bits, group_size, mins)


def _build_module(rng, kernel):
    expectations = []
    with make_context(), ir.Location.unknown():
        module = ir.Module.create()
        weights = WeightStore()
        for i, (rows, k, n, bits, group, affine, with_bias) in enumerate(LINEARS):
            q = _random_grid_weight(rng, n, k, bits, group, affine)
            bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
            x_type, y_type = vtensor_type((*rows, k), "f32"), vtensor_type((*rows, n), "f32")
            with ir.InsertionPoint(module.body):
                f = func.FuncOp(f"linear{i}", ir.FunctionType.get([x_type], [y_type]))
            with ir.InsertionPoint(f.add_entry_block()):
                y = build_int_linear(
                    f.arguments[0], weights.literal(q.codes, "si8"), weights.literal(q.scales, "f16"),
                    bits=bits, group_size=group, result_type=y_type,
                    mins=weights.literal(q.mins, "f16") if affine else None,
                    bias=None if bias is None else weights.literal(bias, "f32"),
                )
                func.ReturnOp([y.result])
            x = rng.standard_normal((*rows, k)).astype(np.float32)
            expected = x.astype(np.float64) @ q.dequantize().T.astype(np.float64) + (0 if bias is None else bias)
            expectations.append((f"linear{i}", x, expected))
        table = _random_grid_weight(rng, 40, 64, 4, 32, affine=False)
        tokens = np.array([[3, 0, 39, 3, 17]], np.int64)
        t_type, e_type = vtensor_type((1, 5), "si64"), vtensor_type((1, 5, 64), "f32")
        with ir.InsertionPoint(module.body):
            f = func.FuncOp("embedding", ir.FunctionType.get([t_type], [e_type]))
        with ir.InsertionPoint(f.add_entry_block()):
            e = build_int_embedding(f.arguments[0], weights.literal(table.codes, "si8"), weights.literal(table.scales, "f16"),
                                    bits=4, group_size=32, result_type=e_type)
            func.ReturnOp([e.result])
        expectations.append(("embedding", tokens, table.dequantize()[tokens]))
        assert module.operation.verify()
        lower_module_for_iree(module.operation, kernel=kernel)
        text = module.operation.get_asm()
    return text, expectations


@pytest.fixture(scope="module", params=["exact", "auto", "vnni"])
def compiled(request):
    """kernel=exact: the batch_matmul over groups; kernel=auto: the codes on the C kernels,
    where this host runs them, in decode and (AVX-512) for prefill codes of at most 4 bits;
    kernel=vnni: every linear on the C kernels."""
    if request.param == "vnni" and unavailable_reason():
        pytest.skip(unavailable_reason())
    text, expectations = _build_module(np.random.default_rng(0), request.param)
    assert '"harden.' not in text and "xi8>" in text  # codes stay narrow
    on_c_kernels = text.count("call @harden_ternary_kernel_") if CUSTOM_DISPATCH_ATTR in text else 0
    prefill_on_c = kernel_isa() != "AVX2"  # AVX2's prefill is slower than IREE's matmuls (bench/results-int-kernels-zen1.json)
    auto = [case for case in LINEARS if np.prod(case[0]) == 1 or (case[3] <= 4 and prefill_on_c)]
    expected = {"exact": 0, "auto": len(auto) if unavailable_reason() is None else 0, "vnni": len(LINEARS)}
    assert on_c_kernels == expected[request.param]
    if request.param == "vnni":  # 8-bit codes without the code 0 (5- and 6-bit grids) take the symmetric entry points
        widths = {(int(m["bits"]), int(m["sym"])) for m in re.finditer(r"code_bits = (?P<bits>\d+) : i64.*symmetric = (?P<sym>\d) : i64", text)}
        assert {(8, 0), (8, 1), (4, 0)} <= widths and (4, 1) not in widths
    return IreeModule(compile_vmfb(text)), expectations


@pytest.mark.parametrize("case", range(len(LINEARS) + 1))
def test_lowered_int_ops_match_numpy(compiled, case):
    module, expectations = compiled
    name, x, expected = expectations[case]
    (y,) = module.call(name, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width", vnni.CODE_WIDTHS)
def test_c_kernel_layout_holds_every_code_where_the_kernel_reads_it(width):
    """Each code at the byte and bits kernels/vnni_linear.c reads it from (the layout in its
    header, written out here element by element), padding at the zero code."""
    rng = np.random.default_rng(width)
    planes, n, k = 2, 37, 40
    codes = rng.integers(0, 2**width, (planes, n, k)).astype(np.uint8)
    weights = vnni.prepack_codes(codes, np.ones((planes, 1, 1), np.float32), n, k, 0, width)
    raw = weights.codes.view(np.uint8)
    n_pad, k_pad, per_byte = weights.padded_out, weights.padded_in, 8 // width
    assert (n_pad, k_pad) == (48, 48) and raw.size == planes * n_pad * k_pad * width // 8
    for p in range(planes):
        for row in range(n_pad):
            for column in range(k_pad):
                n1, j, kb, step, kk = row // 16, row % 16, column // 16, (column % 16) // 4, column % 4
                b, i = step // per_byte, step % per_byte
                byte = ((((p * (n_pad // 16) + n1) * (k_pad // 16) + kb) * (width // 2) + b) * 64) + 4 * j + kk
                code = (raw[byte] >> (width * i)) & (2**width - 1)
                want = codes[p, row, column] if row < n and column < k else vnni.zero_code(width)
                assert code == want, (p, row, column)


def _weight_and_hessian(seed, out_features=64, in_features=256):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((out_features, in_features)) * 0.05).astype(np.float32)
    x = rng.standard_normal((in_features, 1024)) * np.exp(rng.standard_normal(in_features))[:, None]
    x = x + 0.5 * np.roll(x, 1, 0)  # correlated inputs, as real activations are
    return w, x @ x.T


def _output_error(w, approx, hessian):
    d = (approx - w).astype(np.float64)
    return np.trace(d @ hessian @ d.T) / np.trace(w.astype(np.float64) @ hessian @ w.T)


@pytest.mark.parametrize("grid", [Grid("int", bits=4), Grid("int", bits=3), Grid("ternary", planes=1), Grid("ternary", planes=2)])
def test_gptq_moves_the_layer_output_less_than_plain_rounding(grid):
    """On correlated inputs GPTQ's error feedback halves the output error of plain rounding
    with the same least-squares scales (which itself is no worse than absmax/absmean)."""
    w, h = _weight_and_hessian(0)
    plain = quantize_gptq(w, np.diag(np.diag(h)), grid, 64)[0]
    calibrated = quantize_gptq(w, h, grid, 64)[0]
    assert _output_error(w, calibrated, h) < 0.7 * _output_error(w, plain, h)


def test_quantizers_store_what_they_dequantize_and_respect_their_grids():
    w, h = _weight_and_hessian(1)
    q = gptq_int(w, h, 4, 64)
    assert q.codes.min() >= -8 and q.codes.max() <= 7 and q.scales.dtype == np.float16 and q.scales.shape == (64, 4)
    np.testing.assert_array_equal(q.dequantize(), quantize_gptq(w, h, Grid("int", bits=4), 64)[0])
    t = gptq_ternary(w, h, 2, 64)
    assert set(np.unique(t.ternary)) <= {-1, 0, 1} and t.ternary.shape == (2, 64, 256) and t.scales.shape == (2, 64, 4)
    np.testing.assert_allclose(t.dequantize(), quantize_gptq(w, h, Grid("ternary", planes=2), 64)[0], atol=1e-7)
    assert q.stored_bits() == 64 * 256 * 4 + 16 * 64 * 4
    assert int_bits_per_weight(4, 64, 256) == 4.25 and int_bits_per_weight(4, 32, 576, affine=True) == 5.0


def test_weights_on_a_grid_convert_exactly():
    """A dequantized llama.cpp Q4_1 tensor (quantized by the gguf package) is found on the
    affine 4-bit grid with groups of 32 and converts without any change."""
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    on_grid = dequantize(quantize(w, Q.Q4_1), Q.Q4_1).reshape(w.shape)
    found = exact_affine_grid(on_grid)
    assert found is not None and found.exact and np.array_equal(found.dequantize(), on_grid)
    assert exact_affine_grid(on_grid + np.float32(1e-3)) is None
    # On the symmetric grid (each group's largest magnitude at code -8, as the quantizer
    # places it): plain rounding and GPTQ give the same weights back.
    symmetric = _random_grid_weight(rng, 16, 64, 4, 32, affine=False)
    symmetric.codes[:, ::32] = -8
    on_symmetric_grid = symmetric.dequantize()
    for again in (quantize_intn(on_symmetric_grid, 4, 32), gptq_int(on_symmetric_grid, _weight_and_hessian(4, 16, 64)[1], 4, 32)):
        np.testing.assert_array_equal(again.dequantize(), on_symmetric_grid)


def test_plain_rounding_error_is_within_half_a_step():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    q = quantize_intn(w, 6, 32)
    step = np.repeat(q.scales.astype(np.float32), 32, axis=1)
    clipped = np.abs(w) > np.abs(step) * 31.5
    assert np.all((np.abs(q.dequantize() - w) <= np.abs(step) / 2 * (1 + 1e-3)) | clipped)


def test_budget_plan_respects_the_budget_and_spends_it_where_it_pays():
    """The policy's Lagrangian search: at every budget the plan's bits fit it, the predicted
    KL falls as the budget grows, and a sensitive matrix gets more bits than a robust one."""
    from harden.passes.ternary_policy import _Choice, _lagrangian_plan
    from harden.quant.precision import Precision

    rng = np.random.default_rng(4)
    choices, factors, sizes = {}, {}, {}
    for i in range(12):
        size = sizes[f"m{i}"] = int(rng.integers(1000, 5000))
        choices[f"m{i}"] = [
            _Choice(Precision.parse(p), round(size * bits), error * (1 + rng.random()), None)
            for p, bits, error in (("t1g64", 2.5, 0.5), ("int3g64", 3.25, 0.1), ("int4g64", 4.25, 0.03), ("int8g64", 8.25, 1e-4))
        ]
        factors[f"m{i}"] = 100.0 if i == 0 else 1.0
    total = sum(sizes.values())
    previous = None
    for budget in (2.5, 3.0, 3.5, 4.0, 5.0, 9.0):
        plan, bits = _lagrangian_plan(choices, factors, budget * total)
        assert bits <= budget * total + 1e-6 and bits == sum(c.bits for c in plan.values())
        predicted = sum(factors[n] * c.error for n, c in plan.items())
        assert previous is None or predicted <= previous
        previous = predicted
        if 3.0 <= budget < 9.0:  # the sensitive matrix is among the best served
            assert plan["m0"].bits / sizes["m0"] >= max(c.bits / sizes[n] for n, c in plan.items()) - 0.01
    plan, bits = _lagrangian_plan(choices, factors, 1.0 * total)  # under the cheapest grid: the fewest bits
    assert all(c.precision == Precision.parse("t1g64") for c in plan.values())
