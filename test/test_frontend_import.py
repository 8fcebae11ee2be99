"""harden-import: the module it writes (functions, linears, weights, provenance, external
weights, determinism) and its answers to bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from frontend_helpers import one_torch_thread, save_hf_llama  # noqa: F401 (autouse fixture)
from safetensors import safe_open

from harden.core.graph import body_ops, functions, ops_named
from harden.core.source import parse_module
from harden.core.weights import WeightStore, parameter_file_of
from harden.dialects.context import make_context
from harden.frontend.llama import rope_tables
from harden.frontend.llama2c import embedded_model_path, open_embedded
from harden.frontend.provenance import load_provenance, reference_model_from_provenance
from harden.frontend.random_init import SHAPES, RandomWeights
from harden.frontend.weights import FrontendError, reference_weight_shapes
from harden.tools.harden_import import main

PROJECTIONS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w3", "feed_forward.w2")


def harden_import(*args) -> int:
    return main([str(a) for a in args])


def parse(path: Path):
    return parse_module(path.read_text(), str(path), make_context())


def linear_weight_names(func) -> list[str]:
    """The weight name of each torch.aten.linear of a function, in program order."""
    store = WeightStore()
    return [store.name_of(op.operands[1]) for op in body_ops(func) if op.operation.name == "torch.aten.linear"]


@pytest.fixture(scope="module")
def stories_mlir(tmp_path_factory):
    path = tmp_path_factory.mktemp("stories") / "m.mlir"
    assert harden_import("--model", "stories260k", "-o", path) == 0
    return path


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return save_hf_llama(tmp_path_factory.mktemp("hf"), bias=True, tied=False)


def test_stories260k_has_prefill_and_decode_with_every_projection(stories_mlir):
    module = parse(stories_mlir)
    assert [f.name.value for f in functions(module)] == ["prefill", "decode", "prefill_last"]
    expected = [f"layers.{i}.{p}.weight" for i in range(5) for p in PROJECTIONS] + ["tok_embeddings.weight"]
    for func in functions(module):
        # 5 layers x q/k/v/o/gate/up/down, then the classifier (tied to the embedding).
        assert linear_weight_names(func) == expected


def test_inline_weights_are_the_checkpoint_values(stories_mlir):
    module = parse(stories_mlir)
    assert "dense_resource" not in stories_mlir.read_text()
    store = WeightStore()
    checkpoint = open_embedded("stories260k").weights
    linears = ops_named(module, "torch.aten.linear")
    for op in linears[:8]:
        weight = op.operands[1]
        np.testing.assert_array_equal(store.value_of(weight), checkpoint.tensor(store.name_of(weight)).numpy())


def test_provenance_rebuilds_the_reference_model(stories_mlir):
    prov = load_provenance(parse(stories_mlir))
    assert (prov.kind, prov.source, prov.frontend) == ("llama2c", "stories260k", "reference")
    assert (prov.seq_len, prov.max_seq_len) == (64, 512)
    assert prov.sha256 == open_embedded("stories260k").sha256
    assert prov.config == open_embedded("stories260k").config
    model = reference_model_from_provenance(prov)
    assert model.config.max_seq_len == prov.max_seq_len
    expected = open_embedded("stories260k").reference_model()
    tokens = torch.tensor([[1, 20, 30]])
    with torch.no_grad():
        assert torch.equal(model(tokens), expected(tokens))


def test_entry_and_lengths_shape_the_functions(tmp_path):
    out = tmp_path / "d.mlir"
    assert harden_import("--model", "tiny", "--entry", "decode", "--max-seq-len", "40", "-o", out) == 0
    module = parse(out)
    (decode,) = functions(module)
    assert decode.name.value == "decode"
    c = SHAPES["tiny"]
    cache = f"!torch.vtensor<[{c.n_layers},1,{c.n_kv_heads},40,{c.head_dim}],f32>"
    assert str(decode.type) == (
        f"(!torch.vtensor<[1,1],si64>, !torch.vtensor<[1],si64>, {cache}, {cache}) -> "
        f"(!torch.vtensor<[1,1,{c.vocab_size}],f32>, {cache}, {cache})"
    )


@pytest.fixture(scope="module")
def tiny_external_twice(tmp_path_factory):
    """The same random-init import with external weights, run twice into two folders."""
    outputs = []
    for run in ("a", "b"):
        out = tmp_path_factory.mktemp(run) / "tiny.mlir"
        args = ["--random-init", "tiny", "--seed", "3", "--seq-len", "8", "--max-seq-len", "16", "--external-weights"]
        assert harden_import(*args, "-o", out) == 0
        outputs.append(out)
    return outputs


def test_same_input_gives_byte_identical_output(tiny_external_twice, stories_mlir, tmp_path):
    a, b = tiny_external_twice
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".safetensors").read_bytes() == b.with_suffix(".safetensors").read_bytes()
    again = tmp_path / "m.mlir"
    assert harden_import("--model", "stories260k", "-o", again) == 0
    assert again.read_bytes() == stories_mlir.read_bytes()  # inline weights too


def test_external_weights_go_to_a_safetensors_file(tiny_external_twice):
    out = tiny_external_twice[0]
    module = parse(out)
    params = parameter_file_of(module, out.parent)
    assert params.path == out.with_suffix(".safetensors")
    assert not [op for op in ops_named(module, "torch.vtensor.literal") if "harden.name" in op.operation.attributes]
    weights = RandomWeights(SHAPES["tiny"], seed=3)
    tables = rope_tables(SHAPES["tiny"], 16)  # one row per KV-cache position (--max-seq-len)
    expected = sorted([*reference_weight_shapes(SHAPES["tiny"]), *tables])
    # Read with the safetensors library itself: the streaming writer follows its format.
    with safe_open(str(params.path), framework="pt") as f:
        assert sorted(f.keys()) == expected
        for name in f.keys():
            assert torch.equal(f.get_tensor(name), tables[name] if name in tables else weights.tensor(name)), name
    for func in functions(module):
        names = [op.operation.attributes["param_name"].value for op in body_ops(func) if op.operation.name == "harden.param"]
        assert sorted(names) == expected  # each weight once per function
    # The passes read them through the weight store.
    store = WeightStore(params=params)
    linear = ops_named(module, "torch.aten.linear")[0]
    name = store.name_of(linear.operands[1])
    np.testing.assert_array_equal(store.value_of(linear.operands[1]), weights.tensor(name).numpy())
    assert load_provenance(module).seed == 3


def test_hugging_face_directory_exports_hugging_face_code(hf_dir, tmp_path):
    out = tmp_path / "hf.mlir"
    assert harden_import("--model", hf_dir, "--entry", "prefill", "--seq-len", "8", "--max-seq-len", "16", "-o", out) == 0
    module = parse(out)
    prov = load_provenance(module)
    assert (prov.kind, prov.frontend, prov.source) == ("hf", "hf", str(hf_dir.resolve()))
    (prefill,) = functions(module)
    hf_projections = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    expected = [f"model.layers.{i}.{p}.weight" for i in range(2) for p in hf_projections] + ["lm_head.weight"]
    assert linear_weight_names(prefill) == expected


def test_hugging_face_directory_with_the_reference_frontend(hf_dir, tmp_path):
    out = tmp_path / "ref.mlir"
    assert harden_import("--model", hf_dir, "--frontend", "reference", "--entry", "decode", "--max-seq-len", "16", "-o", out) == 0
    module = parse(out)
    assert load_provenance(module).frontend == "reference"
    expected = [f"layers.{i}.{p}.weight" for i in range(2) for p in PROJECTIONS] + ["output.weight"]
    assert linear_weight_names(functions(module)[0]) == expected


def hf_variant(hf_dir, tmp_path, edit_config=None, edit_files=None) -> Path:
    """A copy of the tiny HF checkpoint with its config.json or files changed."""
    path = tmp_path / "variant"
    shutil.copytree(hf_dir, path)
    if edit_config:
        config = json.loads((path / "config.json").read_text())
        edit_config(config)
        (path / "config.json").write_text(json.dumps(config))
    if edit_files:
        edit_files(path)
    return path


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def llama2c_copy(tmp_path, edit) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(edit(embedded_model_path("stories260k").read_bytes()))
    return path


BAD_INPUTS = {
    "missing checkpoint": (lambda d, t: ["--model", t / "nope.bin"], "'{t}/nope.bin': no such file or directory"),
    "truncated llama2.c": (lambda d, t: ["--model", llama2c_copy(t, lambda b: b[:1000])], "file has 1000 bytes but its llama2.c header"),
    "header not matching size": (
        lambda d, t: ["--model", llama2c_copy(t, lambda b: b[:8] + (6).to_bytes(4, "little") + b[12:])],
        "(dim=64, hidden_dim=172, n_layers=6,",
    ),
    "config not matching weights": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(intermediate_size=128))],
        "config.json does not match the weights: 'model.layers.0.mlp.gate_proj.weight' has shape [96, 64] in the checkpoint, the config implies [128, 64]",
    ),
    "missing tensor": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(num_hidden_layers=3))],
        "does not match the weights: tensor 'model.layers.2.input_layernorm.weight' is missing",
    ),
    "mixture of experts": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(model_type="mixtral", num_local_experts=8))],
        "unsupported model_type 'mixtral' (only 'llama' is supported)",
    ),
    "experts in a llama config": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(num_local_experts=8))],
        "mixture-of-experts models are not supported (num_local_experts = 8)",
    ),
    "sliding window": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(sliding_window=4096))],
        "sliding-window attention is not supported (sliding_window = 4096)",
    ),
    "field transformers refuses": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(rms_norm_eps=0)), "--frontend", "hf"],
        "config.json': transformers refuses it: Validation error for field 'rms_norm_eps'",
    ),
    "layer count far beyond the tensors": (  # it sized lists of weight names: 1e9 layers ran out of memory
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(num_hidden_layers=10**9))],
        "num_hidden_layers = 1000000000, more layers than the checkpoint's",
    ),
    "rope theta of the wrong type": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c["rope_parameters"].update(rope_theta=None))],
        "float() argument must be a string or a real number, not 'NoneType'",
    ),
    "architectures not a list": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c.update(architectures=7))],
        "unsupported architecture 7 (expected LlamaForCausalLM)",
    ),
    "unsupported rope": (
        lambda d, t: ["--model", hf_variant(d, t, lambda c: c["rope_parameters"].update(rope_type="yarn"))],
        "unsupported rope type 'yarn' (supported: default, llama3)",
    ),
    "truncated safetensors": (
        lambda d, t: ["--model", hf_variant(d, t, edit_files=lambda p: truncate(p / "model.safetensors", 5000))],
        "model.safetensors': truncated: 5000 bytes",
    ),
    "safetensors without a header": (
        lambda d, t: ["--model", hf_variant(d, t, edit_files=lambda p: truncate(p / "model.safetensors", 50))],
        "model.safetensors': truncated or not a safetensors file (50 bytes: invalid header length)",
    ),
    "no weights": (
        lambda d, t: ["--model", hf_variant(d, t, edit_files=lambda p: (p / "model.safetensors").unlink())],
        "no model.safetensors or model.safetensors.index.json",
    ),
    "seq-len over max-seq-len": (lambda d, t: ["--model", "stories260k", "--seq-len", "65", "--max-seq-len", "64"], "--seq-len 65 exceeds --max-seq-len 64"),
    "max-seq-len over context": (lambda d, t: ["--model", "stories260k", "--max-seq-len", "1024"], "--max-seq-len 1024 exceeds the model's context length 512"),
    "unknown shape": (lambda d, t: ["--random-init", "llama-7b"], "unknown shape 'llama-7b' (known: tiny, llama-100m, tinyllama-1.1b"),
    "unknown entry": (lambda d, t: ["--model", "tiny", "--entry", "prefill,generate"], "entries must be distinct names among prefill, decode"),
    "hf frontend on llama2.c": (lambda d, t: ["--model", "stories260k", "--frontend", "hf"], "the hf frontend needs the half-split RoPE layout"),
    "seed for a checkpoint": (lambda d, t: ["--model", "stories260k", "--seed", "1"], "--seed applies to random-init models only"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_exit_1_and_no_output(case, hf_dir, tmp_path, capsys):
    make_args, message = BAD_INPUTS[case]
    out = tmp_path / "out" / "m.mlir"
    out.parent.mkdir()
    assert harden_import(*make_args(hf_dir, tmp_path), "-o", out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("harden-import: error: "), err
    assert message.replace("{t}", str(tmp_path)) in err
    assert not list(out.parent.iterdir())  # no output, no parameter file, no temporary


def test_external_weights_need_an_output_file(tmp_path, capsys):
    assert harden_import("--model", "tiny", "--external-weights") == 1
    assert capsys.readouterr().err == "harden-import: error: external weights need an output file (-o FILE), not stdout\n"
    assert harden_import("--model", "tiny", "--external-weights", "-o", tmp_path / "w.safetensors") == 1
    assert "would be overwritten by its own parameter file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_command_line_tool_reports_without_traceback(tmp_path):
    tool = Path(sys.executable).parent / "harden-import"
    result = subprocess.run([tool, "--model", tmp_path / "nope", "-o", tmp_path / "m.mlir"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"harden-import: error: '{tmp_path}/nope': no such file or directory " "(expected stories260k, smollm2-135m, tiny, a llama2.c .bin file, a GGUF file or a Hugging Face directory)\n"
    assert not (tmp_path / "m.mlir").exists()


def test_provenance_of_a_moved_or_changed_checkpoint_is_refused(tmp_path):
    checkpoint = tmp_path / "model.bin"
    shutil.copy(embedded_model_path("stories260k"), checkpoint)
    out = tmp_path / "m.mlir"
    assert harden_import("--model", checkpoint, "--entry", "decode", "--max-seq-len", "16", "-o", out) == 0
    prov = load_provenance(parse(out))
    assert prov.source == str(checkpoint) and prov.path == str(checkpoint.resolve())
    reference_model_from_provenance(prov)
    moved = tmp_path / "elsewhere.bin"
    shutil.copy(checkpoint, moved)
    data = bytearray(checkpoint.read_bytes())
    data[100] ^= 1  # same size, other weights
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(FrontendError, match="is not the checkpoint the module was imported from"):
        reference_model_from_provenance(prov)
    checkpoint.unlink()
    with pytest.raises(FrontendError, match="which is not at .* any more; pass --checkpoint PATH"):
        reference_model_from_provenance(prov)
    reference_model_from_provenance(prov, checkpoint=moved)  # found where the caller says, same sha256
