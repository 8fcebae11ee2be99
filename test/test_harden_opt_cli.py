"""harden-opt on bad input: one error line, exit code 1, no traceback, no output file."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

HARDEN_OPT = str(Path(sys.executable).parent / "harden-opt")
INPUTS = Path(__file__).parent / "Inputs"
QKV = str(INPUTS / "qkv_gqa.mlir")

INVALID_OP = """func.func @f(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[60,32],f32>) {
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>} : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[60,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return
}
"""


def run(args, stdin=None):
    return subprocess.run([HARDEN_OPT, *args], input=stdin, capture_output=True, text=True)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing file", ["{tmp}/nope.mlir"], "harden-opt: error: cannot open '{tmp}/nope.mlir': no such file"),
        ("malformed MLIR", ["{bad}"], "{bad}:2:3: error: custom op 'retur' is unknown"),
        ("unknown pass flag", [QKV, "--harden-fuse-everything"], "harden-opt: error: unrecognized arguments: --harden-fuse-everything"),
        ("unknown pass in pipeline", [QKV, "--pass-pipeline=builtin.module(harden-fuse-everything)"], "harden-opt: error: 'harden-fuse-everything' does not refer to a registered pass or pass pipeline"),
        ("unknown option", [QKV, "--harden-ternarize=colour=red"], "harden-opt: error: 'harden-ternarize' has no option 'colour'"),
        ("badly typed option", [QKV, "--harden-ternarize=planes=two"], "harden-opt: error: invalid value 'two' for option 'planes' of 'harden-ternarize': expected an integer"),
        ("bad upstream option", [QKV, "--pass-pipeline=builtin.module(canonicalize{bogus=1})"], "harden-opt: error: failed to add `canonicalize` with options `bogus=1`"),
        ("op failing its verifier", ["{invalid}"], "{invalid}:2:16: error: 'harden.fused_qkv' op weight has shape [60, 32], expected [64, 32]"),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(tmp_path, case, args, message):
    bad = write(tmp_path, "bad.mlir", "func.func @f() {\n  retur\n}\n")
    invalid = write(tmp_path, "invalid.mlir", INVALID_OP)
    def fill(text):
        return text.replace("{tmp}", str(tmp_path)).replace("{bad}", bad).replace("{invalid}", invalid)

    out = tmp_path / "out.mlir"
    result = run([fill(a) for a in args] + ["-o", str(out)])
    assert result.returncode == 1, case
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(fill(message)), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_output_never_overwrites_the_input(tmp_path):
    source = tmp_path / "m.mlir"
    source.write_text(Path(QKV).read_text())
    result = run([str(source), "--harden-fuse-qkv", "-o", str(source)])
    assert result.returncode == 1
    assert "refusing to overwrite" in result.stderr
    assert source.read_text() == Path(QKV).read_text()


def test_list_passes_names_every_pass_with_its_options():
    from harden.passes import PASSES
    from harden.pipelines.registry import PIPELINES

    result = run(["--list-passes"])
    assert result.returncode == 0
    for name in [*PASSES, *PIPELINES]:
        assert f"--{name}" in result.stdout
    assert "group-size=<int> (default: 64)" in result.stdout
    help_text = run(["--help"]).stdout
    assert "--harden-ternarize" in help_text and "--pass-pipeline" in help_text


def test_stdin_module_prints_a_module():
    result = run(["-"], stdin="module {}")
    assert result.returncode == 0
    assert result.stdout.startswith("module {")


def test_a_closed_stdout_pipe_stops_quietly():
    """`harden-opt m.mlir | head -1`: the reader leaves early; no traceback, as mlir-opt."""
    with subprocess.Popen([HARDEN_OPT, QKV, "--harden-fuse-qkv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        p.stdout.close()  # the reader is gone before anything is written
        stderr = p.stderr.read().decode()
        code = p.wait()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert code == 141


def test_output_to_a_device_writes_through_it_and_never_replaces_it(tmp_path):
    """`-o /dev/null` (a character device) is written to, not renamed over."""
    source = tmp_path / "m.mlir"
    source.write_text("func.func @f(%a: tensor<2xf32>) -> tensor<2xf32> {\n  return %a : tensor<2xf32>\n}\n")
    before = os.stat("/dev/null")
    result = run([str(source), "-o", "/dev/null"])
    assert result.returncode == 0, result.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_failed_run_shows_three_diagnostic_lines_unless_all_are_asked_for(tmp_path):
    """A schedule moved to cycle 0 breaks many dependences: the verifier reports each, and
    harden-opt shows the first two and a count (mlir-opt's full list with --all-diagnostics)."""
    imported, scheduled = tmp_path / "m.mlir", tmp_path / "s.mlir"
    assert subprocess.run([str(Path(sys.executable).parent / "harden-import"), "--random-init", "tiny", "--seq-len", "8",
                           "--max-seq-len", "32", "--quiet", "-o", str(imported)]).returncode == 0
    assert run(["--harden-pipeline=policy=none machine=hardwired lower=false", str(imported), "-o", str(scheduled)]).returncode == 0
    broken = tmp_path / "broken.mlir"
    broken.write_text(re.sub(r"harden\.start = \d+", "harden.start = 0", scheduled.read_text()))
    result = run(["--pass-pipeline=builtin.module(harden-verify-schedule)", str(broken)])
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 3, result.stderr
    assert re.fullmatch(r"harden-opt: note: \d+ more diagnostics not shown \(--all-diagnostics prints every one\)", lines[2])
    everything = run(["--pass-pipeline=builtin.module(harden-verify-schedule)", "--all-diagnostics", str(broken)])
    assert everything.returncode == 1
    assert len(everything.stderr.splitlines()) == 2 + int(lines[2].split()[2])
