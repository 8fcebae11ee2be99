"""Fuzzing every tool's input: what nobody thought of gets one clean error or a valid result.

Each property runs a tool in-process (its `main`, as the console script does) on an input
hypothesis builds or mutates, and checks the contract every tool keeps:

* the exit code is 0 (and the output exists), or 1 or 2 with one to three lines on stderr,
  no Python traceback (an exception escaping `main` fails the test) and no output file;
* the inputs are untouched, and no temporary file is left beside the output.

Inputs: random bytes, modules of other dialects, and valid modules with one mutation (a
deleted or duplicated line, a changed element type or dimension, a harden op with an operand
dropped or repeated, a changed integer, the provenance removed, a moved `harden.start`) for
harden-opt, harden-export and harden-run; llama2.c headers with random fields, safetensors
with corrupted headers, Hugging Face config.json with missing or contradictory keys and
GGUF files truncated at random offsets for harden-import; random pass pipelines and option
values for harden-opt; random combinations of each tool's own flags (from its parser).

Profiles (HYPOTHESIS_PROFILE): `ci` (the default: derandomized, a few dozen examples per
property, well under 3 minutes) and `fuzz` (`make fuzz`: random, 1000 examples each).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_helpers import write_tiny_gguf
from harden.tools import harden_export, harden_import, harden_opt, harden_run

settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOOLS = {"harden-opt": harden_opt.main, "harden-import": harden_import.main, "harden-export": harden_export.main,
         "harden-run": harden_run.main}


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Relative paths a random option names (`report=true`) land in the test's directory:
    run from the repository, they were written into it."""
    monkeypatch.chdir(tmp_path)


def run_tool(tool: str, argv: list) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a tool's main; an exception escaping it propagates."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = TOOLS[tool]([str(a) for a in argv])
        except SystemExit as e:  # argparse's --help
            code = e.code or 0
    return code, out.getvalue(), err.getvalue()


