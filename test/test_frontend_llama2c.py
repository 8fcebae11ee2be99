"""llama2.c checkpoints: the loader + reference model against an independent numpy port of
llama2.c's run.c on the real stories260K, and the loader's checks on bad files."""

import re
import struct

import numpy as np
import pytest
import torch
from frontend_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

from harden.frontend.llama import greedy_generate
from harden.frontend.llama2c import STORIES260K_SHA256, Llama2cCheckpoint, embedded_model_path, open_embedded
from harden.frontend.weights import FrontendError

BOS = 1


class NumpyLlama2c:
    """run.c's forward pass in numpy, reading the .bin itself (nothing shared with harden)."""

    def __init__(self, path):
        raw = open(path, "rb").read()
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", raw)
        self.shared = vocab > 0
        vocab = abs(vocab)
        self.dim, self.layers, self.heads, self.kv_heads, self.seq_len = dim, layers, heads, kv_heads, seq_len
        self.head_size = dim // heads
        kv_dim = kv_heads * self.head_size
        data = np.frombuffer(raw, dtype="<f4", offset=28)
        offset = 0

        def take(*shape):
            nonlocal offset
            n = int(np.prod(shape))
            array = data[offset : offset + n].reshape(shape)
            offset += n
            return array

        self.token_embedding = take(vocab, dim)
        self.rms_att = take(layers, dim)
        self.wq = take(layers, dim, dim)
        self.wk = take(layers, kv_dim, dim)
        self.wv = take(layers, kv_dim, dim)
        self.wo = take(layers, dim, dim)
        self.rms_ffn = take(layers, dim)
        self.w1 = take(layers, hidden, dim)
        self.w2 = take(layers, dim, hidden)
        self.w3 = take(layers, hidden, dim)
        self.rms_final = take(dim)
        take(seq_len, self.head_size)  # freq_cis_real and freq_cis_imag, [seq_len, head_size/2] each
        self.wcls = self.token_embedding if self.shared else take(vocab, dim)
        self.key_cache = np.zeros((layers, seq_len, kv_dim), np.float32)
        self.value_cache = np.zeros((layers, seq_len, kv_dim), np.float32)

    @staticmethod
    def rmsnorm(x, weight):
        ss = np.float32(1.0) / np.sqrt(np.mean(x * x, dtype=np.float32) + np.float32(1e-5))
        return weight * (ss * x)

    def rope(self, vec, pos):
        """Rotates (vec[i], vec[i+1]) for even i by pos * 10000^(-(i % head_size) / head_size)."""
        out = vec.copy()
        for i in range(0, len(vec), 2):
            freq = 1.0 / np.power(np.float32(10000.0), np.float32((i % self.head_size) / self.head_size))
            val = np.float32(pos * freq)
            fcr, fci = np.cos(val), np.sin(val)
            out[i] = vec[i] * fcr - vec[i + 1] * fci
            out[i + 1] = vec[i] * fci + vec[i + 1] * fcr
        return out

    def forward(self, token, pos):
        hs, kv_mul = self.head_size, self.heads // self.kv_heads
        x = self.token_embedding[token].copy()
        for l in range(self.layers):
            xb = self.rmsnorm(x, self.rms_att[l])
            q = self.rope(self.wq[l] @ xb, pos)
            self.key_cache[l, pos] = self.rope(self.wk[l] @ xb, pos)
            self.value_cache[l, pos] = self.wv[l] @ xb
            out = np.zeros(self.dim, np.float32)
            for h in range(self.heads):
                kvh = h // kv_mul
                keys = self.key_cache[l, : pos + 1, kvh * hs : (kvh + 1) * hs]
                values = self.value_cache[l, : pos + 1, kvh * hs : (kvh + 1) * hs]
                att = keys @ q[h * hs : (h + 1) * hs] / np.sqrt(np.float32(hs))
                att = np.exp(att - att.max())
                out[h * hs : (h + 1) * hs] = (att / att.sum()) @ values
            x = x + self.wo[l] @ out
            xb = self.rmsnorm(x, self.rms_ffn[l])
            h1, h3 = self.w1[l] @ xb, self.w3[l] @ xb
            x = x + self.w2[l] @ (h1 / (1.0 + np.exp(-h1)) * h3)
        return self.wcls @ self.rmsnorm(x, self.rms_final)

    def greedy(self, steps):
        tokens, token = [], BOS
        for pos in range(steps):
            token = int(np.argmax(self.forward(token, pos)))
            tokens.append(token)
        return tokens


@pytest.fixture(scope="module")
def stories():
    return open_embedded("stories260k")


