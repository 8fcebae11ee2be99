"""Model sources for the Llama frontend: llama2.c checkpoints, Hugging Face directories, random init.

Every source gives a `LlamaConfig` and its weights by name, read lazily one tensor at a
time (memory-mapped files, or seeded generation), so a multi-gigabyte model can be
streamed into a parameter file without ever being held whole:

* `Llama2cCheckpoint`: Karpathy's llama2.c `.bin` (legacy version-0 format): a header of
  7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
  negative vocab_size means a separate classifier follows the other tensors), then f32
  tensors stacked over layers. RoPE pairs adjacent dimensions.
* `HfCheckpoint`: a Hugging Face directory with config.json (model_type "llama") and
  model.safetensors (or a sharded model.safetensors.index.json). RoPE pairs dimension i
  with i + head_dim/2 ("half" layout), so its q/k weights map to the reference model
  without a permutation.
* `RandomInit`: named real-world shapes (`SHAPES`) with seeded random weights.

Weights are named as in the reference model (`harden.runtime.llama`); an HF checkpoint
also gives its own names for exporting Hugging Face's modeling code. Every problem with
the input is a `FrontendError` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from harden.runtime.llama import Llama, Llama3RopeScaling, LlamaConfig


class FrontendError(Exception):
    """A model that cannot be loaded or imported, with a message fit for one error line."""


class WeightSource:
    """Tensors by name, produced on demand. Subclasses implement `_load`."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = shapes

    def names(self) -> list[str]:
        return list(self.shapes)

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor `name` as contiguous float32 on the CPU."""
        if name not in self.shapes:
            raise KeyError(f"no weight named '{name}'")
        t = self._load(name)
        return t.to(torch.float32).contiguous()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: self.tensor(name) for name in self.shapes}

    def _load(self, name: str) -> torch.Tensor:
        raise NotImplementedError


def reference_weight_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """The state dict of `Llama(config)`: names and shapes, in module order."""
    c = config
    q_dim = c.n_heads * c.head_dim
    shapes = {"tok_embeddings.weight": (c.vocab_size, c.dim)}
    for i in range(c.n_layers):
        p = f"layers.{i}."
        shapes[p + "attention_norm.weight"] = (c.dim,)
        for proj, rows in (("wq", q_dim), ("wk", c.kv_dim), ("wv", c.kv_dim)):
            shapes[p + f"attention.{proj}.weight"] = (rows, c.dim)
            if c.qkv_bias:
                shapes[p + f"attention.{proj}.bias"] = (rows,)
        shapes[p + "attention.wo.weight"] = (c.dim, q_dim)
        if c.o_bias:
            shapes[p + "attention.wo.bias"] = (c.dim,)
        shapes[p + "ffn_norm.weight"] = (c.dim,)
        shapes[p + "feed_forward.w1.weight"] = (c.hidden_dim, c.dim)
        shapes[p + "feed_forward.w2.weight"] = (c.dim, c.hidden_dim)
        shapes[p + "feed_forward.w3.weight"] = (c.hidden_dim, c.dim)
    shapes["norm.weight"] = (c.dim,)
    if not c.tie_embeddings:
        shapes["output.weight"] = (c.vocab_size, c.dim)
    return shapes


def build_reference_model(config: LlamaConfig, weights: WeightSource) -> Llama:
    """A `Llama` in eval mode holding `weights` (reference names)."""
    model = Llama(config)
    model.load_state_dict(weights.state_dict(), strict=True)
    return model.eval()


def sha256_of_files(paths: list[Path]) -> str:
    """One digest over the files' bytes in the given order (for one file: its sha256sum)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# llama2.c

LLAMA2C_HEADER = struct.Struct("<7i")
LLAMA2C_V1_MAGIC = 0x616B3432  # "ak42": the newer export.py versions, a different layout
EMBEDDED_MODELS = {"stories260k": "stories260k.bin"}
STORIES260K_SHA256 = "9414d5a285453a7eab631713d171753232c978f6f97654211469aff8be93c8d6"


