"""harden-run: IREE against PyTorch or another module, tolerances, JSON, cache, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from torch_mlir import ir

from harden.core.diagnostics import DiagnosticSink
from harden.core.graph import ops_named
from harden.core.pass_base import Pass
from harden.core.source import parse_module
from harden.core.weights import WeightStore
from harden.dialects.context import make_context
from harden.frontend.checkpoints import open_model
from harden.frontend.importer import import_model
from harden.pipelines.pass_manager import run_steps

BIN = Path(sys.executable).parent
JSON_KEYS = {
    "max_abs_err", "mean_abs_err", "cosine", "top1_agreement", "kl",
    "prefill_tokens_per_s", "decode_tokens_per_s", "reference", "model",
}


class DoubleFirstWeight(Pass):
    """Test pass: doubles the first linear weight of each function (a deliberately wrong model)."""

    name = "test-double-first-weight"

    def run(self, module, ctx):
        seen = set()
        for op in ops_named(module, "torch.aten.linear"):
            func = op.operation.parent.opview.sym_name.value
            if func not in seen:
                seen.add(func)
                with ir.InsertionPoint(op):
                    op.operands[1] = ctx.weights.literal(2 * ctx.weights.value_of(op.operands[1]), "f32")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    module = import_model(open_model("tiny"), seq_len=16, max_seq_len=32).module
    text = module.operation.get_asm()
    (d / "tiny.mlir").write_text(text)
    ctx = make_context()
    wrong = parse_module(text, "tiny.mlir", ctx)
    assert run_steps(wrong, [DoubleFirstWeight()], DiagnosticSink(), weights=WeightStore())
    (d / "wrong.mlir").write_text(wrong.get_asm())
    return d


def harden_run(workdir, *args):
    env = {"HARDEN_CACHE_DIR": str(workdir / "cache"), "PATH": str(BIN)}
    return subprocess.run([str(BIN / "harden-run"), *map(str, args)], capture_output=True, text=True, cwd=workdir, env=env)


def test_unhardened_import_matches_torch_and_second_run_hits_the_cache(workdir):
    first = harden_run(workdir, "tiny.mlir", "--samples", "2", "--json", "r1.json", "--atol", "1e-4", "--min-top1", "1.0")
    assert first.returncode == 0, first.stderr
    result = json.loads((workdir / "r1.json").read_text())
    assert JSON_KEYS <= set(result)
    assert result["max_abs_err"] <= 1e-4
    assert result["top1_agreement"] == 1.0
    assert result["kl"] < 1e-6 and result["cosine"] > 0.999999
    assert result["prefill_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0
    assert result["reference"]["kind"] == "torch" and result["reference"]["decode_tokens_per_s"] > 0
    assert result["model"]["generation"] == result["reference"]["generation"]
    assert len(result["model"]["generation"]) == 16
    assert not result["model"]["cache_hit"]
    assert "top-1 agreement" in first.stdout and "greedy generation" in first.stdout

    second = harden_run(workdir, "tiny.mlir", "--samples", "2", "--json", "r2.json")
    assert second.returncode == 0, second.stderr
    assert json.loads((workdir / "r2.json").read_text())["model"]["cache_hit"]
    assert "compiling" not in second.stderr


def test_a_wrong_model_fails_the_named_tolerance(workdir):
    result = harden_run(workdir, "wrong.mlir", "--samples", "2", "--min-top1", "0.99", "--max-kl", "10")
    assert result.returncode == 1
    assert "harden-run: tolerance exceeded: top1_agreement" in result.stderr
    assert "< --min-top1 0.99" in result.stderr
    assert "--max-kl" not in result.stderr


def test_reference_can_be_another_module_with_prompt_ids(workdir):
    result = harden_run(workdir, "wrong.mlir", "--reference", "tiny.mlir", "--prompt-ids", "1,5,7,9", "--generate", "4", "--json", "r3.json")
    assert result.returncode == 0, result.stderr
    data = json.loads((workdir / "r3.json").read_text())
    assert data["reference"]["kind"] == "mlir" and data["max_abs_err"] > 1e-3
    assert data["model"]["prompt"] == [1, 5, 7, 9]


def test_reference_none_is_a_speed_only_run_that_says_so(workdir):
    """Without a reference (an 8B model's PyTorch twin does not fit memory) harden-run times
    and generates with the module alone; the module without provenance needs nothing else."""
    module = parse_module((workdir / "tiny.mlir").read_text(), "tiny.mlir", make_context())
    del module.attributes["harden.provenance"]
    (workdir / "bare.mlir").write_text(module.get_asm())
    result = harden_run(workdir, "bare.mlir", "--reference", "none", "--prompt-ids", "1,5,7", "--generate", "4", "--json", "none.json")
    assert result.returncode == 0, result.stderr
    assert "reference  none: a speed-only run, no accuracy numbers" in result.stdout
    data = json.loads((workdir / "none.json").read_text())
    assert data["reference"] == {"kind": "none"} and data["decode_tokens_per_s"] > 0
    assert "kl" not in data and len(data["model"]["generation"]) == 4
    # the same tokens as the torch-referenced run generates
    full = harden_run(workdir, "tiny.mlir", "--prompt-ids", "1,5,7", "--generate", "4", "--json", "full.json")
    assert full.returncode == 0, full.stderr
    assert json.loads((workdir / "full.json").read_text())["model"]["generation"] == data["model"]["generation"]
    line = one_error_line(harden_run(workdir, "tiny.mlir", "--reference", "none", "--min-top1", "0.9"), 2)
    assert "--reference none is a speed-only run" in line


def test_corrupt_cache_entry_is_recompiled(workdir):
    harden_run(workdir, "tiny.mlir", "--samples", "1")
    for entry in (workdir / "cache").glob("*.vmfb"):
        entry.write_bytes(entry.read_bytes()[:100])
    result = harden_run(workdir, "tiny.mlir", "--samples", "1", "--json", "r4.json")
    assert result.returncode == 0, result.stderr
    assert not json.loads((workdir / "r4.json").read_text())["model"]["cache_hit"]


def one_error_line(result, code):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("harden-run: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_module_without_provenance_needs_a_reference(workdir):
    module = parse_module((workdir / "tiny.mlir").read_text(), "tiny.mlir", make_context())
    del module.attributes["harden.provenance"]
    (workdir / "anonymous.mlir").write_text(module.get_asm())
    line = one_error_line(harden_run(workdir, "anonymous.mlir"), 2)
    assert "records no provenance" in line and "--reference FILE.mlir" in line


def test_modules_with_different_signatures_are_refused(workdir):
    (workdir / "short.mlir").write_text(import_model(open_model("tiny"), seq_len=8, max_seq_len=32).module.operation.get_asm())
    line = one_error_line(harden_run(workdir, "tiny.mlir", "--reference", "short.mlir"), 2)
    assert "different signatures for 'prefill'" in line


def test_iree_compile_failure_shows_iree_diagnostic(workdir):
    # Valid MLIR that IREE's CPU backend cannot compile (a GPU thread id on the host).
    source = """func.func @prefill(%t: tensor<1x4xi64>) -> (tensor<1x4x8xf32>, tensor<1x1x1x8x2xf32>, tensor<1x1x1x8x2xf32>) {
  %0 = tensor.empty() : tensor<1x4x8xf32>
  %tid = gpu.thread_id x
  %i = arith.index_cast %tid : index to i64
  %c = arith.sitofp %i : i64 to f32
  %1 = linalg.fill ins(%c : f32) outs(%0 : tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %k = tensor.empty() : tensor<1x1x1x8x2xf32>
  return %1, %k, %k : tensor<1x4x8xf32>, tensor<1x1x1x8x2xf32>, tensor<1x1x1x8x2xf32>
}
func.func @decode(%t: tensor<1x1xi64>, %p: tensor<1xi64>, %k: tensor<1x1x1x8x2xf32>, %v: tensor<1x1x1x8x2xf32>)
    -> (tensor<1x1x8xf32>, tensor<1x1x1x8x2xf32>, tensor<1x1x1x8x2xf32>) {
  %0 = tensor.empty() : tensor<1x1x8xf32>
  return %0, %k, %v : tensor<1x1x8xf32>, tensor<1x1x1x8x2xf32>, tensor<1x1x1x8x2xf32>
}
"""
    (workdir / "uncompilable.mlir").write_text(source)
    result = harden_run(workdir, "uncompilable.mlir", "--reference", "tiny.mlir", "--no-cache")
    assert result.returncode == 2  # the signatures differ: caught before compiling
    result = harden_run(workdir, "uncompilable.mlir", "--reference", "uncompilable.mlir", "--no-cache")
    line = one_error_line(result, 1)
    assert line == "harden-run: error: IREE failed to compile 'uncompilable.mlir':"
    assert "uncompilable.mlir:5:8: error: 'vm.cast.si64.f32' op operand #0 must be 64-bit signless integer" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.mlir"], "cannot open 'missing.mlir': no such file"),
        (["tiny.mlir", "--prompt-ids", "1,x"], "--prompt-ids must be comma-separated integers"),
        (["tiny.mlir", "--seq-len", "99"], "--seq-len must be in [1, 16]"),
        (["tiny.mlir", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_usage_errors_exit_2(workdir, args, message):
    assert message in one_error_line(harden_run(workdir, *args), 2)


def test_a_file_that_is_not_text_is_one_clear_error(workdir):
    (workdir / "noise.bin").write_bytes(bytes(range(256)) * 8)
    assert "cannot read 'noise.bin': not a UTF-8 text file" in one_error_line(harden_run(workdir, "noise.bin"), 2)


def test_kv_caches_larger_than_memory_are_refused_before_compiling(workdir, monkeypatch, capsys):
    """A module whose KV caches cannot be held (as an 8B import at its 131072-position context
    would need 64 GiB) is refused before lowering and compiling, naming the positions, the
    memory and the fix. The tiny import's caches hold 32 positions: 8 KiB each (2 layers x 2 KV
    heads x 32 x 16 f32), 32 KiB per step in and out, here against a machine with 24 KiB free."""
    from harden.backend import modules
    from harden.tools import harden_run as tool

    monkeypatch.setattr(modules, "available_memory_bytes", lambda: 24 * 1024)
    monkeypatch.setattr(modules, "lower_module_for_iree", lambda module: pytest.fail("lowered before the check"))
    assert tool.main([str(workdir / "tiny.mlir"), "--reference", "none"]) == 2  # as every module harden-run cannot take
    err = capsys.readouterr().err
    assert err == (f"harden-run: error: '{workdir / 'tiny.mlir'}': its KV caches of 32 positions need 32.0 KiB per decode step "
                   "(keys and values, passed in and returned), more than the 24.0 KiB of memory available; "
                   "import it with a smaller --max-seq-len\n")


def test_a_module_without_the_caches_in_its_results_is_refused(workdir):
    """prefill and decode must return (logits, k_cache, v_cache), the caches of decode's
    arguments: a module from elsewhere that returns logits alone failed inside the engine."""
    (workdir / "no_caches.mlir").write_text("""func.func @prefill(%t: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %0 = tensor.empty() : tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}
func.func @decode(%t: tensor<1x1xi64>, %p: tensor<1xi64>, %k: tensor<1x1x1x8x2xf32>, %v: tensor<1x1x1x8x2xf32>) -> tensor<1x1x8xf32> {
  %0 = tensor.empty() : tensor<1x1x8xf32>
  return %0 : tensor<1x1x8xf32>
}
""")
    line = one_error_line(harden_run(workdir, "no_caches.mlir", "--reference", "none"), 2)
    assert line == ("harden-run: error: 'no_caches.mlir' does not have harden-import's prefill(tokens) -> (logits, k_cache, v_cache) "
                    "and decode(token, pos, k_cache, v_cache) -> (logits, k_cache, v_cache)")


def test_a_reference_model_larger_than_memory_is_refused_before_it_loads(workdir, monkeypatch, capsys):
    """--reference torch (the default) builds the PyTorch model of the provenance; one that
    cannot fit (an 8B's 32 GB of f32 on a 24 GiB machine) is refused before it loads or
    anything compiles, naming --reference none, not ended by the kernel's OOM kill."""
    from harden.backend import modules
    from harden.frontend import provenance
    from harden.tools import harden_run as tool

    monkeypatch.setattr(provenance, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(modules, "compile_vmfb", lambda *a, **k: pytest.fail("compiled before the check"))
    assert tool.main([str(workdir / "tiny.mlir"), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"harden-run: error: '{workdir / 'tiny.mlir'}': the PyTorch model of 'tiny' needs 0.0 GiB of f32 weights, "
                          "more than the 0.0 GiB of memory available; --reference none runs the module alone") and err.count("\n") == 1, err