def _digest(paths: list[Path]) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def check_contract(tool: str, argv: list, inputs: list[Path], output: Path | None) -> int:
    """Runs the tool and checks the contract of the module docstring; returns the exit code."""
    before = _digest(inputs)
    directory = output.parent if output is not None else None
    siblings = set(directory.iterdir()) if directory is not None else set()
    code, _, err = run_tool(tool, argv)
    assert "Traceback" not in err, err
    assert _digest(inputs) == before, "an input changed"
    if code == 0:
        assert output is None or output.exists()
    else:
        assert code in (1, 2), (code, err)
        lines = err.strip().splitlines()
        assert 1 <= len(lines) <= 3, err
        # A harden-run that completed but exceeded a tolerance (--atol, --min-top1, --max-kl)
        # exits 1 with its full report written: that is its result, not a partial file.
        tolerance = tool == "harden-run" and code == 1 and all(line.startswith("harden-run: tolerance exceeded:") for line in lines)
        assert output is None or tolerance or not output.exists()
    if directory is not None:
        left = {p for p in set(directory.iterdir()) - siblings if p.name.startswith(".")}
        assert not left, f"temporary files left: {left}"
    if output is not None and output.exists():
        if output.is_dir():
            for p in sorted(output.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            output.rmdir()
        else:
            output.unlink()
        output.with_suffix(".safetensors").unlink(missing_ok=True)
    return code


# -- modules to mutate ----------------------------------------------------------------


class Sources(dict):
    """Module texts by level; a short repr, so a failing example prints readably."""

    def __repr__(self) -> str:
        return f"<modules {', '.join(self)}>"


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> Sources:
    """The tiny shape as imported (torch level) and hardened and scheduled (harden level)."""
    d = tmp_path_factory.mktemp("fuzz-modules")
    code, _, err = run_tool("harden-import", ["--random-init", "tiny", "--seq-len", "8", "--max-seq-len", "32",
                                              "--quiet", "-o", d / "imported.mlir"])
    assert code == 0, err
    code, _, err = run_tool("harden-opt", ["--harden-pipeline=policy=none machine=hardwired lower=false", d / "imported.mlir",
                                           "-o", d / "scheduled.mlir", "--quiet"])
    assert code == 0, err
    return Sources(imported=(d / "imported.mlir").read_text(), scheduled=(d / "scheduled.mlir").read_text())


_TYPES = ["f32", "f16", "si8", "i8", "si64", "i64", "i1", "bf16"]


@st.composite
def mutated(draw, text: str) -> str:
    """`text` with one mutation (see the module docstring)."""
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["delete", "duplicate", "type", "shape", "operands", "integer", "provenance", "start", "bytes"]))
    if kind in ("delete", "duplicate"):
        i = draw(st.integers(0, len(lines) - 1))
        lines[i:i + 1] = [] if kind == "delete" else [lines[i], lines[i]]
        return "".join(lines)
    if kind == "type":
        spots = [m.start() for m in re.finditer(r"\b(f32|si8|i64|f16)\b", text)]
        at = draw(st.sampled_from(spots))
        old = re.match(r"\w+", text[at:]).group(0)
        return text[:at] + draw(st.sampled_from(_TYPES)) + text[at + len(old):]
    if kind == "shape":  # one dimension of a tensor type
        spots = list(re.finditer(r"vtensor<\[(?:\d+,)*?(\d+)", text))
        m = draw(st.sampled_from(spots))
        return text[:m.start(1)] + str(draw(st.integers(0, 5000))) + text[m.end(1):]
    if kind == "operands":  # a harden op with one operand (and its type) dropped or repeated
        spots = [i for i, line in enumerate(lines) if re.search(r'"harden\.\w+"\(%[^)]*\).* : \([^)]+\) ->', line)]
        if spots:
            i = draw(st.sampled_from(spots))
            m = re.search(r'("harden\.\w+"\()([^)]*)(\).* : \()([^)]*)(\) ->)', lines[i])
            operands, types = m.group(2).split(", "), re.split(r", (?=!|[a-z])", m.group(4))
            if draw(st.booleans()) and len(operands) > 1:
                operands, types = operands[:-1], types[:-1]
            else:
                operands, types = operands + operands[-1:], types + types[-1:]
            lines[i] = lines[i][:m.start()] + m.group(1) + ", ".join(operands) + m.group(3) + ", ".join(types) + m.group(5) + lines[i][m.end():]
            return "".join(lines)
    if kind == "integer":
        spots = list(re.finditer(r"= (-?\d+) : i64", text))
        m = draw(st.sampled_from(spots))
        value = draw(st.integers(-5, 1 << 20))
        return text[:m.start(1)] + str(value) + text[m.end(1):]
    if kind == "provenance":
        return re.sub(r"harden\.provenance = \{[^}]*\}(, )?", "", text, count=1)
    if kind == "start":
        spots = list(re.finditer(r"harden\.start = (\d+)", text)) or list(re.finditer(r"= (\d+) : i64", text))
        m = draw(st.sampled_from(spots))
        return text[:m.start(1)] + str(int(m.group(1)) + draw(st.integers(-50, 50))) + text[m.end(1):]
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(32, 126))
    return data.decode(errors="replace")


HARDEN_OPT_RUNS = [
    ["--pass-pipeline=builtin.module(harden-verify-schedule)"],
    ["--pass-pipeline=builtin.module(harden-fuse-qkv)"],
    ["--harden-pipeline=policy=none machine=hardwired lower=false"],
    ["--pass-pipeline=builtin.module(harden-lower-to-linalg)"],
]


@given(data=st.binary(max_size=2048))
def test_harden_opt_and_export_on_random_bytes(tmp_path, data):
    source = tmp_path / "noise.mlir"
    source.write_bytes(data)
    check_contract("harden-opt", [source, "-o", tmp_path / "out.mlir"], [source], tmp_path / "out.mlir")
    check_contract("harden-export", [source, "-o", tmp_path / "chip"], [source], tmp_path / "chip")


