"""`harden.int_linear` and `harden.int_embedding` (n-bit codes in groups, f16 scales): the
quantizers against their references, and the lowering on IREE against numpy."""

import numpy as np
import pytest
from torch_mlir import ir
from torch_mlir.dialects import func

from harden.backend.compile import IreeModule, compile_vmfb, lower_module_for_iree
from harden.core.tensor_types import vtensor_type
from harden.core.weights import WeightStore
from harden.dialects.context import make_context
from harden.dialects.harden import build_int_embedding, build_int_linear
from harden.kernels.contract import CUSTOM_DISPATCH_ATTR, unavailable_reason
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
    where this host runs them, in decode and for codes of at most 4 bits; kernel=vnni: every
    linear on the C kernels."""
    if request.param == "vnni" and unavailable_reason():
        pytest.skip(unavailable_reason())
    text, expectations = _build_module(np.random.default_rng(0), request.param)
    assert '"harden.' not in text and "xi8>" in text  # codes stay narrow
    on_c_kernels = text.count("call @harden_ternary_kernel_") if CUSTOM_DISPATCH_ATTR in text else 0
    auto = [case for case in LINEARS if np.prod(case[0]) == 1 or case[3] <= 4]
    expected = {"exact": 0, "auto": len(auto) if unavailable_reason() is None else 0, "vnni": len(LINEARS)}
    assert on_c_kernels == expected[request.param]
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


