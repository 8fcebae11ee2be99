"""Atomic writes: the target appears whole or not at all, and no temporary file stays behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from harden.core.files import atomic_path, write_atomically
from harden.core.safetensors_writer import write_safetensors


def test_a_failed_write_leaves_neither_target_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "ckpt", directory=True) as tmp:
            (tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_write_replaces_the_target_with_the_usual_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_atomically(target, "new")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_write_to_a_pipe_goes_through_it_and_leaves_the_pipe(tmp_path):
    """Reports and outputs named /dev/null or a FIFO are written to, never renamed over."""
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    write_atomically(fifo, "report\n")
    reader.join(timeout=10)
    assert received == ["report\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_streamed_safetensors_read_back_with_the_library(tmp_path):
    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "codes": np.array([[-1, 2]], np.int8), "n": np.arange(3, dtype=np.int64)}
    entries = [(name, t.dtype, t.shape) for name, t in tensors.items()]
    write_safetensors(tmp_path / "p.safetensors", entries, tensors.__getitem__)
    back = load_file(str(tmp_path / "p.safetensors"))
    assert back.keys() == tensors.keys() and all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())


def test_a_tensor_that_breaks_its_declaration_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="tensor 'w' is float64"):
        write_safetensors(tmp_path / "p.safetensors", [("w", np.dtype(np.float32), (2,))], lambda _: np.zeros(2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_import_leaves_nothing_and_says_so(tmp_path, signum, code, word):
    """SIGINT or SIGTERM while harden-import works (exporting, or writing its 440 MB of
    parameters): one line, exit 128 + signal, no output, no parameter file, no temporary."""
    tool = Path(sys.executable).parent / "harden-import"
    process = subprocess.Popen([str(tool), "--random-init", "llama-100m", "--quiet", "-o", str(tmp_path / "m.mlir")],
                               stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert err == f"harden-import: {word}\n"
    assert list(tmp_path.iterdir()) == []
