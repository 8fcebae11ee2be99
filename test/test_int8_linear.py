"""`harden.int8_linear` (layers kept with keep-as=int8): the quantizer, and the lowering on
IREE against numpy, with the weight still one byte per element in the executable."""

import numpy as np
import pytest
from torch_mlir import ir
from torch_mlir.dialects import func

from harden.backend.compile import IreeModule, compile_vmfb, lower_module_for_iree
from harden.core.tensor_types import vtensor_type
from harden.core.weights import WeightStore
from harden.dialects.context import make_context
from harden.dialects.harden import build_int8_linear
from harden.kernels.contract import CUSTOM_DISPATCH_ATTR, unavailable_reason
from harden.quant.int8 import INT8_LEVELS, int8_bytes, quantize_int8

# (rows shape, in_features, out_features, bias)
CASES = [
    ((1, 1), 64, 48, False),  # decode: one token
    ((1, 5), 30, 20, True),
    ((7,), 37, 9, False),  # 2-D activation, odd sizes
    ((1, 1), 1100, 37, True),  # decode, odd sizes, more than 1024 columns per row
    ((128,), 48, 33, False),  # prefill
    ((1, 1), 64, 576, False),  # decode: 3 workgroups, the last one 64 rows
]
BIG = ((1, 1), 512, 384, True)  # enough weight bytes to tell i8 from f32 in the executable


def test_quantizer_error_is_within_half_a_step_and_int8_weights_are_exact():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 40)).astype(np.float32)
    w[3] = 0.0  # a row of zeros keeps scale 1 and codes 0
    q = quantize_int8(w)
    assert q.codes.dtype == np.int8 and q.scales.shape == (16, 1)
    assert np.abs(q.codes).max() == INT8_LEVELS
    assert np.all(np.abs(q.dequantize() - w) <= q.scales / 2 * (1 + 1e-6))
    assert np.all(q.codes[3] == 0) and q.scales[3, 0] == 1.0
    already = q.dequantize()
    assert np.array_equal(quantize_int8(already).dequantize(), already)
    assert int8_bytes((16, 40)) == 16 * 40 + 4 * 16


def build_module(rng, cases, kernel="auto"):
    """One function per case: f(x) = int8_linear(x); the module and numpy expectations."""
    expectations = []
    with make_context(), ir.Location.unknown():
        module = ir.Module.create()
        weights = WeightStore()
        for i, (rows, k, n, with_bias) in enumerate(cases):
            q = quantize_int8(rng.standard_normal((n, k)).astype(np.float32))
            bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
            x_type, y_type = vtensor_type((*rows, k), "f32"), vtensor_type((*rows, n), "f32")
            with ir.InsertionPoint(module.body):
                f = func.FuncOp(f"case{i}", ir.FunctionType.get([x_type], [y_type]))
            with ir.InsertionPoint(f.add_entry_block()):
                y = build_int8_linear(
                    f.arguments[0],
                    weights.literal(q.codes, "si8"),
                    weights.literal(q.scales, "f32"),
                    result_type=y_type,
                    bias=None if bias is None else weights.literal(bias, "f32"),
                )
                func.ReturnOp([y.result])
            x = rng.standard_normal((*rows, k)).astype(np.float32)
            expected = x.astype(np.float64) @ q.dequantize().T.astype(np.float64) + (0 if bias is None else bias)
            expectations.append((f"case{i}", x, expected))
        assert module.operation.verify()
        lower_module_for_iree(module.operation, kernel=kernel)
        text = module.operation.get_asm()
    return text, expectations


@pytest.fixture(scope="module", params=["exact", "auto", "vnni"])
def compiled(request):
    """kernel=exact: IREE's matmul on the i8 codes; kernel=auto: the C kernels in decode
    (prefill stays on the matmul), where this host runs them; kernel=vnni: every case on
    the C kernels."""
    if request.param == "vnni" and unavailable_reason():
        pytest.skip(unavailable_reason())
    text, expectations = build_module(np.random.default_rng(0), CASES, request.param)
    decode = [case for case in CASES if np.prod(case[0]) == 1]
    expected = {"exact": 0, "auto": len(decode) if unavailable_reason() is None else 0, "vnni": len(CASES)}
    assert (text.count("call @harden_ternary_kernel_") if CUSTOM_DISPATCH_ATTR in text else 0) == expected[request.param]
    if request.param == "vnni":  # codes in [-127, 127]: every declaration takes the symmetric 8-bit entry points
        assert text.count("symmetric = 1 : i64") == text.count(CUSTOM_DISPATCH_ATTR) > 0
    return IreeModule(compile_vmfb(text)), expectations


@pytest.mark.parametrize("case", range(len(CASES)))
def test_lowered_int8_linear_matches_numpy(compiled, case):
    module, expectations = compiled
    name, x, expected = expectations[case]
    (y,) = module.call(name, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [(1, 1), (1, 8)])
def test_the_executable_keeps_the_weight_in_int8(rows):
    """Decode multiplies the i8 codes; a prompt dequantizes them in the call (IREE must not
    fold that into an f32 constant)."""
    text, [(name, x, expected)] = build_module(np.random.default_rng(1), [(rows, *BIG[1:])])
    assert "xi8>" in text and '"harden.' not in text
    vmfb = compile_vmfb(text)
    _, k, n, _ = BIG
    # i8 codes are k*n bytes; widened to f32 at compile time they would be 4x that.
    assert k * n <= len(vmfb) < 2 * k * n
    (y,) = IreeModule(vmfb).call(name, x)
    # f32 sums over 512 columns (|y| up to ~1): rounding reaches ~1e-5 in absolute terms
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=3e-5)


@pytest.mark.parametrize("frontend", ["reference", "hf"])
def test_layer_groups_name_the_same_layers_whatever_the_frontend(frontend, tmp_path):
    """keep=layers.0.attention,output keep-as=int8 keeps the same linears of a reference
    export (layers.0.attention.wq...) and of a Hugging Face one (model.layers.0.self_attn...),
    and a pattern that names nothing is an error listing the groups there are."""
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    module = tmp_path / "m.mlir"
    imported = subprocess.run([bin_dir / "harden-import", "--random-init", "tiny", "--frontend", frontend, "--seq-len", "4",
                               "--max-seq-len", "8", "--entry", "decode", "-o", module], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    kept = subprocess.run([bin_dir / "harden-opt", module, "--harden-fuse-qkv", "--harden-ternarize=keep=layers.0.attention,output keep-as=int8"],
                          capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    # layer 0's fused q/k/v and o, and the classifier in int8; layer 0's MLP and all of layer 1 ternary.
    assert kept.stdout.count('"harden.int8_linear"') == 3 and kept.stdout.count('"harden.ternary_linear"') == 3 + 5
    wrong = subprocess.run([bin_dir / "harden-opt", module, "--harden-ternarize=keep=model.layers.0.attn"], capture_output=True, text=True)
    lines = wrong.stderr.strip().splitlines()
    assert wrong.returncode == 1 and len(lines) == 1, wrong.stderr
    assert "keep pattern 'model.layers.0.attn' matches no weight of the module; layer groups: " \
        "layers.N.attention and layers.N.feed_forward for N in 0..1, output, tok_embeddings" in lines[0]
