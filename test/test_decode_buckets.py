"""Decode buckets: `decode_<B>` functions over caches of B < T positions, which the IREE
engine holds the caches at while the position is below B, so a decode step costs what the
filled positions need (and prefill_<B> gives the prompt's caches at the smallest bucket).
Checked: the functions harden-import writes, a prompt and a greedy
continuation crossing every bucket boundary on IREE against torch (the logits and tokens
unchanged), the pipeline hardening every bucket, and the errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harden.backend.compile import IreeModule, compile_vmfb, lower_module_for_iree
from harden.backend.engines import IreeEngine, TorchEngine
from harden.core.graph import functions
from harden.core.source import parse_module
from harden.dialects.context import make_context
from harden.eval.evaluate import run_prompt
from harden.frontend.importer import default_decode_buckets, import_model
from harden.frontend.llama2c import open_embedded
from harden.frontend.provenance import exported_model_from_provenance, load_provenance
from harden.frontend.weights import FrontendError

BIN = Path(sys.executable).parent
PROMPT = [1] + [(i * 37) % 500 + 2 for i in range(89)]  # 90 tokens: past 32, 64 and into the full cache


def test_default_buckets_are_powers_of_two_below_large_caches():
    assert default_decode_buckets(2048) == (256, 512, 1024)
    assert default_decode_buckets(8192) == (256, 512, 1024, 2048, 4096)
    assert default_decode_buckets(512) == ()


@pytest.fixture(scope="module")
def bucketed():
    imported = import_model(open_embedded("stories260k"), seq_len=16, max_seq_len=128, decode_buckets=(32, 64))
    module = parse_module(imported.mlir_text(), "bucketed", make_context())
    names = [f.sym_name.value for f in functions(module)]
    torch_model = exported_model_from_provenance(load_provenance(module))
    lower_module_for_iree(module)
    iree = IreeModule(compile_vmfb(module.get_asm(), ["--iree-opt-const-eval=false"]))
    return names, IreeEngine(iree, 16, 128, "iree", (32, 64), prefill_bucket=32), TorchEngine(torch_model, 16, 128)


def test_import_writes_one_decode_per_bucket(bucketed):
    names, _, _ = bucketed
    assert names == ["prefill", "decode", "decode_32", "decode_64", "prefill_32", "prefill_last_32"]


def test_buckets_change_no_logit(bucketed):
    _, iree, torch_engine = bucketed
    got, state = run_prompt(iree, PROMPT)
    expected, _ = run_prompt(torch_engine, PROMPT)
    assert np.abs(got - expected).max() < 1e-4
    assert state.length == 128  # the last step (position 89) ran on the full cache
    _, state = run_prompt(iree, PROMPT[:40])
    assert state.length == 64  # position 39: the 64-position bucket
    _, state = iree.prefill(np.array([PROMPT[:16]]))
    assert state.length == 32  # the prompt's caches come out at the smallest bucket


def test_bucket_sizes_are_checked():
    with pytest.raises(FrontendError, match="decode buckets must be distinct sizes above --seq-len 16 and below --max-seq-len 128, got 8"):
        import_model(open_embedded("stories260k"), seq_len=16, max_seq_len=128, decode_buckets=(8,))


def test_pipeline_hardens_every_bucket_and_generation_agrees(tmp_path):
    def tool(*args):
        return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, cwd=tmp_path,
                              env={"PATH": str(BIN), "HARDEN_CACHE_DIR": str(tmp_path / "cache")})

    result = tool("harden-import", "--model", "stories260k", "--seq-len", "16", "--max-seq-len", "128", "--decode-buckets", "32,64", "-o", "m.mlir")
    assert result.returncode == 0, result.stderr
    result = tool("harden-opt", "--harden-pipeline=policy=none machine=tsp report=rep.json", "m.mlir", "-o", "h.mlir")
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "rep.json").read_text())["layers"]
    for function in ("prefill", "decode", "decode_32", "decode_64", "prefill_32", "prefill_last_32"):  # 5 layers x (qkv, o, w1, w2, w3) each
        assert sum(row["function"] == function for row in rows) == 25
    # The hardened module against the same module without buckets: one decode per token either way.
    result = tool("harden-import", "--model", "stories260k", "--seq-len", "16", "--max-seq-len", "128", "--decode-buckets", "none",
                  "--entry", "prefill,decode", "-o", "one.mlir")
    assert result.returncode == 0, result.stderr
    assert tool("harden-opt", "--harden-pipeline=policy=none machine=tsp", "one.mlir", "-o", "h1.mlir").returncode == 0
    ids = ",".join(map(str, PROMPT[:30]))
    result = tool("harden-run", "h.mlir", "--reference", "h1.mlir", "--prompt-ids", ids, "--generate", "40", "--atol", "1e-4", "--json", "run.json")
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["model"]["generation"] == run["reference"]["generation"]


def test_bad_bucket_list_is_a_usage_error(tmp_path):
    result = subprocess.run([str(BIN / "harden-import"), "--model", "stories260k", "--decode-buckets", "12,x", "-o", str(tmp_path / "m.mlir")], capture_output=True, text=True)
    assert result.returncode == 2 and "--decode-buckets takes sizes separated by commas or 'none', got '12,x'" in result.stderr
    assert not (tmp_path / "m.mlir").exists()