# Modules a user may hand over by mistake: other dialects' IR, valid but not harden-import's.
OTHER_DIALECTS = [
    "module {}\n",
    "func.func @f(%a: f32) -> f32 {\n  %0 = arith.addf %a, %a : f32\n  return %0 : f32\n}\n",
    "func.func @prefill(%t: tensor<1x8xi64>) -> tensor<1x8xi64> {\n  return %t : tensor<1x8xi64>\n}\n"
    "func.func @decode(%t: tensor<1x1xi64>, %p: tensor<1xi64>, %k: tensor<2x1x2x8x4xf32>, %v: tensor<2x1x2x8x4xf32>)"
    " -> (tensor<1x1x4xf32>, tensor<2x1x2x8x4xf32>, tensor<2x1x2x8x4xf32>) {\n"
    "  %0 = tensor.empty() : tensor<1x1x4xf32>\n  return %0, %k, %v : tensor<1x1x4xf32>, tensor<2x1x2x8x4xf32>, tensor<2x1x2x8x4xf32>\n}\n",
    "#map = affine_map<(d0) -> (d0)>\nfunc.func @g(%a: tensor<4xf32>) -> tensor<4xf32> {\n"
    "  %0 = linalg.generic {indexing_maps = [#map, #map], iterator_types = [\"parallel\"]} ins(%a : tensor<4xf32>) outs(%a : tensor<4xf32>) {\n"
    "  ^bb0(%x: f32, %y: f32):\n    %1 = arith.mulf %x, %x : f32\n    linalg.yield %1 : f32\n  } -> tensor<4xf32>\n  return %0 : tensor<4xf32>\n}\n",
    "func.func @h(%a: tensor<4xf32>) -> tensor<4xf32> {\n  %0 = tosa.abs %a : (tensor<4xf32>) -> tensor<4xf32>\n  return %0 : tensor<4xf32>\n}\n",
    "func.func @s(%a: tensor<4xf32>) -> tensor<4xf32> {\n  %0 = \"stablehlo.add\"(%a, %a) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>\n"
    "  return %0 : tensor<4xf32>\n}\n",
    "func.func @prefill(%arg0: !torch.vtensor<[1,8],si64>) -> !torch.vtensor<[1,8],si64> {\n  return %arg0 : !torch.vtensor<[1,8],si64>\n}\n",
]


@given(text=st.sampled_from(OTHER_DIALECTS), flags=st.sampled_from(HARDEN_OPT_RUNS + [[]]))
def test_every_tool_on_modules_of_other_dialects(tmp_path, text, flags):
    source = tmp_path / "other.mlir"
    source.write_text(text)
    check_contract("harden-opt", [*flags, source, "-o", tmp_path / "out.mlir", "--quiet"], [source], tmp_path / "out.mlir")
    check_contract("harden-export", [source, "-o", tmp_path / "chip", "--quiet"], [source], tmp_path / "chip")
    check_contract("harden-run", [source, "--reference", "none", "--generate", "2", "--quiet", "--json", tmp_path / "r.json",
                                  "--cache-dir", tmp_path / "cache"], [source], tmp_path / "r.json")


@given(data=st.data())
def test_harden_opt_on_a_mutated_module(modules, tmp_path, data):
    level = data.draw(st.sampled_from(["imported", "scheduled"]))
    source = tmp_path / "m.mlir"
    source.write_text(data.draw(mutated(modules[level])))
    flags = data.draw(st.sampled_from(HARDEN_OPT_RUNS))
    check_contract("harden-opt", [*flags, source, "-o", tmp_path / "out.mlir", "--quiet"], [source], tmp_path / "out.mlir")


@given(data=st.data())
def test_harden_export_on_a_mutated_scheduled_module(modules, tmp_path, data):
    source = tmp_path / "m.mlir"
    source.write_text(data.draw(mutated(modules["scheduled"])))
    check_contract("harden-export", [source, "-o", tmp_path / "chip", "--quiet"], [source], tmp_path / "chip")


