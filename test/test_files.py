"""Atomic writes: the target appears whole or not at all, and no temporary file stays behind."""

import hashlib
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
from process_helpers import after, interrupt


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


def _children(pid: int, name: str) -> list[int]:
    """The processes called `name` whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            command, fields = stat.read_text().rsplit(")", 1)
            if int(fields.split()[1]) == pid and command.split("(", 1)[1] == name:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return found


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_import_leaves_nothing_and_says_so(tmp_path, signum, code, word):
    """SIGINT or SIGTERM while harden-import works (exporting, or writing its 440 MB of
    parameters): one line, exit 128 + signal, no output, no parameter file, no temporary."""
    returncode, err = interrupt(["harden-import", "--random-init", "llama-100m", "--quiet", "-o", tmp_path / "m.mlir"],
                                tmp_path, signum, after(6))
    assert returncode == code, err
    assert err == f"harden-import: {word}\n"
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_pipeline_leaves_nothing_and_says_so(smollm2_import, tmp_path):
    """SIGTERM while harden-opt runs the default pipeline on SmolLM2 (minutes of GPTQ on
    calibration samples; the signal comes 10 s in): one line, exit 143, no module, no
    parameter file, no report or schedule file, no temporary; the input is untouched."""
    inputs = [smollm2_import, smollm2_import.with_suffix(".safetensors")]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs}
    returncode, err = interrupt(["harden-opt", "--harden-pipeline=report=r.json", smollm2_import, "--schedule-report", "s.json",
                                 "--schedule-gantt", "s.png", "--quiet", "-o", "h.mlir"], tmp_path, signal.SIGTERM, after(10))
    assert returncode == 143, err
    assert err == "harden-opt: terminated\n"
    assert list(tmp_path.iterdir()) == []
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs} == before


def test_an_interrupted_compile_leaves_no_cache_entry(tiny_modules, tmp_path):
    """SIGTERM while IREE compiles for harden-run: one line, exit 143, the compiler process
    stopped with it, and the compile cache holds no entry or temporary (a later run compiles
    afresh, never from a partial flatbuffer)."""
    cache = tmp_path / "cache"
    command = ["harden-run", tiny_modules / "m.mlir", "--reference", "none", "--prompt-ids", "1,2,3", "--generate", "2",
               "--cache-dir", cache]
    compilers = []
    compiling = lambda process: bool(compilers.extend(_children(process.pid, "iree-compile")) or compilers)  # noqa: E731
    returncode, err = interrupt(command, tmp_path, signal.SIGTERM, compiling)
    assert returncode == 143, err
    assert err.splitlines()[-1] == "harden-run: terminated" and len(err.splitlines()) <= 3, err
    assert not cache.exists() or list(cache.iterdir()) == []
    time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in compilers), "the compiler outlived harden-run"


@pytest.fixture(scope="module")
def tiny_modules(tmp_path_factory) -> Path:
    """A random-init tiny import with external weights, and its all-ternary tsp schedule at the harden level."""
    directory = tmp_path_factory.mktemp("tiny")
    bin_ = Path(sys.executable).parent
    for command in (["harden-import", "--random-init", "tiny", "--seq-len", "8", "--max-seq-len", "16", "--external-weights", "--quiet", "-o", "m.mlir"],
                    ["harden-opt", "--harden-pipeline=policy=none machine=tsp lower=false", "m.mlir", "--quiet", "-o", "s.mlir"]):
        result = subprocess.run([str(bin_ / command[0]), *command[1:]], cwd=directory, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    return directory


def _on_a_full_disk(disk: Path, size: int, command: list[str]) -> tuple[int, str, list[str]]:
    """Runs `command` with `disk` a tmpfs of `size` bytes (a private mount in a user namespace,
    as mount needs); where namespaces are not allowed, a file size limit of `size` bytes
    (RLIMIT_FSIZE: the write fails with EFBIG instead of ENOSPC). Returns the exit code, stderr
    and what `disk` holds afterwards."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode == 0:
        script = 'd="$1"; mount -t tmpfs -o size="$2" tmpfs "$d" || exit 99; shift 2; "$@" > /dev/null; c=$?; ls -A "$d"; exit $c'
        result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(disk), str(size), *command],
                                capture_output=True, text=True, env=env)
        assert result.returncode != 99, result.stderr
        return result.returncode, result.stderr, result.stdout.split()

    def limit():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    result = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=limit)
    return result.returncode, result.stderr, sorted(p.name for p in disk.iterdir())


