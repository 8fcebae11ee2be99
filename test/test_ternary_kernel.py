"""The lowered ternary_linear kernel against the numpy reference, on IREE, for random shapes.

Shapes include in_features not divisible by 4 (packing) or by the group size, every
scale kind, one and two planes, with and without bias, and 2-D and 3-D activations.
All cases go into one module so IREE compiles once per (kernel, activations).
kernel=vnni runs the C kernels where the scale groups fit them (decode: one token;
prefill: 6 and 7 tokens, i.e. the four-token blocks and the rest) and falls back to
the exact kernel for groups of 8 and 3 in the same module.
"""

import re

import numpy as np
import pytest
from torch_mlir import ir
from torch_mlir.dialects import func

from harden.backend.compile import IreeModule, compile_vmfb, lower_module_for_iree, prepare_for_iree
from harden.core.diagnostics import DiagnosticSink
from harden.core.tensor_types import vtensor_type
from harden.core.weights import WeightStore
from harden.dialects.context import make_context
from harden.dialects.harden import build_ternary_linear
from harden.dialects.ternary_pack import pack_ternary_2bit, ternary_linear_reference
from harden.kernels import contract
from harden.kernels.contract import CUSTOM_DISPATCH_ATTR
from harden.passes.lower_harden import LowerHardenOps
from harden.pipelines.pass_manager import run_steps
from harden.quant.ternary import ternarize

# (rows shape, in_features, out_features, scale kind, group size, planes, bias)
CASES = [
    ((1, 1), 64, 48, "channel", 0, 1, False),  # decode: one token
    ((1, 5), 30, 20, "group", 8, 2, True),  # 30 = not a multiple of 4 nor of 8
    ((7,), 37, 9, "tensor", 0, 2, False),  # 2-D activation, odd sizes
    ((2, 3), 96, 33, "group", 32, 1, True),
    ((1, 4), 10, 6, "group", 3, 1, False),  # group of 3, last group of 1 column
    ((1,), 40, 70, "group", 16, 2, True),  # decode with 3 groups (the last partial), padded rows
]


def build_module(rng, activations, cases=CASES):
    """One function per case: f(x) = ternary_linear(x); returns the module and numpy expectations."""
    ctx = make_context()
    expectations = []
    with ctx, ir.Location.unknown():
        module = ir.Module.create()
        weights = WeightStore()
        for i, (rows, k, n, kind, group, planes, with_bias) in enumerate(cases):
            w = rng.standard_normal((n, k)).astype(np.float32)
            tw = ternarize(w, "absmean", kind, group, planes)
            packed = pack_ternary_2bit(tw.ternary)
            bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
            x_type, y_type = vtensor_type((*rows, k), "f32"), vtensor_type((*rows, n), "f32")
            with ir.InsertionPoint(module.body):
                f = func.FuncOp(f"case{i}", ir.FunctionType.get([x_type], [y_type]))
            with ir.InsertionPoint(f.add_entry_block()):
                y = build_ternary_linear(
                    f.arguments[0],
                    weights.literal(packed, "si8"),
                    weights.literal(tw.scales, "f32"),
                    in_features=k,
                    out_features=n,
                    group_size=tw.group_size,
                    planes=planes,
                    scale_kind=kind,
                    result_type=y_type,
                    bias=None if bias is None else weights.literal(bias, "f32"),
                )
                func.ReturnOp([y.result])
            x = rng.standard_normal((*rows, k)).astype(np.float32)
            expected = ternary_linear_reference(x, packed, tw.scales, k, tw.group_size, bias, activations)
            expectations.append((f"case{i}", x, expected))
        assert module.operation.verify()
    return module, expectations


KERNELS = [("exact", "f32"), ("reference", "f32"), ("exact", "int8"), ("vnni", "f32"), ("vnni", "int8"), ("auto", "f32"), ("auto", "int8")]


@pytest.fixture(scope="module", params=KERNELS, ids="-".join)
def compiled_cases(request):
    kernel, activations = request.param
    if kernel == "vnni" and contract.unavailable_reason():
        pytest.skip(f"C kernels unavailable: {contract.unavailable_reason()}")
    module, expectations = build_module(np.random.default_rng(0), activations)
    lower_module_for_iree(module.operation, kernel=kernel, activations=activations)
    text = module.operation.get_asm()
    if kernel in ("exact", "vnni"):  # the exact kernel's tiling reaches IREE as compilation_info
        assert "harden.cpu_tiling" in text
        prepared = prepare_for_iree(text)
        assert "harden.cpu_tiling" not in prepared
        assert "#iree_codegen.compilation_info" in prepared
    if kernel == "vnni":  # C kernels where the groups fit, defined as custom dispatches for IREE
        assert CUSTOM_DISPATCH_ATTR in text and "torch.verify" not in text
        assert CUSTOM_DISPATCH_ATTR not in prepared and "hal.executable.objects" in prepared
    return IreeModule(compile_vmfb(text)), expectations