def embedded_model_path(name: str) -> Path:
    """The path of a checkpoint shipped in the package (see runtime/models/)."""
    return Path(str(resources.files("harden.runtime") / "models" / EMBEDDED_MODELS[name]))


def llama2c_layout(config: LlamaConfig) -> list[tuple[str | None, tuple[int, ...], bool]]:
    """(name, shape, stacked over layers) of a llama2.c file's tensors, in file order.

    Name None marks the two legacy RoPE tables [seq_len, head_dim/2] (cos, then sin),
    which the reference model does not read: it computes RoPE from positions.
    """
    c = config
    q_dim = c.n_heads * c.head_dim
    layout: list[tuple[str | None, tuple[int, ...], bool]] = [
        ("tok_embeddings.weight", (c.vocab_size, c.dim), False),
        ("attention_norm.weight", (c.dim,), True),
        ("attention.wq.weight", (q_dim, c.dim), True),
        ("attention.wk.weight", (c.kv_dim, c.dim), True),
        ("attention.wv.weight", (c.kv_dim, c.dim), True),
        ("attention.wo.weight", (c.dim, q_dim), True),
        ("ffn_norm.weight", (c.dim,), True),
        ("feed_forward.w1.weight", (c.hidden_dim, c.dim), True),
        ("feed_forward.w2.weight", (c.dim, c.hidden_dim), True),
        ("feed_forward.w3.weight", (c.hidden_dim, c.dim), True),
        ("norm.weight", (c.dim,), False),
        (None, (2, c.max_seq_len, c.head_dim // 2), False),
    ]
    if not c.tie_embeddings:
        layout.append(("output.weight", (c.vocab_size, c.dim), False))
    return layout


class Llama2cWeights(WeightSource):
    """Memory-mapped llama2.c tensors; layer l of a stacked [L, ...] tensor is one weight."""

    def __init__(self, path: Path, config: LlamaConfig):
        c = config
        self._offsets: dict[str, tuple[int, tuple[int, ...]]] = {}
        offset = 0
        for name, shape, per_layer in llama2c_layout(c):
            size = int(np.prod(shape))
            for i in range(c.n_layers if per_layer else 1):
                if name is not None:
                    self._offsets[f"layers.{i}.{name}" if per_layer else name] = (offset, shape)
                offset += size
        self.num_floats = offset
        self._path = path
        self._data: np.memmap | None = None
        super().__init__({n: s for n, (_, s) in self._offsets.items()})
        # Module order, so iteration matches `reference_weight_shapes`.
        self.shapes = {n: self.shapes[n] for n in reference_weight_shapes(c)}

    def _load(self, name: str) -> torch.Tensor:
        if self._data is None:
            self._data = np.memmap(self._path, dtype="<f4", mode="r", offset=LLAMA2C_HEADER.size)
        start, shape = self._offsets[name]
        size = int(np.prod(shape))
        return torch.from_numpy(np.array(self._data[start : start + size]).reshape(shape))


def write_llama2c(path: Path, config: LlamaConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """Writes a model as a llama2.c (version 0) checkpoint that `Llama2cCheckpoint` and
    llama2.c's run.c read; refuses configs the format cannot express."""
    c = config
    unsupported = [
        why
        for why, bad in (
            ("q/k/v or o biases", c.qkv_bias or c.o_bias),
            ("the half-split RoPE layout", c.rope_layout != "adjacent"),
            ("a RoPE theta other than 10000", c.rope_theta != 10000.0 or c.rope_scaling is not None),
            ("an RMSNorm epsilon other than 1e-5", c.norm_eps != 1e-5),
            ("a head_dim other than dim / n_heads", c.head_dim * c.n_heads != c.dim),
        )
        if bad
    ]
    if unsupported:
        raise FrontendError(f"a llama2.c checkpoint cannot hold a model with {unsupported[0]}")
    vocab = c.vocab_size if c.tie_embeddings else -c.vocab_size
    parts = [np.frombuffer(LLAMA2C_HEADER.pack(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab, c.max_seq_len), np.uint8)]
    for name, shape, per_layer in llama2c_layout(c):
        if name is None:  # computed as llama2.c's export.py does, in float32
            freqs = 1.0 / (10000.0 ** (torch.arange(0, c.head_dim, 2)[: c.head_dim // 2].float() / c.head_dim))
            angles = torch.outer(torch.arange(c.max_seq_len), freqs).float()
            tables = [torch.cos(angles).numpy(), torch.sin(angles).numpy()]
        else:
            names = [f"layers.{i}.{name}" for i in range(c.n_layers)] if per_layer else [name]
            tables = [state_dict[n].detach().cpu().numpy() for n in names]
        parts += [np.ascontiguousarray(t, dtype="<f4").view(np.uint8).reshape(-1) for t in tables]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        for part in parts:
            f.write(part.tobytes())
    tmp.replace(path)


class Llama2cCheckpoint:
    """A llama2.c `.bin` checkpoint (see the module docstring); `name` is set for embedded ones."""

    kind = "llama2c"

    def __init__(self, path: Path, name: str | None = None):
        self.path = path
        self.name = name
        self.config = self._read_config(path)
        self.weights = Llama2cWeights(path, self.config)
        expected = LLAMA2C_HEADER.size + 4 * self.weights.num_floats
        size = path.stat().st_size
        if size != expected:
            c = self.config
            raise FrontendError(
                f"'{path}': file has {size} bytes but its llama2.c header (dim={c.dim}, "
                f"hidden_dim={c.hidden_dim}, n_layers={c.n_layers}, n_heads={c.n_heads}, "
                f"n_kv_heads={c.n_kv_heads}, vocab_size={c.vocab_size}, seq_len={c.max_seq_len}, "
                f"{'tied' if c.tie_embeddings else 'separate'} classifier) describes {expected} bytes"
            )

    @staticmethod
    def _read_config(path: Path) -> LlamaConfig:
        with open(path, "rb") as f:
            header = f.read(LLAMA2C_HEADER.size)
        if len(header) < LLAMA2C_HEADER.size:
            raise FrontendError(
                f"'{path}': truncated: {len(header)} bytes, a llama2.c header needs {LLAMA2C_HEADER.size}"
            )
        if struct.unpack_from("<I", header)[0] == LLAMA2C_V1_MAGIC:
            raise FrontendError(
                f"'{path}': llama2.c export version 1+ (magic 'ak42') is not supported; "
                "use the legacy version-0 format (export.py --version 0)"
            )
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = LLAMA2C_HEADER.unpack(header)
        if heads <= 0 or dim % heads:
            raise FrontendError(f"'{path}': not a llama2.c checkpoint header: dim {dim} is not a multiple of n_heads {heads}")
        try:
            return LlamaConfig(
                dim=dim,
                hidden_dim=hidden,
                n_layers=layers,
                n_heads=heads,
                n_kv_heads=kv_heads,
                vocab_size=abs(vocab),
                max_seq_len=seq_len,
                norm_eps=1e-5,
                rope_theta=10000.0,
                rope_layout="adjacent",
                tie_embeddings=vocab > 0,
            )
        except ValueError as e:
            raise FrontendError(f"'{path}': not a llama2.c checkpoint header: {e}") from None

    @property
    def sha256(self) -> str:
        return sha256_of_files([self.path])

    def reference_model(self) -> Llama:
        return build_reference_model(self.config, self.weights)


def open_embedded(name: str) -> Llama2cCheckpoint:
    return Llama2cCheckpoint(embedded_model_path(name), name=name)


# ---------------------------------------------------------------------------------------
# Hugging Face

HF_LAYER_NAMES = {
    "input_layernorm.weight": "attention_norm.weight",
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "self_attn.q_proj.bias": "attention.wq.bias",
    "self_attn.k_proj.bias": "attention.wk.bias",
    "self_attn.v_proj.bias": "attention.wv.bias",
    "self_attn.o_proj.bias": "attention.wo.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
}
HF_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
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
    model_type = raw.get("model_type")
    if model_type != "llama":
        raise FrontendError(f"{where}: unsupported model_type '{model_type}' (only 'llama' is supported)")
    architectures = raw.get("architectures") or ["LlamaForCausalLM"]
    if architectures != ["LlamaForCausalLM"]:
        raise FrontendError(f"{where}: unsupported architecture {', '.join(architectures)} (expected LlamaForCausalLM)")
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
    theta, scaling = _hf_rope(raw, where)
    try:
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
    except (TypeError, ValueError, ZeroDivisionError) as e:
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
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(raw, indent=2) + "\n")


def write_checkpoint(path: Path, config: LlamaConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """A llama2.c checkpoint for a path ending in .bin, else a Hugging Face directory."""
    if path.suffix == ".bin":
        write_llama2c(path, config, state_dict)
    else:
        write_hf_checkpoint(path, config, state_dict)


class SafetensorsWeights(WeightSource):
    """Tensors of safetensors files by stored name (read lazily through safetensors' mmap)."""

    def __init__(self, files: dict[str, Path], shapes: dict[str, tuple[int, ...]]):
        super().__init__(shapes)
        self._files = files
        self._handles: dict[Path, object] = {}

    def _load(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        path = self._files[name]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path].get_tensor(name)


class RenamedWeights(WeightSource):
    """Another source's tensors under other names (`names` maps new name -> source name)."""

    def __init__(self, source: WeightSource, names: dict[str, str]):
        super().__init__({new: source.shapes[old] for new, old in names.items()})
        self._source = source
        self._names = names

    def _load(self, name: str) -> torch.Tensor:
        return self._source.tensor(self._names[name])


class TensorWeights(WeightSource):
    """Tensors already in memory."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__({name: tuple(t.shape) for name, t in tensors.items()})
        self._tensors = tensors

    def _load(self, name: str) -> torch.Tensor:
        return self._tensors[name]


class MergedWeights(WeightSource):
    """The union of sources with distinct names."""

    def __init__(self, *sources: WeightSource):
        self._owner = {name: source for source in sources for name in source.shapes}
        super().__init__({name: source.shapes[name] for name, source in self._owner.items()})

    def _load(self, name: str) -> torch.Tensor:
        return self._owner[name].tensor(name)


def _safetensors_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} from a safetensors header, without reading the data."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if length is None or 8 + length > size:
            raise FrontendError(f"'{path}': truncated or not a safetensors file ({size} bytes)")
        raw = f.read(length)
    try:
        header = json.loads(raw)
        header.pop("__metadata__", None)
        shapes = {name: (tuple(int(d) for d in entry["shape"]), str(entry["dtype"])) for name, entry in header.items()}
        end = max((int(entry["data_offsets"][1]) for entry in header.values()), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise FrontendError(f"'{path}': not a safetensors file (bad header: {e.__class__.__name__})") from None
    if size < 8 + length + end:
        raise FrontendError(f"'{path}': truncated: {size} bytes, its header describes {8 + length + end}")
    return shapes


class HfCheckpoint:
    """A Hugging Face Llama directory (config.json + safetensors), see the module docstring."""

    kind = "hf"
    name = None
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


# ---------------------------------------------------------------------------------------
# Random init

# Real published shapes (from the models' config.json) plus `tiny` for fast tests and
# `llama-100m`, a GPT-2-small-sized Llama (about 110M parameters) between the two.
SHAPES: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig(
        dim=64, hidden_dim=176, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=256,
        max_seq_len=256, rope_layout="half", tie_embeddings=False,
    ),
    "llama-100m": LlamaConfig(
        dim=768, hidden_dim=2048, n_layers=12, n_heads=12, n_kv_heads=4, vocab_size=32000,
        max_seq_len=2048, rope_layout="half", tie_embeddings=True,
    ),
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
    "tinyllama-1.1b": LlamaConfig(
        dim=2048, hidden_dim=5632, n_layers=22, n_heads=32, n_kv_heads=4, vocab_size=32000,
        max_seq_len=2048, norm_eps=1e-5, rope_theta=10000.0, rope_layout="half", tie_embeddings=False,
    ),
    # meta-llama/Llama-3.2-1B
    "llama-3.2-1b": LlamaConfig(
        dim=2048, hidden_dim=8192, n_layers=16, n_heads=32, n_kv_heads=8, vocab_size=128256,
        max_seq_len=131072, norm_eps=1e-5, rope_theta=500000.0, rope_layout="half",
        rope_scaling=Llama3RopeScaling(32.0, 1.0, 4.0, 8192), tie_embeddings=True, head_dim=64,
    ),
    # meta-llama/Llama-3.1-8B
    "llama-3.1-8b": LlamaConfig(
        dim=4096, hidden_dim=14336, n_layers=32, n_heads=32, n_kv_heads=8, vocab_size=128256,
        max_seq_len=131072, norm_eps=1e-5, rope_theta=500000.0, rope_layout="half",
        rope_scaling=Llama3RopeScaling(8.0, 1.0, 4.0, 8192), tie_embeddings=False, head_dim=128,
    ),
}
BIAS_STD = 0.02  # transformers' initializer_range for Llama
NORM_STD = 0.1  # norm weights around 1, not all 1, so a misplaced norm changes the output


class RandomWeights(WeightSource):
    """Seeded random weights: each tensor has its own generator seeded from (seed, name),
    so any tensor can be produced alone and in any order, always with the same values.

    Matrices are N(0, 1/in_features): for the real shapes (dim 2048) that is transformers'
    std 0.02, and small test shapes still get logits of order 1 instead of near-uniform ones.
    """

    def __init__(self, config: LlamaConfig, seed: int):
        super().__init__(reference_weight_shapes(config))
        self.seed = seed

    def _load(self, name: str) -> torch.Tensor:
        digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        shape = self.shapes[name]
        if name.endswith("norm.weight"):
            return 1.0 + NORM_STD * torch.randn(shape, generator=generator)
        std = shape[1] ** -0.5 if len(shape) == 2 else BIAS_STD
        return std * torch.randn(shape, generator=generator)


class RandomInit:
    """A named shape (`SHAPES`) with seeded random weights."""

    kind = "random"
    sha256 = None

    def __init__(self, name: str, seed: int = 0, config: LlamaConfig | None = None):
        if name not in SHAPES:
            raise FrontendError(f"unknown shape '{name}' (known: {', '.join(SHAPES)})")
        self.name = name
        self.seed = seed
        self.config = config or SHAPES[name]
        self.weights = RandomWeights(self.config, seed)

    def reference_model(self) -> Llama:
        return build_reference_model(self.config, self.weights)


# ---------------------------------------------------------------------------------------


def open_model(spec: str) -> Llama2cCheckpoint | HfCheckpoint | RandomInit:
    """The source named by harden-import's --model: an embedded checkpoint (stories260k),
    `tiny` (random init), a llama2.c .bin file or a Hugging Face directory."""
    if spec in EMBEDDED_MODELS:
        return open_embedded(spec)
    if spec == "tiny":
        return RandomInit("tiny")
    path = Path(spec)
    if path.is_dir():
        return HfCheckpoint(path.resolve())
    if path.is_file():
        return Llama2cCheckpoint(path.resolve())
    raise FrontendError(
        f"'{spec}': no such file or directory (expected {', '.join(EMBEDDED_MODELS)}, tiny, "
        "a llama2.c .bin file or a Hugging Face directory)"
    )

