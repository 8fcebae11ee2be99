"""Llama-3.1-8B on a 24 GiB machine (`make test-slow`; skipped by `make test`).

The seeded random-init shape is imported tensor by tensor into its parameter file (32 GB of
f32), ternarized (the classifier in int8) and lowered tensor by tensor (no schedule: the
chip projection is `make projection`'s), compiled by IREE with
its parameters and decoded by harden-run without a reference. Each tool's peak resident
memory (`/usr/bin/time -v`) stays within 12 GiB. About 40 minutes on 2 cores and 40 GB of
free disk in the temporary directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PEAK_GIB = 12


def _timed(command: list) -> tuple[subprocess.CompletedProcess, float]:
    """Runs a tool under /usr/bin/time -v; the result and its peak resident GiB."""
    result = subprocess.run(["/usr/bin/time", "-v", *map(str, command)], capture_output=True, text=True)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    return result, int(peak.group(1)) / 2**20 if peak else float("nan")


@pytest.mark.slow
def test_llama_3_1_8b_imports_hardens_and_decodes_within_12_gib(tmp_path):
    model, hardened = tmp_path / "l8.mlir", tmp_path / "l8.h.mlir"
    result, peak = _timed([BIN / "harden-import", "--random-init", "llama-3.1-8b", "--seq-len", "16", "--max-seq-len", "256",
                           "--decode-buckets", "none", "--quiet", "-o", model])
    assert result.returncode == 0, result.stderr[-2000:]
    assert peak <= PEAK_GIB, f"harden-import peaked at {peak:.1f} GiB"
    assert (tmp_path / "l8.safetensors").stat().st_size > 32e9  # f32 weights, streamed
    result, peak = _timed([BIN / "harden-opt", "--harden-pipeline=policy=none keep=output keep-as=int8 schedule=false", model, "-o", hardened, "--quiet"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert peak <= PEAK_GIB, f"harden-opt peaked at {peak:.1f} GiB"
    (tmp_path / "l8.safetensors").unlink()  # the ternary module has its own parameter file
    result, peak = _timed([BIN / "harden-run", hardened, "--reference", "none", "--prompt-ids", "1,15043,29892,590",
                           "--generate", "16", "--json", tmp_path / "run.json", "--cache-dir", tmp_path / "cache"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert peak <= PEAK_GIB, f"harden-run peaked at {peak:.1f} GiB"
    run = json.loads((tmp_path / "run.json").read_text())
    assert len(run["model"]["generation"]) == 16 and run["decode_tokens_per_s"] > 0
    print(f"\nllama-3.1-8b: decode {run['decode_tokens_per_s']:.2f} tokens/s, prefill {run['prefill_tokens_per_s']:.1f} tokens/s")
