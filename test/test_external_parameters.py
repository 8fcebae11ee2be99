"""Weights in a parameter file: passes read and write them, IREE serves them at run time."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from harden.backend.compile import IreeModule, compile_vmfb
from harden.quant.ternary import ternarize

HARDEN_OPT = str(Path(sys.executable).parent / "harden-opt")

MODULE = """module attributes {harden.params = "weights.safetensors"} {
func.func @prefill(%x: !torch.vtensor<[1,3,8],f32>) -> !torch.vtensor<[1,3,6],f32> {
  %none = torch.constant.none
  %w = "harden.param"() {param_name = "layers.0.mlp.w1.weight"} : () -> !torch.vtensor<[6,8],f32>
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[6,8],f32>, !torch.none -> !torch.vtensor<[1,3,6],f32>
  return %y : !torch.vtensor<[1,3,6],f32>
}
}
"""


@pytest.fixture
def external_module(tmp_path):
    weight = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    save_file({"layers.0.mlp.w1.weight": weight}, str(tmp_path / "weights.safetensors"))
    (tmp_path / "m.mlir").write_text(MODULE)
    return tmp_path, weight


def harden_opt(*args):
    return subprocess.run([HARDEN_OPT, *map(str, args)], capture_output=True, text=True)


def test_ternarize_writes_new_parameters_beside_the_output(external_module):
    d, weight = external_module
    result = harden_opt(d / "m.mlir", "--harden-ternarize", "-o", d / "out" / "h.mlir")
    assert result.returncode == 1 and "directory" in result.stderr  # out/ does not exist yet
    (d / "out").mkdir()
    result = harden_opt(d / "m.mlir", "--harden-ternarize", "-o", d / "out" / "h.mlir")
    assert result.returncode == 0, result.stderr
    text = (d / "out" / "h.mlir").read_text()
    assert 'harden.params = "h.safetensors"' in text
    assert '"harden.param"() {param_name = "layers.0.mlp.w1.weight.codes"}' in text
    params = load_file(str(d / "out" / "h.safetensors"))
    assert sorted(params) == ["layers.0.mlp.w1.weight.codes", "layers.0.mlp.w1.weight.scales"]
    tw = ternarize(weight)
    np.testing.assert_array_equal(params["layers.0.mlp.w1.weight.scales"], tw.scales)


@pytest.mark.parametrize("kernel", ["exact", "auto"])
def test_lowered_module_runs_on_iree_with_its_parameters(external_module, kernel):
    d, weight = external_module
    assert harden_opt(d / "m.mlir", "--harden-ternarize", "-o", d / "h.mlir").returncode == 0
    result = harden_opt(d / "h.mlir", f"--harden-lower-to-linalg=kernel={kernel}", "-o", d / "h.lowered.mlir")
    assert result.returncode == 0, result.stderr
    lowered = (d / "h.lowered.mlir").read_text()
    assert "torch." not in lowered and "\"harden.param\"" not in lowered
    if kernel == "exact":  # the lowering re-lays the codes out for its kernel: new parameters beside the output
        assert 'harden.params = "h.lowered.safetensors"' in lowered
    # kernel=auto: re-laid out for the C kernels, or (a prompt on AVX2) the ternarized codes as they are
    parameters = re.search(r'harden.params = "([^"]+)"', lowered).group(1)
    assert parameters in ("h.lowered.safetensors", "h.safetensors")
    module = IreeModule(compile_vmfb(lowered), parameter_file=d / parameters)
    x = np.random.default_rng(1).standard_normal((1, 3, 8)).astype(np.float32)
    (y,) = module.call("prefill", x)
    np.testing.assert_allclose(y, x @ ternarize(weight).dequantize().T, rtol=1e-5, atol=1e-5)


def test_unchanged_parameters_are_referenced_not_copied(external_module):
    d, _ = external_module
    (d / "sub").mkdir()
    assert harden_opt(d / "m.mlir", "--harden-fuse-qkv", "-o", d / "sub" / "same.mlir").returncode == 0
    assert 'harden.params = "../weights.safetensors"' in (d / "sub" / "same.mlir").read_text()
    assert not (d / "sub" / "same.safetensors").exists()


def test_missing_parameter_file_is_one_clear_error(external_module):
    d, _ = external_module
    (d / "weights.safetensors").unlink()
    result = harden_opt(d / "m.mlir", "--harden-ternarize", "-o", d / "h.mlir")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"harden-opt: error: parameter file '{d / 'weights.safetensors'}' not found"]
    assert not (d / "h.mlir").exists()


def test_new_parameters_need_an_output_file(external_module):
    d, _ = external_module
    result = harden_opt(d / "m.mlir", "--harden-ternarize")
    assert result.returncode == 1
    assert "give -o FILE" in result.stderr