@pytest.mark.parametrize("tool", ["harden-import", "harden-opt", "harden-export"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tiny_modules, tmp_path, tool):
    """The disk fills while a tool writes its parameters, module or chip export: one error line
    naming the output and the cause, exit 1, nothing left on the disk (no partial file, no
    temporary). The inputs are on another disk and stay untouched."""
    disk = tmp_path / "disk"
    disk.mkdir()
    binary = str(Path(sys.executable).parent / tool)
    inputs = {"harden-import": [],
              "harden-opt": [tiny_modules / "m.mlir", tiny_modules / "m.safetensors"],
              "harden-export": [tiny_modules / "s.mlir", tiny_modules / "s.safetensors"]}[tool]
    before = {p: p.read_bytes() for p in inputs}
    command = {"harden-import": [binary, "--random-init", "tiny", "--seq-len", "8", "--max-seq-len", "16", "--external-weights", "--quiet", "-o", str(disk / "m.mlir")],
               "harden-opt": [binary, "--harden-pipeline=policy=none", str(tiny_modules / "m.mlir"), "--quiet", "-o", str(disk / "h.mlir")],
               "harden-export": [binary, str(tiny_modules / "s.mlir"), "-o", str(disk / "chip")]}[tool]
    code, err, left = _on_a_full_disk(disk, 8192, command)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"{tool}: error: '{disk}/"), err
    assert "No space left on device" in err or "File too large" in err, err
    assert left == []
    assert {p: p.read_bytes() for p in inputs} == before


def test_an_interrupted_export_keeps_the_previous_one(tmp_path):
    """An export interrupted while it writes its files leaves the previous export as it was
    and no temporary directory beside it."""
    from harden.chip.export import Export, write_export

    class Interrupted(dict):
        def __getitem__(self, name):
            if name == "rom/b.bin":
                raise KeyboardInterrupt
            return super().__getitem__(name)

    target = tmp_path / "chip"
    write_export(Export({"chip.json": b"{}\n", "rom/a.bin": b"old"}, {}), target)
    with pytest.raises(KeyboardInterrupt):
        write_export(Export(Interrupted({"chip.json": b"{\"new\": 1}\n", "rom/a.bin": b"new", "rom/b.bin": b"new"}), {}), target)
    assert [p.name for p in tmp_path.iterdir()] == ["chip"]
    assert {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()} == {"chip.json": b"{}\n", "rom/a.bin": b"old"}


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as in a tool started from a terminal (a pytest-xdist worker ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("exception, code", [("Terminated", 143), ("KeyboardInterrupt", 130)])
def test_a_signal_swallowed_by_a_weakref_callback_still_stops_the_command(exception, code, capsys, python_sigint):
    """SIGTERM or SIGINT that lands in a weakref callback (importlib's, in a tool's first
    seconds) raises where Python can only print it; run_command delivers it again, so the
    command stops with its one line and exit code instead of finishing (CI saw
    harden-export replace an export it had been told to abandon)."""
    import weakref

    from harden.tools.cli import Terminated, run_command

    raised = {"Terminated": Terminated, "KeyboardInterrupt": KeyboardInterrupt}[exception]

    def callback(_):
        raise raised()

    def body():
        class Thing:
            pass

        thing = Thing()
        kept = weakref.ref(thing, callback)  # the callback runs only while its reference lives
        del thing  # the callback raises: an unraisable exception
        time.sleep(5)  # the signal delivered again interrupts this
        return 0 if kept() is None else 1

    began = time.monotonic()
    assert run_command("tool", body) == code
    assert time.monotonic() - began < 4
    assert capsys.readouterr().err == f"tool: {'terminated' if code == 143 else 'interrupted'}\n"
