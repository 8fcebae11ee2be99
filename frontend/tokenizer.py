"""Tokenizers that travel with a model: from a Hugging Face directory, a GGUF file, or a llama2.c
`tokenizer.bin`, all as transformers tokenizers (the `tokenizers` library underneath).

* Hugging Face directory: `tokenizer.json` (and tokenizer_config.json: special tokens, chat
  template), loaded by `AutoTokenizer`.
* GGUF: the vocabulary, merges, scores, special tokens and chat template of the file's
  `tokenizer.*` metadata, converted by transformers' own GGUF integration
  (`get_gguf_tokenizer`, `convert_gguf_tokenizer`), as `AutoTokenizer.from_pretrained(...,
  gguf_file=...)` does.
* llama2.c `tokenizer.bin`: `int32 max_token_length`, then per token `float32 score, int32
  length, bytes`; as many tokens as the model's vocabulary (the file does not say). It is a
  SentencePiece BPE vocabulary whose scores order the merges, with byte-fallback tokens
  `<0xNN>` and ' ' for SentencePiece's '▁'. It is handed to the same GGUF integration as a
  SentencePiece ("llama") vocabulary, so transformers builds the tokenizer; BOS is added.

A module records which tokenizer it uses in its provenance (`TokenizerSource`), so harden-run
can rebuild it. Ids are transformers' for the same text by construction.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from harden.frontend.weights import FrontendError, sha256_of_files

TOKENIZER_KINDS = ("hf", "gguf", "llama2c")
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class TokenizerSource:
    """Where a module's tokenizer comes from: its kind, file (or directory) and sha256."""

    kind: str
    path: str
    sha256: str


class TextTokenizer:
    """Text <-> token ids for one model, with its special tokens and chat template."""

    def __init__(self, backend, source: TokenizerSource):
        self.backend = backend
        self.source = source

    @property
    def vocab_size(self) -> int:
        """Tokens the tokenizer can produce (added special tokens included)."""
        return len(self.backend)

    @property
    def eos_ids(self) -> set[int]:
        """Token ids that end a generation."""
        eos = self.backend.eos_token_id
        return set() if eos is None else {int(eos)}

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, with BOS as the model expects it (its tokenizer's setting)."""
        return list(self.backend(text)["input_ids"])

    def encode_chat(self, prompt: str) -> list[int]:
        """The ids of a one-turn chat: the model's chat template around `prompt`, ending where
        the assistant's answer starts."""
        if not getattr(self.backend, "chat_template", None):
            raise FrontendError(f"the tokenizer of '{self.source.path}' has no chat template (use --prompt without --chat)")
        encoded = self.backend.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
        )
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids)


def _backend_from_gguf_dict(tokenizer_dict: dict, tokenizer_config: dict, architecture: str = "llama"):
    from transformers import TokenizersBackend
    from transformers.integrations.gguf import convert_gguf_tokenizer

    backend, extra = convert_gguf_tokenizer(architecture, tokenizer_dict)
    return TokenizersBackend(tokenizer_object=backend, **tokenizer_config, **extra)


