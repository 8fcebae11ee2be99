"""The files a benchmark runs, made by harden's own tools, and how long each stage took.

Per shape, in out/bench/<shape>/:
    model.mlir (+ model.safetensors)      harden-import (--model stories260k | smollm2-135m | --random-init SHAPE)
    f32.mlir                              harden-pipeline with ternarize=false (fused QKV, f32)
    ternary.mlir                          harden-pipeline with policy=none: every linear ternary
                                          (kernel=auto: the C custom dispatches where this host runs them)
    ternary-exact.mlir                    harden-pipeline with kernel=exact (portable linalg)
    ternary-int8-classifier.mlir          harden-pipeline with the classifier kept in int8
    default.mlir                          real models only: --harden-pipeline with no options
                                          (policy=auto max-bits=4 method=gptq; its measurements
                                          on random weights would mean nothing)
(+ the parameter files the pipelines write); each pipeline output is then compiled by IREE
in this process (`harden.backend.modules`).

`check_parameters` makes sure a pipeline output's parameter file holds every parameter the
module loads (it once came out empty for external weights), so a broken file is one clear
error here rather than IREE's NOT_FOUND at load time.

Import and pipelines run as child processes, the commands a user types, timed by the wall
clock with their peak resident memory. With `reuse`, a stage whose output exists from an
identical command is not run again (its time is then reported as reused).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
# engine label -> (output stem, harden-opt flag)
PIPELINES = {
    "IREE f32 (unhardened)": ("f32", "--harden-pipeline=ternarize=false"),
    "IREE ternary (hardened)": ("ternary", "--harden-pipeline=policy=none"),
    # The portable pure-linalg kernel; the default (kernel=auto) is the same on a host
    # without the C kernels, and the default row says so in a note.
    "IREE ternary kernel=exact": ("ternary-exact", "--harden-pipeline=policy=none kernel=exact"),
    # The classifier (named `output`, or `tok_embeddings` when tied) in int8 instead of f32:
    # the largest weight a ternary model still reads in f32, as llama.cpp's TQ2_0 keeps it in Q8_0.
    "IREE ternary, int8 classifier": ("ternary-int8-classifier", "--harden-pipeline=policy=none keep=output,tok_embeddings keep-as=int8"),
}
DEFAULT_LABEL = "IREE default (policy=auto max-bits=4)"
REAL_MODEL_PIPELINES = {DEFAULT_LABEL: ("default", "--harden-pipeline")}


class StageError(RuntimeError):
    """A stage failed; the message names the command and holds the end of its output."""


@dataclass
class Stage:
    seconds: float | None  # None when reused
    peak_rss_gib: float | None = None
    reused: bool = False

    def describe(self) -> str:
        if self.reused:
            return "reused"
        rss = f", {self.peak_rss_gib:.1f} GiB" if self.peak_rss_gib is not None else ""
        return f"{self.seconds:.0f} s{rss}"


def run_stage(command: list[str], output: Path, reuse: bool) -> Stage:
    """Runs `command` (which writes `output`) as a child; its wall time and peak RSS."""
    stamp = output.with_name(output.name + ".command")
    text = json.dumps(command)
    if reuse and output.exists() and stamp.exists() and stamp.read_text() == text:
        return Stage(None, reused=True)
    stamp.unlink(missing_ok=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Read stderr while waiting: a chatty child must not block on a full pipe.
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        raise StageError(f"`{' '.join(command)}` failed (exit {os.waitstatus_to_exitcode(status)}):\n{tail}")
    stamp.write_text(text)
    return Stage(seconds, usage.ru_maxrss / 2**20)  # ru_maxrss is in KiB on Linux


@dataclass
class ShapeFiles:
    shape: str
    directory: Path
    model: Path
    pipeline_outputs: dict[str, Path]  # engine label -> lowered module
    stages: dict[str, Stage]


def import_command(shape: str, output: Path, seq_len: int, max_seq_len: int | None) -> list[str]:
    """harden-import of a shape; max_seq_len None: the capacity harden-import gives by default."""
    from harden.frontend.random_init import SHAPES

    source = ["--random-init", shape] if shape in SHAPES else ["--model", shape]
    capacity = [] if max_seq_len is None else ["--max-seq-len", str(max_seq_len)]
    return [str(BIN / "harden-import"), *source, "--seq-len", str(seq_len), *capacity, "-o", str(output)]


def prepare(shape: str, directory: Path, seq_len: int, max_seq_len: int | None, reuse: bool, log=sys.stderr) -> ShapeFiles:
    """Imports `shape` and runs both pipelines on it (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    model = directory / "model.mlir"
    stages: dict[str, Stage] = {}
    print(f"[{shape}] harden-import ...", file=log, flush=True)
    stages["import"] = run_stage(import_command(shape, model, seq_len, max_seq_len), model, reuse)
    print(f"[{shape}] harden-import: {stages['import'].describe()}", file=log, flush=True)
    from harden.frontend.random_init import SHAPES

    outputs = {}
    pipelines = PIPELINES if shape in SHAPES else {**PIPELINES, **REAL_MODEL_PIPELINES}
    for label, (stem, flag) in pipelines.items():
        out = directory / f"{stem}.mlir"
        print(f"[{shape}] harden-opt {flag} ...", file=log, flush=True)
        # A new import invalidates the pipeline outputs made from the old one.
        stage = run_stage([str(BIN / "harden-opt"), flag, str(model), "-o", str(out)], out, reuse and stages["import"].reused)
        check_parameters(out)
        stages[f"pipeline {stem}"] = stage
        print(f"[{shape}] pipeline {stem}: {stage.describe()}", file=log, flush=True)
        outputs[label] = out
    return ShapeFiles(shape, directory, model, outputs, stages)


_PARAMS_ATTR = re.compile(r'harden\.params = "([^"]+)"')
_PARAM_GLOBAL = re.compile(r'ml_program\.global private @"?param\.([^"(\s]+)"?\(')


def check_parameters(module: Path) -> None:
    """Raises StageError unless every parameter global of a lowered module is in its parameter file."""
    text = module.read_text()
    wanted = set(_PARAM_GLOBAL.findall(text))
    if not wanted:
        return
    from safetensors import safe_open

    match = _PARAMS_ATTR.search(text)
    if match is None:
        raise StageError(f"'{module}' loads {len(wanted)} parameters but names no parameter file (harden.params)")
    params = module.parent / match.group(1)
    with safe_open(str(params), framework="np") as f:
        missing = sorted(wanted - set(f.keys()))
    if missing:
        raise StageError(f"'{params}' lacks {len(missing)} of the {len(wanted)} parameters '{module}' loads "
                         f"(e.g. '{missing[0]}')")


def stages_json(stages: dict[str, Stage]) -> dict:
    return {name: asdict(stage) for name, stage in stages.items()}
