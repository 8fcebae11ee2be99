"""GGUF import: a tiny random Llama written by the gguf package's writer (F32, Q8_0 and Q4_1
tensors, a byte-level BPE vocabulary) imports to Hugging Face's logits, its tokenizer is
transformers', and damaged or foreign files get one error line."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf.quants import dequantize, quantize
from gguf_helpers import CONFIG, VOCAB_SIZE, byte_level_vocabulary, stored_type, write_tiny_gguf

from harden.frontend.gguf import GgufCheckpoint, permute_rope_rows
from harden.frontend.hf import hf_weight_names
from harden.frontend.random_init import RandomWeights
from harden.frontend.tokenizer import gguf_tokenizer

BIN = Path(sys.executable).parent
TEXTS = ["the cat sat on the mat", "Hello, wörld!\n  two  spaces\tand a tab", "", "digits 0123 and ünïcödé 🙂"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_weights_are_the_dequantized_tensors_with_the_rope_permutation_undone(tiny_gguf):
    """Row-wise quantization commutes with the row permutation, so the loaded q weight is
    exactly the dequantized quantization of the original, unpermuted one."""
    checkpoint = GgufCheckpoint(tiny_gguf)
    assert checkpoint.config == CONFIG.__class__(**{**CONFIG.__dict__, "norm_eps": checkpoint.config.norm_eps})
    assert checkpoint.tensor_types == {"F32": 5, "Q4_1": 8, "Q8_0": 8}
    original = RandomWeights(CONFIG, 3)
    for name in ("layers.1.attention.wq.weight", "layers.0.attention.wk.weight", "layers.0.feed_forward.w2.weight"):
        w = original.tensor(name).numpy()
        qtype = gguf.GGMLQuantizationType[stored_type(name)]
        expected = dequantize(quantize(w, qtype), qtype).reshape(w.shape)
        np.testing.assert_array_equal(checkpoint.weights.tensor(name).numpy(), expected)
    heads = CONFIG.n_heads
    w = original.tensor("layers.0.attention.wq.weight").numpy()
    assert not np.array_equal(permute_rope_rows(w, heads), w)


def _hf_model(checkpoint: GgufCheckpoint):
    """transformers' LlamaForCausalLM holding the checkpoint's dequantized weights."""
    from transformers import LlamaForCausalLM

    from harden.frontend.hf_llama import hf_config

    model = LlamaForCausalLM(hf_config(checkpoint.config)).eval()
    state = {hf: checkpoint.weights.tensor(ref) for hf, ref in hf_weight_names(checkpoint.config).items()}
    model.load_state_dict(state, strict=False)
    return model


def test_imported_module_on_iree_matches_hugging_face(tiny_gguf, tmp_path):
    from harden.backend.engines import IreeEngine
    from harden.backend.modules import compile_module, load_module

    out = tmp_path / "m.mlir"
    result = subprocess.run([BIN / "harden-import", "--model", tiny_gguf, "--seq-len", "8", "--max-seq-len", "16", "-o", out], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = load_module(out)
    provenance = loaded.provenance
    assert provenance.kind == "gguf" and provenance.path == str(tiny_gguf) and provenance.source == str(tiny_gguf)
    assert provenance.tensor_types == {"F32": 5, "Q4_1": 8, "Q8_0": 8}
    assert provenance.tokenizer.kind == "gguf" and provenance.tokenizer.sha256 == provenance.sha256
    engine = IreeEngine(compile_module(loaded, None).module, 8, 16, "model")
    tokens = np.array([[3, 17, 200, 5, 99, 271, 0, 42]])
    logits, _ = engine.prefill(tokens)
    with torch.no_grad():
        expected = _hf_model(GgufCheckpoint(tiny_gguf))(torch.from_numpy(tokens)).logits.numpy()
    assert np.abs(logits - expected).max() <= 1e-5


def test_tokenizer_is_transformers_and_round_trips(tiny_gguf):
    from transformers import AutoTokenizer

    ours = gguf_tokenizer(tiny_gguf)
    theirs = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    assert ours.vocab_size == VOCAB_SIZE
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"]
        assert ours.decode(ids) == text
    tokens = byte_level_vocabulary().tokens
    assert ours.encode("the cat sat") == [tokens.index("t"), tokens.index("he"), tokens.index("Ġcat"), tokens.index("Ġsat")]


def _truncated(path: Path, size: int) -> Path:
    out = path.with_name(f"truncated-{size}.gguf")
    out.write_bytes(path.read_bytes()[:size])
    return out


def _bad_inputs(good: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    data = good.read_bytes()
    tensor_data_start = len(data) - sum(int(t.n_bytes) for t in gguf.GGUFReader(good).tensors)
    for label, size in (("header", 10), ("metadata", 400), ("tensor data", tensor_data_start + 100)):
        cases[f"truncated in the {label}"] = (_truncated(good, size), "truncated or corrupted GGUF file")
    corrupt = tmp / "magic.gguf"
    corrupt.write_bytes(b"GGUX" + data[4:])
    cases["bad magic"] = (corrupt, "not a GGUF file")
    version = tmp / "version.gguf"
    version.write_bytes(data[:4] + struct.pack("<I", 99) + data[8:])
    cases["unknown version"] = (version, "truncated or corrupted GGUF file")
    qwen = tmp / "qwen.gguf"
    writer = gguf.GGUFWriter(str(qwen), "qwen2")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    cases["another architecture"] = (qwen, "architecture 'qwen2' is not supported")
    fp4 = write_tiny_gguf(tmp / "mxfp4.gguf", tensor_type=lambda n: "MXFP4" if n.endswith("w2.weight") else stored_type(n))
    cases["unsupported tensor type"] = (fp4, "tensor 'blk.0.ffn_down.weight' has type MXFP4")
    big = write_tiny_gguf(tmp / "big-vocab.gguf", vocabulary=byte_level_vocabulary(extra_tokens=3))
    cases["tokenizer larger than the vocabulary"] = (big, f"the tokenizer has {VOCAB_SIZE + 3} tokens, the model's vocabulary {VOCAB_SIZE}")
    return cases


def test_bad_gguf_gives_one_line_and_no_output(tiny_gguf, tmp_path):
    for case, (path, message) in _bad_inputs(tiny_gguf, tmp_path).items():
        out = tmp_path / "out.mlir"
        result = subprocess.run([BIN / "harden-import", "--model", path, "-o", out], capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (case, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("harden-import: error: ") and message in lines[0], (case, result.stderr)
        assert str(path) in lines[0], case
        assert not out.exists() and not out.with_suffix(".safetensors").exists(), case
        assert list(tmp_path.glob(".*tmp")) == [], case


# Corrupted counts: (metadata key or None for the header, byte offset in its value, struct
# format, value) patches and the error. The first two made the import grow without bound (to
# 18 GB): GgufCheckpoint listed the weight names of every claimed layer (one byte of
# llama.block_count suffices), and GGUFReader loops over the claimed items of an array of
# scalars even past the end of the file (reading there gives empty arrays, not an error).
COUNTS = {
    "array of scalars": ([("tokenizer.ggml.token_type", 0, "<I", int(gguf.GGUFValueType.UINT8)), ("tokenizer.ggml.token_type", 4, "<Q", 1 << 40)],
                         "metadata array 'tokenizer.ggml.token_type' claims 1099511627776 items, more than the"),
    "block count": ([("llama.block_count", 0, "<I", 1 << 31)], "metadata 'llama.block_count' is 2147483648, more layers than the file's 21 tensors"),
    "array of strings": ([("tokenizer.ggml.tokens", 4, "<Q", 1 << 60)], f"metadata array 'tokenizer.ggml.tokens' claims {1 << 60} items, more than the"),
    "string length": ([("general.name", 0, "<Q", 1 << 40)], "claims 1099511627776 bytes, more than the"),
    "metadata count": ([(None, 16, "<Q", 1 << 40)], "the header claims 1099511627776 metadata entries, more than the"),
    "tensor count": ([(None, 8, "<Q", 1 << 40)], "the header claims 1099511627776 tensors, more than the"),
}


# Runs harden-import's main on each file in one process (one start-up instead of six) under
# a 3 GB address-space limit; prints each case's exit code and stderr as JSON.
_IMPORT_EACH = """
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from harden.tools.harden_import import main
results = {}
for case, path, out in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["--model", path, "-o", out])
    results[case] = [code, err.getvalue()]
print(json.dumps(results))
"""


def test_corrupted_counts_give_one_line_without_a_large_allocation(tiny_gguf, tmp_path):
    """Each count is refused by name before anything is sized by it (under 3 GB of address space)."""
    reader, cases = gguf.GGUFReader(tiny_gguf), []
    for case, (patches, _) in COUNTS.items():
        data = bytearray(tiny_gguf.read_bytes())
        for key, offset, fmt, value in patches:
            # A metadata value starts after its key (an 8-byte length and the bytes) and its 4-byte type.
            offset += reader.fields[key].offset + 8 + len(key) + 4 if key else 0
            struct.pack_into(fmt, data, offset, value)
        path = tmp_path / f"{case.replace(' ', '-')}.gguf"
        path.write_bytes(bytes(data))
        cases.append((case, str(path), str(tmp_path / f"{path.stem}.mlir")))
    run = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(cases)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for case, path, out in cases:
        code, err = results[case]
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, (case, err)
        assert lines[0].startswith(f"harden-import: error: '{path}': ") and COUNTS[case][1] in lines[0], (case, err)
        assert not Path(out).exists() and not Path(out).with_suffix(".safetensors").exists(), case
