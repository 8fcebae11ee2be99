"""harden-qat on the tiny shape: the loss falls, the checkpoint is exactly ternary, imports,
hardens losslessly and runs on IREE; same seed, same checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harden.eval.qat import QatOptions, exactly_ternary, ternarized_linears
from harden.quant.options import TernaryOptions
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
    assert tool("harden-import", "--model", d / "ckpt", "--seq-len", "16", "--max-seq-len", "32", "--entry", "prefill,decode", "-o", d / "q.mlir").returncode == 0
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


RECOVER_ARGS = ["--model", "tiny", "--method", "gptq", "--scale", "group", "--group-size", "16", "--steps", "30", "--seq-len", "32", "--batch", "4", "--pool", "16", "--lr-scales", "3e-3"]


@pytest.mark.parametrize("train", ["scales", "all"])
def test_recovery_from_gptq_improves_and_hardens_losslessly(tmp_path, train):
    """Recovery after calibrated rounding: the first evaluation is the GPTQ point (the
    compiler's own rounding), training lowers the held-out KL from there, and the
    checkpoint is codes x scales on the group grid, which the pipeline converts exactly."""
    d = tmp_path
    result = tool("harden-qat", *RECOVER_ARGS, "--train", train, "-o", d / "ckpt", "--history", d / "history.json", cwd=d)
    assert result.returncode == 0, result.stderr
    evaluations = json.loads((d / "history.json").read_text())["evaluations"]
    assert evaluations[-1]["kl"] < 0.9 * evaluations[0]["kl"]
    options = QatOptions(ternary=TernaryOptions(method="gptq", scale="group", group_size=16))
    model = HfCheckpoint(d / "ckpt").reference_model()
    assert exactly_ternary(model, options)
    if train == "scales":  # the codes stay GPTQ's (those after one step): only scales moved
        args = [a if a != "30" else "1" for a in RECOVER_ARGS]
        assert tool("harden-qat", *args, "--train", train, "-o", d / "one", cwd=d).returncode == 0
        one = ternarized_linears(HfCheckpoint(d / "one").reference_model())
        for name, m in ternarized_linears(model).items():
            assert torch.equal(torch.sign(m.weight), torch.sign(one[name].weight)) and not torch.equal(m.weight, one[name].weight)
    if train == "all":  # the same checkpoint writer and grid check as scales; the pipeline once is enough
        return
    assert tool("harden-import", "--model", d / "ckpt", "--seq-len", "16", "--max-seq-len", "32", "--entry", "prefill,decode", "-o", d / "q.mlir").returncode == 0
    result = tool("harden-opt", "--harden-pipeline=policy=none scale=group group-size=16 report=" + str(d / "report.json"), d / "q.mlir", "-o", d / "qh.mlir")
    assert result.returncode == 0, result.stderr
    assert all(layer["exact"] for layer in json.loads((d / "report.json").read_text())["layers"])


def test_train_needs_a_calibrated_method(tmp_path):
    result = tool("harden-qat", "--model", "tiny", "--steps", "1", "--train", "all", "-o", "x", cwd=tmp_path)
    assert result.returncode == 2 and "--train needs --method ls or gptq" in result.stderr
