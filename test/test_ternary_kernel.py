"""The lowered ternary_linear kernel against the numpy reference, on IREE, for random shapes.

Shapes include in_features not divisible by 4 (packing) or by the group size, every
scale kind, one and two planes, with and without bias, and 2-D and 3-D activations.
All cases go into one module so IREE compiles once.
"""

import numpy as np
import pytest
from torch_mlir import ir
from torch_mlir.dialects import func

from harden.core.context import make_context
from harden.core.tensor_types import vtensor_type
from harden.core.weights import WeightStore
from harden.dialects.harden import build_ternary_linear
from harden.dialects.ternary_pack import pack_ternary_2bit, ternary_linear_reference
from harden.dialects.ternary_quant import ternarize
from harden.runtime.iree_exec import IreeModule, compile_vmfb, lower_module_for_iree, prepare_for_iree

# (rows shape, in_features, out_features, scale kind, group size, planes, bias)
CASES = [
    ((1, 1), 64, 48, "channel", 0, 1, False),  # decode: one token
    ((1, 5), 30, 20, "group", 8, 2, True),  # 30 = not a multiple of 4 nor of 8
    ((7,), 37, 9, "tensor", 0, 2, False),  # 2-D activation, odd sizes
    ((2, 3), 96, 33, "group", 32, 1, True),
    ((1, 4), 10, 6, "group", 3, 1, False),  # group of 3, last group of 1 column
]


def build_module(rng, activations):
    """One function per case: f(x) = ternary_linear(x); returns the module and numpy expectations."""
    ctx = make_context()
    expectations = []
    with ctx, ir.Location.unknown():
        module = ir.Module.create()
        weights = WeightStore()
        for i, (rows, k, n, kind, group, planes, with_bias) in enumerate(CASES):
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


@pytest.fixture(scope="module", params=[("exact", "f32"), ("reference", "f32"), ("exact", "int8")], ids="-".join)
def compiled_cases(request):
    kernel, activations = request.param
    module, expectations = build_module(np.random.default_rng(0), activations)
    lower_module_for_iree(module.operation, kernel=kernel, activations=activations)
    text = module.operation.get_asm()
    if kernel == "exact":  # the kernel's tiling reaches IREE as compilation_info
        assert "harden.cpu_tiling" in text
        prepared = prepare_for_iree(text)
        assert "harden.cpu_tiling" not in prepared
        assert "#iree_codegen.compilation_info" in prepared
    return IreeModule(compile_vmfb(text)), expectations


@pytest.mark.parametrize("case", range(len(CASES)))
def test_lowered_kernel_matches_numpy_reference(compiled_cases, case):
    module, expectations = compiled_cases
    name, x, expected = expectations[case]
    (y,) = module.call(name, x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
