"""llama.cpp GGUF files of the llama architecture, read and written through llama.cpp's own
`gguf` package.

The configuration comes from the `llama.*` metadata, the tokenizer from the `tokenizer.*`
metadata (frontend/tokenizer.py), and each tensor is dequantized to f32 on demand with
`gguf.quants.dequantize` (llama.cpp's reference dequantizers in numpy), one at a time, from
the memory-mapped file. GGUF lists tensor dimensions innermost first; they are reversed here.

llama.cpp's converter permutes the rows of attn_q and attn_k so that its RoPE rotates
adjacent pairs; this is undone, so the weights are Hugging Face's ("half" RoPE layout) and
the model can be exported with either modeling code (`--frontend reference` or `hf`).
`write_gguf` writes a model the way llama.cpp's converter does (permuted q/k rows, tensors
quantized with gguf.quants), for llama.cpp to run and for tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch

from harden.core.files import atomic_path
from harden.frontend.llama import Llama, LlamaConfig
from harden.frontend.weights import FrontendError, WeightSource, build_reference_model, reference_weight_shapes, sha256_of_files

GGUF_MAGIC = b"GGUF"

# The tensor types the import dequantizes (gguf.quants knows them all); anything else is refused.
SUPPORTED_TYPES = (
    "F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0",
)

_LAYER_NAMES = {
    "attn_norm.weight": "attention_norm.weight",
    "attn_q.weight": "attention.wq.weight",
    "attn_k.weight": "attention.wk.weight",
    "attn_v.weight": "attention.wv.weight",
    "attn_output.weight": "attention.wo.weight",
    "attn_q.bias": "attention.wq.bias",
    "attn_k.bias": "attention.wk.bias",
    "attn_v.bias": "attention.wv.bias",
    "attn_output.bias": "attention.wo.bias",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn_gate.weight": "feed_forward.w1.weight",
    "ffn_down.weight": "feed_forward.w2.weight",
    "ffn_up.weight": "feed_forward.w3.weight",
}
_GLOBAL_NAMES = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight", "output.weight": "output.weight"}
_REFERENCE_LAYER = {v: k for k, v in _LAYER_NAMES.items()}
_REFERENCE_GLOBAL = {v: k for k, v in _GLOBAL_NAMES.items()}
# Tensors llama.cpp may store that the model does not read: RoPE tables it recomputes.
_IGNORED = ("rope_freqs.weight",)


def gguf_name(reference_name: str) -> str:
    """The GGUF name of a reference weight name (layers.3.attention.wq.weight -> blk.3.attn_q.weight)."""
    if reference_name in _REFERENCE_GLOBAL:
        return _REFERENCE_GLOBAL[reference_name]
    _, layer, rest = reference_name.split(".", 2)
    return f"blk.{layer}.{_REFERENCE_LAYER[rest]}"


def permute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of attn_q / attn_k rows (or biases): per
    head, rows (i, i + head_dim/2) become (2i, 2i+1), the pairs its RoPE rotates."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's convert_hf_to_gguf permutation of attn_q / attn_k rows (or biases):
    per head, rows (2i, 2i+1) go back to (i, i + head_dim/2)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class _CountError(ValueError):
    """A count in a GGUF file that its remaining bytes cannot hold."""


@cache
def _checked_reader():
    """gguf.GGUFReader with every count it reads bounded by the bytes left in the file.

    The reader trusts the counts of the file, and reading past the end of its memory map
    gives empty arrays, not an error: an array of scalars whose corrupted length passes the
    end loops over every claimed item, appending an empty array each time, until memory runs
    out. N items of at least k bytes each cannot take more than the bytes left, so larger
    counts (metadata and tensor counts, array and string lengths) are refused before the
    reader's loops start. The hooks are internal methods of gguf 0.19's reader;
    test/test_frontend_gguf.py fails if they stop being called.
    """
    import gguf

    T = gguf.GGUFValueType
    ARRAY, item_sizes = int(T.ARRAY), {int(T.STRING): 8, int(T.ARRAY): 12}  # plain ints: enum lookups are slow

    class Reader(gguf.GGUFReader):
        _last_string = (-1, b"")  # (end offset, bytes) of the last string read: the key of a value

        def _check(self, count, offs: int, item_bytes: int, what: str, items: str) -> None:
            left = max(len(self.data) - offs, 0)
            if len(count) and int(count[0]) * item_bytes > left:
                raise _CountError(f"{what} claims {int(count[0])} {items}, more than the {left} bytes left in the file can hold")

        def _build_fields(self, offs, count, *args, **kwargs):
            # A key (8-byte length), a type (4 bytes) and a value of at least 1 byte each.
            self._check([count], offs, 13, "the header", "metadata entries")
            return super()._build_fields(offs, count, *args, **kwargs)

        def _build_tensor_info(self, offs, count, *args, **kwargs):
            # A name (8-byte length), n_dims and a type (4 bytes each), an offset (8 bytes) each.
            self._check([count], offs, 24, "the header", "tensors")
            return super()._build_tensor_info(offs, count, *args, **kwargs)

        def _get_str(self, offset, *args, **kwargs):
            length, data = super()._get_str(offset, *args, **kwargs)  # `data` stops at the end of the file
            self._check(length, offset + 8, 1, f"the string at byte {offset}", "bytes")
            self._last_string = (offset + 8 + len(data), data)
            return length, data

        def _get_field_parts(self, offs, raw_type, *args, **kwargs):
            if int(raw_type) == ARRAY and len(item_type := self._get(offs, np.uint32)):  # item type (4 bytes), length (8), items
                t = int(item_type[0])
                item_bytes = item_sizes.get(t) or np.dtype(self.gguf_scalar_to_np.get(t, np.uint8)).itemsize
                end, key = self._last_string  # a key ends 4 bytes (its value's type) before the value
                name = f"'{bytes(key).decode(errors='replace')}'" if end == offs - 4 else f"at byte {offs}"
                self._check(self._get(offs + 4, np.uint64), offs + 12, item_bytes, f"metadata array {name}", "items")
            return super()._get_field_parts(offs, raw_type, *args, **kwargs)

    return Reader


def _read(path: Path):
    """The GGUFReader of `path`; a one-line FrontendError for anything that is not a readable GGUF."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise FrontendError(f"'{path}': not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    try:
        return _checked_reader()(path)
    except Exception as e:  # noqa: BLE001 - the reader raises many kinds on a damaged file
        # gguf's own checks say what is wrong; numpy's errors from reading past the end do not.
        message = (str(e).strip().splitlines() or [""])[0]
        own = isinstance(e, _CountError) or (
            isinstance(e, (ValueError, KeyError)) and any(w in message for w in ("version", "magic", "alignment", "Duplicate", "Unknown", "duplicated"))
        )
        reason = message if own else f"{path.stat().st_size} bytes: it ends early or its metadata is damaged"
        raise FrontendError(f"'{path}': truncated or corrupted GGUF file ({reason})") from None


