"""Same input and options, same bytes: every file the tools write is identical across two runs
with different PYTHONHASHSEED values (set iteration, hash-ordered dicts and id()-keyed tables
are where a compiler in Python goes nondeterministic).

Each chain runs as subprocesses, as a user runs it: harden-import of the embedded stories260k
(external parameters), of a small GGUF (tokenizer and chat template) and of a small Hugging Face
directory (torch.export); harden-opt's default pipeline (GPTQ on calibration samples, the
ternarize report, the schedule report and its Gantt chart, the packed parameters); harden-opt's
all-ternary pipeline on the `tsp` machine at the harden level (`lower=false`); harden-export of the scheduled module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frontend_helpers import save_hf_llama
from gguf_helpers import write_tiny_gguf

BIN = Path(sys.executable).parent
SEEDS = ("0", "4242")


def _run(directory: Path, seed: str, *commands: list) -> None:
    """Runs the tool invocations `commands` side by side (they are independent: two cores)."""
    env = dict(os.environ, PYTHONHASHSEED=seed)
    processes = [subprocess.Popen([str(BIN / c[0]), *map(str, c[1:])], cwd=directory, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for c in commands]
    for command, process in zip(commands, processes):
        _, err = process.communicate()
        assert process.returncode == 0, f"{command[0]} (PYTHONHASHSEED={seed}): {err}"


def _stories_chain(directory: Path, seed: str) -> None:
    _run(directory, seed, ["harden-import", "--model", "stories260k", "--seq-len", "16", "--max-seq-len", "64", "--external-weights",
                           "--quiet", "-o", "m.mlir"])
    _run(directory, seed,
         ["harden-opt", "--harden-pipeline=report=default-report.json", "m.mlir", "--schedule-report", "default-schedule.json",
          "--schedule-gantt", "default-schedule.png", "--quiet", "-o", "default.mlir"],
         ["harden-opt", "--harden-pipeline=policy=none machine=tsp lower=false report=tsp-report.json", "m.mlir",
          "--schedule-report", "tsp-schedule.json", "--schedule-gantt", "tsp-schedule.png", "--quiet", "-o", "tsp.mlir"])
    _run(directory, seed, ["harden-export", "tsp.mlir", "-o", "chip"])


def _small_imports(directory: Path, seed: str) -> None:
    write_tiny_gguf(directory / "tiny.gguf")
    save_hf_llama(directory / "hf", bias=False, tied=True)
    _run(directory, seed, ["harden-import", "--model", "tiny.gguf", "--seq-len", "4", "--max-seq-len", "16", "--quiet", "-o", "gguf.mlir"],
         ["harden-import", "--model", "hf", "--seq-len", "4", "--max-seq-len", "16", "--external-weights", "--quiet", "-o", "hf.mlir"])


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("chain", [_stories_chain, _small_imports], ids=["stories260k-pipelines-export", "gguf-and-hf-imports"])
def test_every_output_is_byte_identical_across_hash_seeds(chain, tmp_path):
    runs = []
    directory = tmp_path / "run"  # the same path for both runs: the provenance records the input's path
    for seed in SEEDS:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        chain(directory, seed)
        runs.append(_files(directory))
    first, second = runs
    assert first.keys() == second.keys()
    written = [name for name in first if not name.startswith(("hf/", "tiny.gguf"))]
    assert len(written) >= 3, written  # the chain really wrote its outputs
    different = [name for name in written if first[name] != second[name]]
    assert not different, f"differ between PYTHONHASHSEED={SEEDS[0]} and {SEEDS[1]}: {different}"