@settings(max_examples=8)
@given(data=st.data())
def test_harden_run_on_a_mutated_module(modules, tmp_path, data):
    source = tmp_path / "m.mlir"
    source.write_text(data.draw(mutated(modules["imported"])))
    argv = [source, "--reference", "none", "--generate", "2", "--quiet", "--json", tmp_path / "r.json", "--cache-dir", tmp_path / "cache"]
    check_contract("harden-run", argv, [source], tmp_path / "r.json")


# -- options ----------------------------------------------------------------------------

PASS_NAMES = ["harden-fuse-qkv", "harden-ternarize", "harden-ternary-policy", "harden-stream-schedule", "harden-verify-schedule",
              "harden-lower-harden-ops", "harden-lower-to-linalg", "harden-pipeline", "canonicalize", "no-such-pass"]
OPTION_KEYS = ["method", "scale", "group-size", "planes", "machine", "tile", "max-tiles", "chips", "kernel", "activations",
               "policy", "max-bits", "keep", "skip", "lower", "report", "functions", "solver", "bogus"]
OPTION_VALUES = ["", "0", "-1", "3", "1e9", "true", "nope", "tsp", "hardwired", "gptq", "group", "int8", "layers.0.*", "{", "}", "a b"]


@st.composite
def pipeline_text(draw) -> str:
    passes = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(PASS_NAMES))
        options = [f"{draw(st.sampled_from(OPTION_KEYS))}={draw(st.sampled_from(OPTION_VALUES))}" for _ in range(draw(st.integers(0, 3)))]
        passes.append(name + (f"{{{' '.join(options)}}}" if options else ""))
    return "builtin.module(" + ",".join(passes) + ")"


@given(data=st.data())
def test_harden_opt_with_random_pipelines_and_options(modules, tmp_path, data):
    source = tmp_path / "m.mlir"
    source.write_text(modules["imported"])
    if data.draw(st.booleans()):
        flags = [f"--pass-pipeline={data.draw(pipeline_text())}"]
    else:
        options = [f"{data.draw(st.sampled_from(OPTION_KEYS))}={data.draw(st.sampled_from(OPTION_VALUES))}" for _ in range(data.draw(st.integers(1, 3)))]
        flags = [f"--harden-pipeline={' '.join(options)}"]
    flags += data.draw(st.lists(st.sampled_from(["--split-input-file", "--verify-diagnostics", "--mlir-timing", "--quiet", "--bogus"]), max_size=2))
    check_contract("harden-opt", [*flags, source, "-o", tmp_path / "out.mlir"], [source], tmp_path / "out.mlir")


FLAG_VALUES = ["0", "1", "-3", "7", "1e9", "2.5", "nan", "x", "", "1,2,3", "stories260k", "tiny", "none", "torch", "auto", "f16"]


@st.composite
def random_flags(draw, tool: str, leave_out: tuple[str, ...] = ()) -> list[str]:
    """1-4 of the tool's own flags (from its parser, but `leave_out`) with random values where
    they take one."""
    actions = [a for a in TOOL_PARSERS[tool]()._actions
               if a.option_strings and not {"--help", *leave_out} & set(a.option_strings)]
    flags = []
    for action in draw(st.lists(st.sampled_from(actions), min_size=1, max_size=4)):
        flags.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs != 0:
            flags.append(draw(st.sampled_from(FLAG_VALUES)))
    return flags


TOOL_PARSERS = {"harden-import": harden_import.make_parser, "harden-export": harden_export.make_parser, "harden-run": harden_run.make_parser}


@given(data=st.data())
def test_harden_import_and_export_with_random_flags(modules, tmp_path, data):
    check_contract("harden-import", ["--random-init", "tiny", *data.draw(random_flags("harden-import", leave_out=("-o",))), "--quiet",
                                     "-o", tmp_path / "m.mlir"],
                   [], tmp_path / "m.mlir")
    source = tmp_path / "s.mlir"
    source.write_text(modules["scheduled"])
    flags = data.draw(random_flags("harden-export", leave_out=("-o", "--check")))
    check_contract("harden-export", [source, *flags, "-o", tmp_path / "chip"], [source], tmp_path / "chip")


