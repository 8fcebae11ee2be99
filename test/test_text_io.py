"""Text in and out: llama2.c tokenizers, --tokenizer at import, --prompt/--text in harden-run,
checkpoints and tokenizers that moved, and the bad inputs of each (one line, exit 1)."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harden.frontend.tokenizer import llama2c_tokenizer

BIN = Path(sys.executable).parent
STORIES_VOCAB = 512
WORDS = ["the", " the", " cat", " sat", " on", " mat", "ing", " a", " dog", "og", " s", "at", " c", "he", " th", "th", "in",
         "an", " an", " and", " Th", " The", "ed", " is", "is", " hat", "ha", " Once", " upon", " time", " there", " was"]


def toy_vocabulary(size: int, seed: int = 0) -> tuple[list[str], list[float]]:
    """A SentencePiece-style vocabulary as llama2.c stores it: unk, BOS, EOS, 256 byte
    tokens, characters, then merged pieces with scores (higher merges first), padded to `size`."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    chars = list(" abcdefghijklmnopqrstuvwxyzTHEO.,!?'")
    pieces += chars
    scores = [0.0] * 259 + [-1000.0 - i for i in range(len(chars))]
    rng = random.Random(seed)
    for word in WORDS:
        if word not in pieces:
            pieces.append(word)
            scores.append(-rng.random() * 100)
    while len(pieces) < size:
        pieces.append(f"<extra{len(pieces)}>")
        scores.append(-5000.0)
    return pieces, scores


def write_tokenizer_bin(path: Path, pieces: list[str], scores: list[float]) -> Path:
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p.encode()) for p in pieces)))
        for piece, score in zip(pieces, scores):
            data = piece.encode()
            f.write(struct.pack("<fi", score, len(data)) + data)
    return path


def run_c_encode(text: str, pieces: list[str], scores: list[float]) -> list[int]:
    """llama2.c run.c's encode() with BOS, ported as the test's oracle: the dummy prefix,
    byte fallback, then merging the best-scoring adjacent pair until none is in the vocabulary."""
    lookup = {p: i for i, p in enumerate(pieces)}
    tokens = [1] + ([lookup[" "]] if text else [])
    for ch in text:
        tokens += [lookup[ch]] if ch in lookup else [b + 3 for b in ch.encode()]
    while True:
        best = max(
            ((scores[lookup[pieces[a] + pieces[b]]], -i, i) for i, (a, b) in enumerate(zip(tokens, tokens[1:])) if pieces[a] + pieces[b] in lookup),
            default=None,
        )
        if best is None:
            return tokens
        i = best[2]
        tokens[i : i + 2] = [lookup[pieces[tokens[i]] + pieces[tokens[i + 1]]]]


TEXTS = ["Once upon a time there was a cat", "the cat sat on the mat", " leading space", "two  spaces", "ü and 🙂", "end ", "a\nb", ""]


def test_llama2c_tokenizer_encodes_as_run_c(tmp_path):
    pieces, scores = toy_vocabulary(STORIES_VOCAB)
    tokenizer = llama2c_tokenizer(write_tokenizer_bin(tmp_path / "tok.bin", pieces, scores), STORIES_VOCAB)
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert ids == run_c_encode(text, pieces, scores), text
        assert tokenizer.decode(ids[1:]) == text


