"""harden-qat on the tiny shape: the loss falls, the checkpoint is exactly ternary, imports,
hardens losslessly and runs on IREE; same seed, same checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harden.eval.qat import QatOptions, exactly_ternary
from harden.frontend.hf import HfCheckpoint

BIN = Path(sys.executable).parent
QAT_ARGS = ["--model", "tiny", "--steps", "12", "--seq-len", "32", "--batch", "4"]


def tool(name, *args, cwd=None):
    env = {"PATH": str(BIN), "HARDEN_CACHE_DIR": str(cwd / "cache") if cwd else "/tmp/harden-test-cache"}
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("qat")
    result = tool("harden-qat", *QAT_ARGS, "-o", d / "ckpt", "--history", d / "history.json", cwd=d)
    assert result.returncode == 0, result.stderr
    return d


def test_distillation_loss_falls_and_weights_are_exactly_ternary(trained):
    evaluations = json.loads((trained / "history.json").read_text())["evaluations"]
    assert evaluations[0]["step"] <= 2 and evaluations[-1]["step"] == 12
    assert evaluations[-1]["loss"] < 0.8 * evaluations[0]["loss"]
    assert evaluations[-1]["kl"] < evaluations[0]["kl"]
    model = HfCheckpoint(trained / "ckpt").reference_model()
    assert exactly_ternary(model, QatOptions())


def test_checkpoint_hardens_losslessly_and_runs(trained):
    d = trained
    assert tool("harden-import", "--model", d / "ckpt", "--seq-len", "16", "--max-seq-len", "32", "-o", d / "q.mlir").returncode == 0
    result = tool("harden-opt", "--harden-pipeline=policy=none report=" + str(d / "report.json"), d / "q.mlir", "-o", d / "qh.mlir")
    assert result.returncode == 0, result.stderr
    report = json.loads((d / "report.json").read_text())
    assert report["layers"] and all(layer["exact"] and layer["relative_error"] == 0.0 for layer in report["layers"])
    # The hardened graph against the checkpoint's own PyTorch forward (its provenance).
    result = tool("harden-run", d / "qh.mlir", "--samples", "2", "--atol", "1e-5", "--min-top1", "1.0", "--json", d / "run.json", cwd=d)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((d / "run.json").read_text())["max_abs_err"] <= 1e-5


def test_same_seed_same_checkpoint(trained, tmp_path):
    assert tool("harden-qat", *QAT_ARGS, "-o", tmp_path / "again", cwd=tmp_path).returncode == 0
    first = HfCheckpoint(trained / "ckpt").reference_model().state_dict()
    again = HfCheckpoint(tmp_path / "again").reference_model().state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tiny", "--steps", "1", "--group-size", "32", "-o", "x"], "option 'group-size' of 'ternary options' needs scale=group (got scale=channel)"),
        (["--model", "stories260k", "--steps", "1", "-o", "dir"], "is written as a llama2.c checkpoint: name it FILE.bin"),
        (["--model", "nope.bin", "--steps", "1", "-o", "x.bin"], "nope.bin"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    result = tool("harden-qat", *args, cwd=tmp_path)
    assert result.returncode in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