@settings(max_examples=8)
@given(data=st.data())
def test_harden_run_with_random_flags(modules, tmp_path, data):
    source = tmp_path / "m.mlir"
    source.write_text(modules["imported"])
    flags = data.draw(random_flags("harden-run", leave_out=("--json",)))
    check_contract("harden-run", [source, *flags, "--generate", "2", "--samples", "1", "--cache-dir", tmp_path / "cache",
                                  "--json", tmp_path / "r.json"], [source], tmp_path / "r.json")


# -- checkpoints ----------------------------------------------------------------------


@given(header=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=7, max_size=7), tail=st.binary(max_size=4096),
       small=st.booleans())
def test_harden_import_on_llama2c_files_with_random_headers(tmp_path, header, tail, small):
    if small:  # plausible sizes reach the weight reader instead of the header checks
        header = [abs(h) % 64 for h in header]
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<7i", *header) + tail)
    check_contract("harden-import", ["--model", path, "--seq-len", "4", "--max-seq-len", "8", "--quiet", "-o", tmp_path / "m.mlir"],
                   [path], tmp_path / "m.mlir")


class Blob(bytes):
    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Blob:
    return Blob(write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes())


@given(data=st.data())
def test_harden_import_on_truncated_or_corrupted_gguf(tiny_gguf, tmp_path, data):
    blob = bytearray(tiny_gguf)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:  # flip bytes in the header and metadata (the first 8 KiB)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, min(len(blob), 8192) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "m.gguf"
    path.write_bytes(bytes(blob))
    check_contract("harden-import", ["--model", path, "--seq-len", "4", "--max-seq-len", "8", "--quiet", "-o", tmp_path / "m.mlir"],
                   [path], tmp_path / "m.mlir")



def _gguf_sections(blob: bytes, tmp_path: Path):
    """The GGUF's reader view: (every offset where a section starts or ends: the header
    fields, each metadata pair, each tensor's description and data; the metadata pairs)."""
    import gguf

    path = tmp_path / "whole.gguf"
    path.write_bytes(blob)
    reader = gguf.GGUFReader(path)
    fields = [f for f in reader.fields.values() if not f.name.startswith("GGUF.")]
    bounds = {0, len(blob)}
    for f in [*reader.fields.values(), *(t.field for t in reader.tensors)]:
        bounds |= {f.offset, f.offset + sum(p.nbytes for p in f.parts)}
    for t in reader.tensors:
        bounds |= {t.data_offset, t.data_offset + t.n_bytes}
    return sorted(b for b in bounds if b < len(blob)), fields


def test_harden_import_on_gguf_truncated_at_every_section_boundary(tiny_gguf, tmp_path):
    """An interrupted download ends anywhere, but the reader's paths change at the section
    boundaries: cut the file at each (and one byte either side)."""
    bounds, _ = _gguf_sections(bytes(tiny_gguf), tmp_path)
    path = tmp_path / "m.gguf"
    for cut in sorted({c for b in bounds for c in (b - 1, b, b + 1) if 0 <= c < len(tiny_gguf)}):
        path.write_bytes(bytes(tiny_gguf[:cut]))
        code = check_contract("harden-import", ["--model", path, "--seq-len", "4", "--max-seq-len", "8", "--quiet", "-o", tmp_path / "m.mlir"],
                              [path], tmp_path / "m.mlir")
        assert code != 0, f"a GGUF cut at byte {cut} of {len(tiny_gguf)} was imported"