@pytest.mark.parametrize("case", range(len(CASES)))
def test_lowered_kernel_matches_numpy_reference(compiled_cases, case):
    module, expectations = compiled_cases
    name, x, expected = expectations[case]
    (y,) = module.call(name, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def lower_one(group_size, kernel="vnni", rows=(1,)):
    """One group-scaled ternary_linear lowered by harden-lower-harden-ops; (IR text, diagnostics)."""
    module, _ = build_module(np.random.default_rng(0), "f32", [(rows, 48, 16, "group", group_size, 1, False)])
    sink = DiagnosticSink(remarks=True)
    assert run_steps(module.operation, [LowerHardenOps(kernel=kernel)], sink)
    return module.operation.get_asm(), [d.format() for d in sink.items]


@pytest.mark.skipif(bool(contract.unavailable_reason()), reason=f"C kernels unavailable: {contract.unavailable_reason()}")
def test_vnni_falls_back_to_the_exact_kernel_for_groups_it_cannot_take():
    text, diagnostics = lower_one(group_size=24)
    assert CUSTOM_DISPATCH_ATTR not in text and "harden.cpu_tiling" in text
    assert diagnostics == ["harden: remark: kernel=vnni falls back to the exact kernel: group size 24 is not a multiple of 16"]
    text, diagnostics = lower_one(group_size=16)
    assert CUSTOM_DISPATCH_ATTR in text and "harden.cpu_tiling" not in text and diagnostics == []


def test_vnni_falls_back_to_the_exact_kernel_where_the_c_kernels_cannot_run(monkeypatch):
    monkeypatch.setattr("harden.passes.lower_harden.vnni_unavailable_reason", lambda: "this CPU lacks avx512_vnni")
    text, diagnostics = lower_one(group_size=16)
    assert CUSTOM_DISPATCH_ATTR not in text and "harden.cpu_tiling" in text
    assert diagnostics == [
        "harden: warning: kernel=vnni falls back to the exact kernel for every ternary_linear: this CPU lacks avx512_vnni"
    ]


def test_auto_kernel_is_vnni_where_the_c_kernels_run_and_exact_without_a_warning_elsewhere(monkeypatch):
    monkeypatch.setattr("harden.passes.lower_harden.vnni_unavailable_reason", lambda: None)
    text, diagnostics = lower_one(group_size=16, kernel="auto")
    assert CUSTOM_DISPATCH_ATTR in text and "harden.cpu_tiling" not in text and diagnostics == []
    monkeypatch.setattr("harden.passes.lower_harden.vnni_unavailable_reason", lambda: "this CPU lacks avx512_vnni")
    text, diagnostics = lower_one(group_size=16, kernel="auto")
    assert CUSTOM_DISPATCH_ATTR not in text and "harden.cpu_tiling" in text and diagnostics == []


def test_auto_runs_prompts_on_the_f32_matmul_of_the_dequantized_weight_on_avx2(monkeypatch):
    """On AVX2 the C kernels' exact prompt path is slower than IREE's f32 matmul: kernel=auto
    dequantizes the weight once per call there (numerics: test_lowered_kernel_matches_numpy_reference,
    auto-*), and keeps decode on the C kernels; AVX-512 keeps both on the C kernels."""
    monkeypatch.setattr("harden.passes.lower_harden.vnni_unavailable_reason", lambda: None)
    monkeypatch.setattr("harden.passes.lower_harden.kernel_isa", lambda: "AVX2")
    text, _ = lower_one(group_size=16, kernel="auto", rows=(1, 7))
    assert CUSTOM_DISPATCH_ATTR not in text and "harden.cpu_tiling" not in text
    assert re.search(r"linalg\.matmul ins\(%\S+, %\S+ : tensor<7x48xf32>, tensor<48x16xf32>\)", text)
    text, _ = lower_one(group_size=16, kernel="auto", rows=(1, 1))
    assert CUSTOM_DISPATCH_ATTR in text
    monkeypatch.setattr("harden.passes.lower_harden.kernel_isa", lambda: "AVX-512 VNNI")
    text, _ = lower_one(group_size=16, kernel="auto", rows=(1, 7))
    assert CUSTOM_DISPATCH_ATTR in text
