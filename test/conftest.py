"""Fixtures several test files share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SMOLLM2_SEQ_LEN, SMOLLM2_MAX_SEQ_LEN = 32, 96


@pytest.fixture(scope="session")
def smollm2_import(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct imported once per session (f32, external weights, a 96-position cache)."""
    from harden.frontend.checkpoints import PACKAGED_MODELS

    try:
        PACKAGED_MODELS["smollm2-135m"].path("smollm2-135m")
    except Exception as e:  # the package is part of `make test`'s install; say so plainly
        pytest.fail(f"SmolLM2 is not installed: {e}")
    out = tmp_path_factory.mktemp("smollm2") / "m.mlir"
    args = ["--model", "smollm2-135m", "--seq-len", str(SMOLLM2_SEQ_LEN), "--max-seq-len", str(SMOLLM2_MAX_SEQ_LEN), "--quiet", "-o", out]
    result = subprocess.run([BIN / "harden-import", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out