@given(data=st.data())
def test_harden_import_on_gguf_with_random_metadata_types(tiny_gguf, tmp_path, data):
    """A metadata pair's value type (or its array's element type) replaced by any of GGUF's
    13 types or an invalid one: the reader then parses the value as something else."""
    _, fields = _gguf_sections(bytes(tiny_gguf), tmp_path)
    field = data.draw(st.sampled_from(fields))
    at = field.offset + field.parts[0].nbytes + field.parts[1].nbytes  # after the key's length and bytes
    if len(field.parts) > 4 and data.draw(st.booleans()):
        at += 4  # the element type of an array
    blob = bytearray(tiny_gguf)
    blob[at:at + 4] = struct.pack("<I", data.draw(st.integers(0, 16)))
    path = tmp_path / "m.gguf"
    path.write_bytes(bytes(blob))
    check_contract("harden-import", ["--model", path, "--seq-len", "4", "--max-seq-len", "8", "--quiet", "-o", tmp_path / "m.mlir"],
                   [path], tmp_path / "m.mlir")

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def hf_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"model.embed_tokens.weight": (256, 64), "model.norm.weight": (64,), "lm_head.weight": (256, 64)}
    for i in range(2):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (64, 64), p + "self_attn.k_proj.weight": (32, 64),
                       p + "self_attn.v_proj.weight": (32, 64), p + "self_attn.o_proj.weight": (64, 64),
                       p + "mlp.gate_proj.weight": (128, 64), p + "mlp.up_proj.weight": (128, 64),
                       p + "mlp.down_proj.weight": (64, 128), p + "input_layernorm.weight": (64,),
                       p + "post_attention_layernorm.weight": (64,)})
    return {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}


@given(data=st.data())
def test_harden_import_on_broken_hugging_face_directories(hf_tensors, tmp_path, data):
    from safetensors.numpy import save

    directory = tmp_path / "hf"
    directory.mkdir(exist_ok=True)
    config = dict(CONFIG)
    blob = bytearray(save(hf_tensors))
    kind = data.draw(st.sampled_from(["missing key", "wrong value", "contradiction", "header field", "header", "truncated"]))
    if kind == "missing key":
        del config[data.draw(st.sampled_from(sorted(config)))]
    elif kind == "wrong value":
        config[data.draw(st.sampled_from(sorted(config)))] = data.draw(st.sampled_from([0, -3, 7, 1e9, "x", None, [], {}]))
    elif kind == "contradiction":  # each value valid alone, wrong with the others or the tensors
        config.update(data.draw(st.sampled_from([
            {"num_attention_heads": 3}, {"num_key_value_heads": 3}, {"num_key_value_heads": 8}, {"head_dim": 7},
            {"vocab_size": 100}, {"num_hidden_layers": 3}, {"hidden_size": 32}, {"intermediate_size": 64},
            {"tie_word_embeddings": True}, {"max_position_embeddings": 2}, {"model_type": "mistral", "sliding_window": 4},
        ])))
    elif kind == "header field":  # a tensor's dtype, shape or data offsets changed in valid JSON
        header_size = struct.unpack("<Q", blob[:8])[0]
        header = json.loads(blob[8:8 + header_size])
        entry = header[data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))]
        key = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", None]))
        if key is None:
            entry.clear()
        else:
            entry[key] = data.draw(st.sampled_from({
                "dtype": ["F16", "BF16", "I8", "U8", "F64", "I64", "BOOL", "F8_E4M3", "XX"],
                "shape": [[], [0], [64], [64, 64, 2], [-1, 64], [2**40, 2**40]],
                "data_offsets": [[0, 0], [8, 4], [0, 2**40], [-8, 0], [0], "x"],
            }[key]))
        encoded = json.dumps(header).encode()
        blob = bytearray(struct.pack("<Q", len(encoded)) + encoded + blob[8 + header_size:])
    elif kind == "header":
        header_size = struct.unpack("<Q", blob[:8])[0]
        for _ in range(data.draw(st.integers(1, 6))):
            blob[data.draw(st.integers(0, 8 + header_size - 1))] = data.draw(st.integers(0, 255))
    else:
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "model.safetensors").write_bytes(bytes(blob))
    inputs = [directory / "config.json", directory / "model.safetensors"]
    check_contract("harden-import", ["--model", directory, "--seq-len", "4", "--max-seq-len", "8", "--quiet", "-o", tmp_path / "m.mlir"],
                   inputs, tmp_path / "m.mlir")
