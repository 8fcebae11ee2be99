"""Hugging Face Llama directories (config.json + safetensors), read and written.

A directory with config.json (model_type "llama") and model.safetensors (or a sharded
model.safetensors.index.json). RoPE pairs dimension i with i + head_dim/2 ("half"
layout), so its q/k weights map to the reference model without a permutation. Tensors
are read through the `safetensors` library, lazily. Weights are renamed to the reference
model's names; `hf_weight_names` gives Hugging Face's own for exporting its modeling code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harden.core.files import atomic_path
from harden.core.llama_names import HF_GLOBAL_NAMES, HF_LAYER_NAMES
from harden.frontend.llama import Llama, Llama3RopeScaling, LlamaConfig
from harden.frontend.weights import (
    FrontendError,
    RenamedWeights,
    SafetensorsWeights,
    build_reference_model,
    reference_weight_shapes,
    sha256_of_files,
)

_REFERENCE_LAYER_NAMES = {v: k for k, v in HF_LAYER_NAMES.items()}
_REFERENCE_GLOBAL_NAMES = {v: k for k, v in HF_GLOBAL_NAMES.items()}


def hf_name(reference_name: str) -> str:
    """The Hugging Face name of a reference weight name (layers.3.attention.wq.weight ->
    model.layers.3.self_attn.q_proj.weight)."""
    if reference_name in _REFERENCE_GLOBAL_NAMES:
        return _REFERENCE_GLOBAL_NAMES[reference_name]
    _, layer, rest = reference_name.split(".", 2)
    return f"model.layers.{layer}.{_REFERENCE_LAYER_NAMES[rest]}"


def _hf_rope(raw: dict, where: str) -> tuple[float, Llama3RopeScaling | None]:
    """rope theta and scaling from a config.json of transformers 5 (`rope_parameters`) or 4
    (`rope_theta` + `rope_scaling`)."""
    params = raw.get("rope_parameters") or {}
    scaling = raw.get("rope_scaling") or params
    theta = params.get("rope_theta", raw.get("rope_theta", 10000.0))
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return float(theta), None
    if rope_type == "llama3":
        try:
            return float(theta), Llama3RopeScaling(
                factor=float(scaling["factor"]),
                low_freq_factor=float(scaling["low_freq_factor"]),
                high_freq_factor=float(scaling["high_freq_factor"]),
                original_max_position_embeddings=int(scaling["original_max_position_embeddings"]),
            )
        except KeyError as e:
            raise FrontendError(f"{where}: llama3 rope scaling lacks {e}") from None
    raise FrontendError(f"{where}: unsupported rope type '{rope_type}' (supported: default, llama3)")


def config_from_hf(raw: dict, where: str) -> LlamaConfig:
    """A LlamaConfig from the dictionary of a Hugging Face config.json (model_type llama).

    Refuses what the reference model does not compute: other model types, mixture of
    experts, sliding-window attention, non-SiLU activations, MLP biases, unknown RoPE types.
    Missing keys take transformers' LlamaConfig defaults.
    """
    if not isinstance(raw, dict):
        raise FrontendError(f"{where}: not a JSON object of configuration keys")
    model_type = raw.get("model_type")
    if model_type != "llama":
        raise FrontendError(f"{where}: unsupported model_type '{model_type}' (only 'llama' is supported)")
    architectures = raw.get("architectures") or ["LlamaForCausalLM"]
    if architectures != ["LlamaForCausalLM"]:
        named = ", ".join(map(str, architectures)) if isinstance(architectures, list) else json.dumps(architectures)
        raise FrontendError(f"{where}: unsupported architecture {named} (expected LlamaForCausalLM)")
    for key in ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size"):
        if raw.get(key):
            raise FrontendError(f"{where}: mixture-of-experts models are not supported ({key} = {raw[key]})")
    if raw.get("sliding_window") or raw.get("use_sliding_window"):
        raise FrontendError(f"{where}: sliding-window attention is not supported (sliding_window = {raw.get('sliding_window')})")
    if raw.get("hidden_act", "silu") != "silu":
        raise FrontendError(f"{where}: unsupported hidden_act '{raw['hidden_act']}' (Llama uses silu)")
    if raw.get("mlp_bias"):
        raise FrontendError(f"{where}: MLP biases (mlp_bias = true) are not supported")
    if raw.get("pretraining_tp", 1) not in (1, None):
        raise FrontendError(f"{where}: pretraining_tp = {raw['pretraining_tp']} is not supported")
    try:
        theta, scaling = _hf_rope(raw, where)
        heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        bias = bool(raw.get("attention_bias", False))
        return LlamaConfig(
            dim=hidden,
            hidden_dim=int(raw["intermediate_size"]),
            n_layers=int(raw["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(raw.get("num_key_value_heads") or heads),
            vocab_size=int(raw["vocab_size"]),
            max_seq_len=int(raw.get("max_position_embeddings", 2048)),
            norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_layout="half",
            rope_scaling=scaling,
            qkv_bias=bias,
            o_bias=bias,
            tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
            head_dim=int(raw.get("head_dim") or hidden // heads),
        )
    except KeyError as e:
        raise FrontendError(f"{where}: missing key {e}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as e:  # a value of the wrong JSON type
        raise FrontendError(f"{where}: {e}") from None


def hf_weight_names(config: LlamaConfig) -> dict[str, str]:
    """Hugging Face name -> reference name for every weight of `LlamaForCausalLM(config)`
    (a tied classifier, lm_head.weight, is the embedding under a second name)."""
    names = {hf_name(n): n for n in reference_weight_shapes(config)}
    if config.tie_embeddings:
        names["lm_head.weight"] = "tok_embeddings.weight"
    return names


def write_hf_checkpoint(directory: Path, config: LlamaConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """Writes a model as a Hugging Face Llama directory (config.json + model.safetensors)
    that `HfCheckpoint` and transformers read; refuses configs HF's Llama cannot express."""
    from safetensors.torch import save_file

    c = config
    if c.rope_layout != "half":
        raise FrontendError("a Hugging Face checkpoint pairs RoPE dimensions i and i + head_dim/2; "
                            "write this model (adjacent pairs) as a llama2.c .bin instead")
    if c.rope_scaling is not None or c.qkv_bias != c.o_bias:
        raise FrontendError("RoPE scaling or q/k/v biases without an o bias cannot be written as a Hugging Face Llama")
    raw = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c.dim,
        "intermediate_size": c.hidden_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": c.qkv_bias,
        "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    tensors = {hf_name(n): state_dict[n].detach().float().contiguous() for n in reference_weight_shapes(c)}
    if directory.is_dir():  # an empty directory the caller made; the rename replaces it
        directory.rmdir()
    with atomic_path(directory, directory=True) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(raw, indent=2) + "\n")