def _value(reader, key: str, where: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise FrontendError(f"{where}: metadata '{key}' is missing")
        return default
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - a value of an unexpected type or size
        raise FrontendError(f"{where}: metadata '{key}' cannot be read") from None


def _int(reader, key: str, where: str, default=None) -> int:
    value = _value(reader, key, where, default)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise FrontendError(f"{where}: metadata '{key}' is {type(value).__name__}, expected an integer")
    return int(value)


def _float(reader, key: str, where: str, default=None) -> float:
    value = _value(reader, key, where, default)
    if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):
        raise FrontendError(f"{where}: metadata '{key}' is {type(value).__name__}, expected a number")
    return float(value)


def config_from_gguf(reader, tensors: dict, where: str) -> LlamaConfig:
    """The LlamaConfig of a llama-architecture GGUF (refuses what the reference model does not compute)."""
    arch = _value(reader, "general.architecture", where)
    if arch != "llama":
        raise FrontendError(f"{where}: architecture '{arch}' is not supported (harden imports llama)")
    if "llama.rope.scaling.type" in reader.fields and _value(reader, "llama.rope.scaling.type", where) not in ("none", ""):
        raise FrontendError(f"{where}: RoPE scaling '{_value(reader, 'llama.rope.scaling.type', where)}' is not supported")
    if "llama.expert_count" in reader.fields and _int(reader, "llama.expert_count", where) > 0:
        raise FrontendError(f"{where}: mixture-of-experts models are not supported")
    dim = _int(reader, "llama.embedding_length", where)
    heads = _int(reader, "llama.attention.head_count", where)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = _int(reader, "llama.vocab_size", where, default=len(tokens.data) if tokens is not None else None)
    head_dim = _int(reader, "llama.attention.key_length", where, default=dim // heads if heads else 0)
    rotary = _int(reader, "llama.rope.dimension_count", where, default=head_dim)
    if rotary != head_dim:
        raise FrontendError(f"{where}: partial RoPE ({rotary} of {head_dim} dimensions) is not supported")
    layers = _int(reader, "llama.block_count", where)
    if layers > len(tensors):  # every layer has tensors; a corrupted count must not size lists of names
        raise FrontendError(f"{where}: metadata 'llama.block_count' is {layers}, more layers than the file's {len(tensors)} tensors")
    bias = "blk.0.attn_q.bias" in tensors
    try:
        return LlamaConfig(
            dim=dim,
            hidden_dim=_int(reader, "llama.feed_forward_length", where),
            n_layers=layers,
            n_heads=heads,
            n_kv_heads=_int(reader, "llama.attention.head_count_kv", where, default=heads),
            vocab_size=vocab,
            max_seq_len=_int(reader, "llama.context_length", where, default=2048),
            norm_eps=_float(reader, "llama.attention.layer_norm_rms_epsilon", where, default=1e-5),
            rope_theta=_float(reader, "llama.rope.freq_base", where, default=10000.0),
            rope_layout="half",
            qkv_bias=bias,
            o_bias="blk.0.attn_output.bias" in tensors,
            tie_embeddings="output.weight" not in tensors,
            head_dim=head_dim,
        )
    except (ValueError, ZeroDivisionError) as e:
        raise FrontendError(f"{where}: {e}") from None


class GgufWeights(WeightSource):
    """The tensors of a GGUF file under reference names, dequantized to f32 one at a time."""

    def __init__(self, tensors: dict, config: LlamaConfig):
        self._tensors = tensors
        self._config = config
        super().__init__(reference_weight_shapes(config))

    def _load(self, name: str) -> torch.Tensor:
        import gguf

        t = self._tensors[gguf_name(name)]
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(self.shapes[name])
        if name.endswith(("attention.wq.weight", "attention.wq.bias")):
            w = unpermute_rope_rows(w, self._config.n_heads)
        elif name.endswith(("attention.wk.weight", "attention.wk.bias")):
            w = unpermute_rope_rows(w, self._config.n_kv_heads)
        return torch.from_numpy(np.array(w, dtype=np.float32, order="C"))  # a writable copy, not the mapped file


class GgufCheckpoint:
    """A llama-architecture GGUF file (see the module docstring)."""

    kind = "gguf"
    given = None  # the path as the user gave it

    def __init__(self, path: Path, name: str | None = None):
        self.path = path
        self.name = name  # set for a model a package ships (smollm2-135m)
        where = f"'{path}'"
        self.reader = _read(path)
        tensors = {t.name: t for t in self.reader.tensors}
        self.config = config_from_gguf(self.reader, tensors, where)
        expected = {gguf_name(n): s for n, s in reference_weight_shapes(self.config).items()}
        for name, shape in expected.items():
            t = tensors.get(name)
            if t is None:
                raise FrontendError(f"{where}: tensor '{name}' is missing")
            got = tuple(int(d) for d in reversed(t.shape))
            if got != tuple(shape):
                raise FrontendError(f"{where}: tensor '{name}' has shape {list(got)}, the metadata implies {list(shape)}")
            if t.tensor_type.name not in SUPPORTED_TYPES:
                raise FrontendError(
                    f"{where}: tensor '{name}' has type {t.tensor_type.name} (supported: {', '.join(SUPPORTED_TYPES)})"
                )
        for name in tensors:
            if name not in expected and name not in _IGNORED:
                raise FrontendError(f"{where}: unexpected tensor '{name}' for a llama model")
        self.tensor_types = dict(sorted(Counter(tensors[n].tensor_type.name for n in expected).items()))
        self.weights = GgufWeights(tensors, self.config)

    @property
    def sha256(self) -> str:
        return sha256_of_files([self.path])

    def reference_model(self) -> Llama:
        return build_reference_model(self.config, self.weights)


@dataclass(frozen=True)
class GgufVocabulary:
    """A tokenizer as GGUF metadata: `model` is llama.cpp's tokenizer model ("gpt2" for
    byte-level BPE, "llama" for SentencePiece), with tokens, their types, merges (BPE) or
    scores (SentencePiece), and the special token ids."""

    model: str
    tokens: list[str]
    token_types: list[int]
    bos_id: int
    eos_id: int
    merges: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def write_gguf(
    path: Path,
    config: LlamaConfig,
    weights: WeightSource,
    tensor_type: Callable[[str], str],
    title: str,
    vocabulary: GgufVocabulary | None = None,
) -> None:
    """Writes a model as a llama GGUF (atomically): `weights` by reference name, each stored
    in the type `tensor_type(name)` names (F32, Q8_0, Q4_1, TQ2_0, ...; gguf.quants
    quantizes), q/k rows permuted as llama.cpp's converter does. Half-split RoPE only."""
    import gguf
    from gguf.quants import quantize

    c = config
    if c.rope_layout != "half" or c.rope_scaling is not None or c.qkv_bias != c.o_bias:
        raise FrontendError("a llama GGUF holds half-split RoPE models without RoPE scaling and with one attention bias flag")
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(title)
        writer.add_context_length(c.max_seq_len)
        writer.add_embedding_length(c.dim)
        writer.add_block_count(c.n_layers)
        writer.add_feed_forward_length(c.hidden_dim)
        writer.add_head_count(c.n_heads)
        writer.add_head_count_kv(c.n_kv_heads)
        writer.add_key_length(c.head_dim)
        writer.add_value_length(c.head_dim)
        writer.add_rope_dimension_count(c.head_dim)
        writer.add_rope_freq_base(c.rope_theta)
        writer.add_layer_norm_rms_eps(c.norm_eps)
        writer.add_vocab_size(c.vocab_size)
        if vocabulary is None:
            writer.add_tokenizer_model("none")
        else:
            writer.add_tokenizer_model(vocabulary.model)
            writer.add_token_list(vocabulary.tokens)
            writer.add_token_types(vocabulary.token_types)
            if vocabulary.merges:
                writer.add_token_merges(vocabulary.merges)
            if vocabulary.scores:
                writer.add_token_scores(vocabulary.scores)
            writer.add_bos_token_id(vocabulary.bos_id)
            writer.add_eos_token_id(vocabulary.eos_id)
        for name in weights.names():
            w = weights.tensor(name).numpy()
            if name.endswith(("attention.wq.weight", "attention.wq.bias")):
                w = permute_rope_rows(w, c.n_heads)
            elif name.endswith(("attention.wk.weight", "attention.wk.bias")):
                w = permute_rope_rows(w, c.n_kv_heads)
            qtype = gguf.GGMLQuantizationType[tensor_type(name)]
            if qtype == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(gguf_name(name), np.ascontiguousarray(w, np.float32))
            else:
                writer.add_tensor(gguf_name(name), quantize(w, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