@pytest.fixture(scope="module")
def numpy_greedy():
    """64 greedy tokens from BOS and the numpy logits at each position."""
    model = NumpyLlama2c(embedded_model_path("stories260k"))
    tokens, logits, token = [], [], BOS
    for pos in range(64):
        logits.append(model.forward(token, pos))
        token = int(np.argmax(logits[-1]))
        tokens.append(token)
    return tokens, np.stack(logits)


def test_embedded_checkpoint_is_stories260k(stories):
    assert stories.sha256 == STORIES260K_SHA256
    c = stories.config
    assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len) == (64, 172, 5, 8, 4, 512, 512)
    assert c.tie_embeddings and c.rope_layout == "adjacent"


def test_reference_logits_match_numpy_llama2c(stories, numpy_greedy):
    tokens, expected = numpy_greedy
    with torch.no_grad():
        logits = stories.reference_model()(torch.tensor([[BOS] + tokens[:-1]]))[0].numpy()
    assert np.abs(expected).max() > 5.0  # a trained model's confident logits
    assert np.abs(logits - expected).max() <= 1e-4


def test_greedy_decoding_from_bos_matches_numpy_llama2c(stories, numpy_greedy):
    tokens, _ = numpy_greedy
    assert len(set(tokens)) > 10  # a story, not one token repeated
    assert greedy_generate(stories.reference_model(), [BOS], 64) == tokens


def write_llama2c(path, header, tensors):
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *header))
        for t in tensors:
            f.write(np.asarray(t, "<f4").tobytes())


def test_untied_gqa_checkpoint_round_trips(tmp_path):
    """A negative vocab_size means a separate classifier after the RoPE tables."""
    dim, hidden, layers, heads, kv_heads, vocab, seq = 16, 24, 2, 4, 2, 11, 8
    kv_dim = kv_heads * dim // heads
    rng = np.random.default_rng(0)
    shapes = [(vocab, dim), (layers, dim), (layers, dim, dim), (layers, kv_dim, dim), (layers, kv_dim, dim),
              (layers, dim, dim), (layers, dim), (layers, hidden, dim), (layers, dim, hidden), (layers, hidden, dim),
              (dim,), (seq, dim // heads), (vocab, dim)]
    tensors = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    path = tmp_path / "untied.bin"
    write_llama2c(path, (dim, hidden, layers, heads, kv_heads, -vocab, seq), tensors)
    checkpoint = Llama2cCheckpoint(path)
    assert not checkpoint.config.tie_embeddings and checkpoint.config.kv_dim == kv_dim
    w = checkpoint.weights
    np.testing.assert_array_equal(w.tensor("output.weight").numpy(), tensors[12])
    np.testing.assert_array_equal(w.tensor("layers.1.attention.wk.weight").numpy(), tensors[3][1])
    np.testing.assert_array_equal(w.tensor("layers.0.feed_forward.w2.weight").numpy(), tensors[8][0])
    np.testing.assert_array_equal(w.tensor("norm.weight").numpy(), tensors[10])
    expected = NumpyLlama2c(path)
    with torch.no_grad():
        logits = checkpoint.reference_model()(torch.tensor([[3, 7, 1]]))[0].numpy()
    for pos, token in enumerate([3, 7, 1]):
        assert np.abs(logits[pos] - expected.forward(token, pos)).max() <= 1e-4


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda raw: raw[:20], "truncated: 20 bytes, a llama2.c header needs 28"),
        (lambda raw: raw[:-4], "file has 1056536 bytes but its llama2.c header (dim=64, hidden_dim=172, n_layers=5"),
        (lambda raw: struct.pack("<7i", 64, 172, 6, 8, 4, 512, 512) + raw[28:], "describes 1238300 bytes"),
        (lambda raw: struct.pack("<7i", 64, 172, 5, 8, 4, -512, 512) + raw[28:], "separate classifier) describes 1187612 bytes"),
        (lambda raw: struct.pack("<7i", 64, 172, 5, 7, 4, 512, 512) + raw[28:], "dim 64 is not a multiple of n_heads 7"),
        (lambda raw: struct.pack("<7i", 64, 172, 5, 8, 3, 512, 512) + raw[28:], "n_heads (8) must be a multiple of n_kv_heads (3)"),
        (lambda raw: struct.pack("<Ii", 0x616B3432, 1) + raw[8:], "export version 1+ (magic 'ak42') is not supported"),
    ],
    ids=["short header", "truncated", "header mismatch", "untied header on tied file", "bad heads", "bad kv heads", "version 1"],
)
def test_bad_checkpoints_are_refused(tmp_path, make, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(make(embedded_model_path("stories260k").read_bytes()))
    with pytest.raises(FrontendError, match=re.escape(message)) as error:
        Llama2cCheckpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