def tool(name: str, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": str(BIN), "HARDEN_CACHE_DIR": str(Path(cwd or ".") / "cache")})


def one_error_line(result, code: int, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


@pytest.fixture(scope="module")
def stories_with_tokenizer(tmp_path_factory):
    """stories260k imported with a (toy) llama2.c tokenizer of its 512-token vocabulary."""
    work = tmp_path_factory.mktemp("text")
    pieces, scores = toy_vocabulary(STORIES_VOCAB)
    write_tokenizer_bin(work / "tok512.bin", pieces, scores)
    # prefill and decode only (generation then slices prefill's logits): text does not depend on
    # prefill_last, which test_harden_run and test_decode_buckets run through harden-run.
    result = tool("harden-import", "--model", "stories260k", "--tokenizer", "tok512.bin", "--seq-len", "16", "--max-seq-len", "64",
                  "--entry", "prefill,decode", "-o", "s.mlir", cwd=work)
    assert result.returncode == 0, result.stderr
    return work


def test_prompt_text_is_tokenized_and_continued_as_text(stories_with_tokenizer):
    work = stories_with_tokenizer
    result = tool("harden-run", "s.mlir", "--prompt", "Once upon a time", "--generate", "8", "--json", "r.json", cwd=work)
    assert result.returncode == 0, result.stderr
    r = json.loads((work / "r.json").read_text())
    pieces, scores = toy_vocabulary(STORIES_VOCAB)
    assert r["model"]["prompt"] == run_c_encode("Once upon a time", pieces, scores)
    assert r["prompt"] == "Once upon a time" and r["model_text"] == r["reference_text"]  # the f32 import is the model
    assert len(r["model"]["generation"]) <= 8 and isinstance(r["model_text"], str)
    assert "Once upon a time" in result.stdout and "ms/token" in result.stdout


def test_a_moved_tokenizer_is_named_and_can_be_pointed_at(stories_with_tokenizer):
    work = stories_with_tokenizer
    shutil.copy(work / "tok512.bin", work / "moved.bin")
    (work / "tok512.bin").rename(work / "gone.bin")
    try:
        one_error_line(tool("harden-run", "s.mlir", "--prompt", "Once", cwd=work), 1, "s.mlir", "tok512.bin", "--tokenizer PATH")
        result = tool("harden-run", "s.mlir", "--prompt", "Once", "--tokenizer", "moved.bin", "--generate", "2", cwd=work)
        assert result.returncode == 0, result.stderr
    finally:
        (work / "gone.bin").rename(work / "tok512.bin")


def test_a_tokenizer_of_another_vocabulary_size_is_refused(tmp_path):
    pieces, scores = toy_vocabulary(STORIES_VOCAB + 8)
    write_tokenizer_bin(tmp_path / "big.bin", pieces, scores)
    result = tool("harden-import", "--model", "stories260k", "--tokenizer", "big.bin", "-o", "s.mlir", cwd=tmp_path)
    one_error_line(result, 1, "big.bin", "holds more than the model's 512 tokens")
    assert not (tmp_path / "s.mlir").exists()


def test_text_inputs_that_cannot_work_give_one_line(stories_with_tokenizer, tmp_path):
    work = stories_with_tokenizer
    tool("harden-import", "--model", "stories260k", "--seq-len", "16", "--max-seq-len", "64", "-o", tmp_path / "plain.mlir")
    one_error_line(tool("harden-run", tmp_path / "plain.mlir", "--prompt", "hi", cwd=work), 1, "plain.mlir", "records no tokenizer")
    (tmp_path / "empty.txt").write_text("")
    result = tool("harden-run", "s.mlir", "--text", tmp_path / "empty.txt", "--json", tmp_path / "r.json", cwd=work)
    one_error_line(result, 1, "empty.txt", "holds no text")
    assert not (tmp_path / "r.json").exists()
    one_error_line(tool("harden-run", "s.mlir", "--chat", cwd=work), 2, "--chat needs --prompt")
    one_error_line(tool("harden-run", "s.mlir", "--prompt", "hi", "--chat", cwd=work), 1, "has no chat template")


def test_a_moved_checkpoint_is_named_and_can_be_pointed_at(tmp_path):
    from harden.frontend.llama2c import embedded_model_path

    shutil.copy(embedded_model_path("stories260k"), tmp_path / "model.bin")
    assert tool("harden-import", "--model", "model.bin", "--seq-len", "8", "--max-seq-len", "16", "-o", "m.mlir", cwd=tmp_path).returncode == 0
    (tmp_path / "model.bin").rename(tmp_path / "renamed.bin")
    one_error_line(tool("harden-run", "m.mlir", "--samples", "1", cwd=tmp_path), 1, "model.bin", "pass --checkpoint PATH")
    result = tool("harden-run", "m.mlir", "--samples", "1", "--checkpoint", "renamed.bin", "--generate", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