def _safetensors_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} of a safetensors file, from its header (the data is not read).

    safetensors itself checks the header and that the file holds all the data it describes."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        size = path.stat().st_size
        reason = (str(e).strip().splitlines() or [e.__class__.__name__])[0].removeprefix("Error while deserializing header: ")
        if "not fully covered" in reason:  # the data is shorter than the header says
            raise FrontendError(f"'{path}': truncated: {size} bytes, fewer than its safetensors header describes") from None
        raise FrontendError(f"'{path}': truncated or not a safetensors file ({size} bytes: {reason})") from None


class HfCheckpoint:
    """A Hugging Face Llama directory (config.json + safetensors), see the module docstring."""

    kind = "hf"
    name = None
    given = None  # the path as the user gave it
    # Buffers some older checkpoints carry; the modeling code recomputes them.
    IGNORED = ("rotary_emb.inv_freq",)
    DTYPES = ("F32", "F16", "BF16")

    def __init__(self, path: Path):
        self.path = path
        config_path = path / "config.json"
        if not config_path.is_file():
            raise FrontendError(f"'{path}': no config.json (not a Hugging Face model directory)")
        try:
            self.raw_config = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FrontendError(f"'{config_path}': invalid JSON: {e}") from None
        self.config = config_from_hf(self.raw_config, f"'{config_path}'")
        self.weight_files = self._weight_files()
        stored: dict[str, tuple[tuple[int, ...], str]] = {}
        files: dict[str, Path] = {}
        for file in self.weight_files:
            for name, entry in _safetensors_shapes(file).items():
                stored[name] = entry
                files[name] = file
        if self.config.n_layers > len(stored):  # before sizing name lists by a corrupted count
            raise FrontendError(f"'{path}': config.json does not match the weights: num_hidden_layers = {self.config.n_layers}, "
                                f"more layers than the checkpoint's {len(stored)} tensors")
        expected = {hf_name(n): s for n, s in reference_weight_shapes(self.config).items()}
        self._check_weights(expected, stored)
        self.weights = RenamedWeights(
            SafetensorsWeights(files, expected), {n: hf_name(n) for n in reference_weight_shapes(self.config)}
        )

    def _weight_files(self) -> list[Path]:
        single = self.path / "model.safetensors"
        index = self.path / "model.safetensors.index.json"
        if single.is_file():
            return [single]
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
                raise FrontendError(f"'{index}': invalid safetensors index ({e.__class__.__name__})") from None
            files = [self.path / f for f in sorted(set(weight_map.values()))]
            for f in files:
                if not f.is_file():
                    raise FrontendError(f"'{index}': shard '{f.name}' is missing")
            return files
        if (self.path / "pytorch_model.bin").exists():
            raise FrontendError(f"'{self.path}': only safetensors weights are supported (found pytorch_model.bin)")
        raise FrontendError(f"'{self.path}': no model.safetensors or model.safetensors.index.json")

    def _check_weights(self, expected: dict, stored: dict) -> None:
        where = f"'{self.path}': config.json does not match the weights"
        for name, shape in expected.items():
            if name not in stored:
                raise FrontendError(f"{where}: tensor '{name}' is missing")
            got, dtype = stored[name]
            if got != shape:
                raise FrontendError(
                    f"{where}: '{name}' has shape {list(got)} in the checkpoint, the config implies {list(shape)}"
                )
            if dtype not in self.DTYPES:
                raise FrontendError(f"'{self.path}': '{name}' has dtype {dtype} (supported: {', '.join(self.DTYPES)})")
        for name in stored:
            tied_copy = name == "lm_head.weight" and self.config.tie_embeddings
            if name not in expected and not tied_copy and not name.endswith(self.IGNORED):
                raise FrontendError(f"{where}: unexpected tensor '{name}'")

    @property
    def sha256(self) -> str:
        return sha256_of_files(self.weight_files)

    def reference_model(self) -> Llama:
        return build_reference_model(self.config, self.weights)
