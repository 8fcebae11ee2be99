"""Logit metrics and the compile cache."""

import numpy as np

from harden.backend.cache import CompileCache
from harden.eval.metrics import compare_logits


def test_identical_logits_are_perfect():
    logits = np.random.default_rng(0).standard_normal((2, 5, 11)).astype(np.float32)
    m = compare_logits(logits, logits)
    assert m["max_abs_err"] == 0 and m["kl"] == 0 and m["top1_agreement"] == 1
    assert abs(m["cosine"] - 1) < 1e-12


def test_metrics_match_a_hand_computed_case():
    ref = np.array([[0.0, np.log(3.0)]])  # p = (1/4, 3/4)
    out = np.array([[np.log(3.0), 0.0]])  # q = (3/4, 1/4)
    m = compare_logits(ref, out)
    expected_kl = 0.25 * np.log((1 / 4) / (3 / 4)) + 0.75 * np.log((3 / 4) / (1 / 4))
    assert abs(m["kl"] - expected_kl) < 1e-12
    assert m["top1_agreement"] == 0
    assert abs(m["max_abs_err"] - np.log(3.0)) < 1e-12
    assert abs(m["cosine"]) < 1e-12


def test_cache_hits_and_recovers_from_corruption(tmp_path):
    cache = CompileCache(tmp_path)
    calls = []

    def compile_fn():
        calls.append(1)
        return b"flatbuffer-bytes"

    data, hit = cache.get_or_compile("module {}", ["--flag"], compile_fn)
    assert (data, hit) == (b"flatbuffer-bytes", False)
    assert cache.get_or_compile("module {}", ["--flag"], compile_fn) == (b"flatbuffer-bytes", True)
    assert cache.get_or_compile("module {}", ["--other"], compile_fn)[1] is False
    for entry in tmp_path.glob("*.vmfb"):
        entry.write_bytes(b"truncat")
    data, hit = cache.get_or_compile("module {}", ["--flag"], compile_fn)
    assert (data, hit) == (b"flatbuffer-bytes", False)
    assert len(calls) == 3


def test_cache_misses_on_another_cpu_or_kernel_object(tmp_path, monkeypatch):
    """`--iree-llvmcpu-target-cpu=host` compiles for this CPU and custom dispatches link the C
    kernel object: a cache shared between machines (or kept over a rebuilt object) must not
    hand one CPU's code to another."""
    from harden.kernels import contract

    cache = CompileCache(tmp_path)
    text = 'func.func private @k() attributes {harden.ternary_vnni = {}}'
    kernel = tmp_path / "kernel.o"
    kernel.write_bytes(b"object one")
    monkeypatch.setattr(contract, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(contract, "kernel_build", lambda: (kernel, "AVX2"))
    compile_fn = lambda: b"flatbuffer"
    assert cache.get_or_compile(text, ["--flag"], compile_fn)[1] is False
    assert cache.get_or_compile(text, ["--flag"], compile_fn)[1] is True
    kernel.write_bytes(b"object two")
    assert cache.get_or_compile(text, ["--flag"], compile_fn)[1] is False
    monkeypatch.setattr(contract, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    assert cache.get_or_compile(text, ["--flag"], compile_fn)[1] is False
    # a module without custom dispatches does not depend on the object
    assert cache.get_or_compile("module {}", ["--flag"], compile_fn)[1] is False
    kernel.write_bytes(b"object three")
    assert cache.get_or_compile("module {}", ["--flag"], compile_fn)[1] is True