def gguf_tokenizer(path: Path) -> TextTokenizer:
    """The tokenizer stored in a GGUF file's metadata (transformers' conversion)."""
    from transformers.integrations.gguf import get_gguf_tokenizer

    try:
        architecture, tokenizer_dict, tokenizer_config = get_gguf_tokenizer(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways inside the reader
        raise FrontendError(f"'{path}': cannot read the tokenizer metadata ({_first_line(e)})") from None
    if "tokens" not in tokenizer_dict:
        raise FrontendError(f"'{path}': the GGUF file has no tokenizer (no tokenizer.ggml.tokens)")
    try:
        backend = _backend_from_gguf_dict(tokenizer_dict, tokenizer_config, architecture)
    except Exception as e:  # noqa: BLE001
        raise FrontendError(f"'{path}': unsupported GGUF tokenizer '{tokenizer_dict.get('tokenizer_type')}' ({_first_line(e)})") from None
    return TextTokenizer(backend, TokenizerSource("gguf", str(path), sha256_of_files([path])))


def hf_tokenizer(directory: Path) -> TextTokenizer:
    """The tokenizer of a Hugging Face directory (tokenizer.json + tokenizer_config.json)."""
    from transformers import AutoTokenizer

    try:
        backend = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise FrontendError(f"'{directory / 'tokenizer.json'}': cannot load the tokenizer ({_first_line(e)})") from None
    files = [p for p in (directory / "tokenizer.json", directory / "tokenizer_config.json") if p.is_file()]
    return TextTokenizer(backend, TokenizerSource("hf", str(directory), sha256_of_files(files)))


def read_llama2c_vocabulary(path: Path, vocab_size: int) -> tuple[list[str], list[float]]:
    """(pieces, scores) of a llama2.c tokenizer.bin with `vocab_size` tokens."""
    data = path.read_bytes()
    if len(data) < 4:
        raise FrontendError(f"'{path}': truncated: {len(data)} bytes, a llama2.c tokenizer starts with 4")
    offset, pieces, scores = 4, [], []
    for index in range(vocab_size):
        if offset + 8 > len(data):
            raise FrontendError(f"'{path}': holds {index} tokens, the model's vocabulary has {vocab_size}")
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        if length < 0 or offset + length > len(data):
            raise FrontendError(f"'{path}': token {index} has length {length} beyond the end of the file (not a llama2.c tokenizer?)")
        try:
            pieces.append(data[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise FrontendError(f"'{path}': token {index} is not UTF-8 (not a llama2.c tokenizer?)") from None
        scores.append(score)
        offset += length
    if offset != len(data):
        raise FrontendError(f"'{path}': holds more than the model's {vocab_size} tokens ({len(data) - offset} bytes left)")
    return pieces, scores


def llama2c_tokenizer(path: Path, vocab_size: int) -> TextTokenizer:
    """A llama2.c tokenizer.bin for a model with `vocab_size` tokens (see the module docstring):
    unk 0, BOS 1, EOS 2 as in llama2.c's run.c."""
    pieces, scores = read_llama2c_vocabulary(path, vocab_size)
    tokens = [piece.replace(" ", "\u2581") for piece in pieces]
    # GGUF token types: 1 normal, 2 unknown, 3 control, 6 byte.
    types = [6 if _BYTE_PIECE.match(t) else 1 for t in tokens]
    for special, kind in ((0, 2), (1, 3), (2, 3)):
        if special < len(types):
            types[special] = kind
    tokenizer_dict = {
        "tokenizer_type": "llama",
        "tokens": tokens,
        "scores": scores,
        "token_type": types,
        "unk_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "add_prefix_space": True,
    }
    config = {"add_bos_token": True, "bos_token": tokens[1], "eos_token": tokens[2], "unk_token": tokens[0]}
    try:
        backend = _backend_from_gguf_dict(tokenizer_dict, config)
    except Exception as e:  # noqa: BLE001
        raise FrontendError(f"'{path}': cannot build a tokenizer from it ({_first_line(e)})") from None
    # SentencePiece (and run.c) always add the dummy prefix, also before a leading space;
    # tokenizers' Metaspace skips it there. A normalizer that always prepends matches them
    # (as transformers' own phi3 GGUF builder does).
    from tokenizers import normalizers

    backend.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend(prepend="\u2581"), normalizers.Replace(pattern=" ", content="\u2581")]
    )
    backend.backend_tokenizer.pre_tokenizer = None
    return TextTokenizer(backend, TokenizerSource("llama2c", str(path), sha256_of_files([path])))


def load_tokenizer(source: TokenizerSource, vocab_size: int, path: Path | None = None) -> TextTokenizer:
    """Rebuilds a recorded tokenizer (from `path` when the file has moved) and checks it is
    the same file (sha256) and fits the model's vocabulary."""
    where = Path(path or source.path)
    if not where.exists():
        raise FrontendError(f"the tokenizer '{source.path}' no longer exists (pass --tokenizer PATH)")
    if source.kind == "gguf":
        tokenizer = gguf_tokenizer(where)
    elif source.kind == "hf":
        tokenizer = hf_tokenizer(where)
    elif source.kind == "llama2c":
        tokenizer = llama2c_tokenizer(where, vocab_size)
    else:
        raise FrontendError(f"unknown tokenizer kind '{source.kind}' in the provenance")
    if tokenizer.source.sha256 != source.sha256:
        raise FrontendError(f"'{where}' is not the tokenizer the module was imported with (sha256 differs)")
    return tokenizer


def check_vocabulary(tokenizer: TextTokenizer, vocab_size: int) -> None:
    """A tokenizer whose ids reach past the model's embedding cannot serve it."""
    if tokenizer.vocab_size > vocab_size:
        raise FrontendError(
            f"'{tokenizer.source.path}': the tokenizer has {tokenizer.vocab_size} tokens, the model's vocabulary {vocab_size}"
        )


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0]
