"""Fixtures several test files share.

`make test` runs the files on two pytest-xdist workers; a session fixture runs once per
worker unless it shares its result through the workers' common temporary directory under
a file lock, as `smollm2_import` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

BIN = Path(sys.executable).parent
SMOLLM2_SEQ_LEN, SMOLLM2_MAX_SEQ_LEN = 32, 96


@pytest.fixture(scope="session")
def smollm2_import(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct imported once per session (f32, external weights, a 96-position
    cache; prefill and decode: prefill_last is tested on smaller models, test_frontend_iree)."""
    from harden.frontend.checkpoints import PACKAGED_MODELS

    try:
        PACKAGED_MODELS["smollm2-135m"].path("smollm2-135m")
    except Exception as e:  # the package is part of `make test`'s install; say so plainly
        pytest.fail(f"SmolLM2 is not installed: {e}")
    # One import for all workers: the first to take the lock imports, the others wait for it.
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if "PYTEST_XDIST_WORKER" in os.environ else root
    out = shared / "smollm2-import" / "m.mlir"
    with FileLock(str(shared / "smollm2-import.lock")):
        if not out.exists():
            out.parent.mkdir(exist_ok=True)
            args = ["--model", "smollm2-135m", "--seq-len", str(SMOLLM2_SEQ_LEN), "--max-seq-len", str(SMOLLM2_MAX_SEQ_LEN),
                    "--entry", "prefill,decode", "--quiet", "-o", out]
            result = subprocess.run([BIN / "harden-import", *map(str, args)], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
    return out
