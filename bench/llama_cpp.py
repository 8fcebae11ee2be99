"""llama.cpp as an anchor: built from the llama-cpp-python sdist, fed the same random-weight shape as TQ2_0.

* `build()` downloads the llama-cpp-python sdist from PyPI (`pip download --no-binary`),
  and builds the `llama-bench` target of its vendored llama.cpp with cmake
  (`-DGGML_NATIVE=ON -DLLAMA_CURL=OFF`; about 10 minutes on 2 cores). Everything lives in
  out/llama.cpp/ (ignored by git): no third-party code enters the repository.
* `write_gguf()` writes a `RandomInit` shape (the same seeded weights harden-import uses)
  as a GGUF file of llama.cpp's "llama" architecture: the linear layers ternarized the way
  harden-pipeline does by default (absmean, one scale per output channel), stored as TQ2_0;
  a block of 256 values of one row is then exactly {-s, 0, +s}, so TQ2_0 holds the same
  ternary weights up to its f16 scale. Embedding and classifier are Q8_0, norms f32. No
  tokenizer: `tokenizer.ggml.model = "none"` with a vocabulary size.
* `LlamaBench` runs `llama-bench` for one prefill/decode measurement (`--repack 0`: the
  AMX repack path died with "Illegal instruction" on this machine's CPU).

    .venv/bin/python -m bench.llama_cpp build            # or: make llama-cpp
    .venv/bin/python -m bench.llama_cpp gguf tinyllama-1.1b out/bench/tinyllama.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SDIST = "llama-cpp-python==0.3.36"
DEFAULT_DIR = Path("out/llama.cpp")
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"]
QK_K = 256  # TQ2_0 blocks hold 256 values of one row


# llama-bench measures; llama-quantize requantizes a GGUF (TQ1_0/TQ2_0 of a real model);
# llama-perplexity is llama.cpp's own KL/perplexity tool, for comparisons by hand.
TARGETS = ("llama-bench", "llama-quantize", "llama-perplexity")


def bench_binary(directory: Path = DEFAULT_DIR) -> Path:
    return directory / "build" / "bin" / "llama-bench"


def tool_binary(name: str, directory: Path = DEFAULT_DIR) -> Path:
    return directory / "build" / "bin" / name


def build(directory: Path = DEFAULT_DIR, log=sys.stderr) -> Path:
    """Builds llama-bench and the other TARGETS (once; existing binaries are kept). Returns
    llama-bench; raises RuntimeError with the failing step's last lines."""
    binary = bench_binary(directory)
    if all(tool_binary(t, directory).exists() for t in TARGETS):
        return binary
    directory.mkdir(parents=True, exist_ok=True)

    def step(what: str, command: list[str]) -> None:
        print(f"llama.cpp: {what} ...", file=log, flush=True)
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        (directory / "build-steps.log").open("a").write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
            raise RuntimeError(f"llama.cpp {what} failed (exit {result.returncode}):\n{tail}")
        print(f"llama.cpp: {what} done in {time.perf_counter() - start:.0f} s", file=log, flush=True)

    sdists = sorted((directory / "sdist").glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        step("download of the llama-cpp-python sdist", [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                                        "--no-binary", ":all:", SDIST, "-d", str(directory / "sdist")])
        sdists = sorted((directory / "sdist").glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdists[-1]) as tar:
        top = tar.getnames()[0].split("/")[0]
        if not (directory / top).exists():
            tar.extractall(directory, filter="data")
    source = directory / top / "vendor" / "llama.cpp"
    generator = ["-G", "Ninja"] if _which("ninja") else []
    if not (directory / "build" / "CMakeCache.txt").exists():
        step("cmake configure", ["cmake", "-S", str(source), "-B", str(directory / "build"), *generator, *CMAKE_FLAGS])
    step(f"build of {', '.join(TARGETS)} (about 10 minutes on 2 cores)",
         ["cmake", "--build", str(directory / "build"), "--target", *TARGETS, "-j", str(os.cpu_count() or 2)])
    return binary


def requantize(source: Path, target: Path, qtype: str, directory: Path = DEFAULT_DIR) -> None:
    """`llama-quantize --allow-requantize source target qtype` (llama.cpp picks its own
    fall-back types for rows that do not fit the type's blocks), atomically."""
    from harden.core.files import atomic_path

    with atomic_path(target) as tmp:
        result = subprocess.run([str(tool_binary("llama-quantize", directory)), "--allow-requantize", str(source), str(tmp), qtype],
                                capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise RuntimeError(f"llama-quantize to {qtype} failed (exit {result.returncode}):\n{tail}")


def _which(name: str) -> bool:
    from shutil import which

    return which(name) is not None


# ---------------------------------------------------------------------------------------
# GGUF


def supports(config) -> bool:
    """TQ2_0 needs every row length (dim, hidden_dim) to be a multiple of 256."""
    return config.dim % QK_K == 0 and config.hidden_dim % QK_K == 0 and (config.n_heads * config.head_dim) % QK_K == 0


def write_gguf(shape: str, path: Path, seed: int = 0) -> None:
    """Writes random-init `shape` (seed as harden-import's --seed) as a TQ2_0 GGUF (see the module docstring)."""
    import torch

    from harden.frontend.gguf import write_gguf as write
    from harden.frontend.random_init import RandomInit
    from harden.frontend.weights import WeightSource
    from harden.quant.ternary import ternarize

    source = RandomInit(shape, seed=seed)
    c = source.config
    if c.qkv_bias or c.o_bias or not supports(c):
        raise ValueError(f"'{shape}' cannot be written as a TQ2_0 llama GGUF by this script")

    def stored(name: str) -> str:
        if len(source.weights.shapes[name]) == 1:
            return "F32"
        return "Q8_0" if name in ("tok_embeddings.weight", "output.weight") else "TQ2_0"

    class Ternarized(WeightSource):
        """The linears as harden-ternarize gives them (exactly ternary), one at a time."""

        def _load(self, name: str):
            w = source.weights.tensor(name)
            if stored(name) == "TQ2_0":
                return torch.from_numpy(ternarize(w.numpy(), "absmean", "channel").dequantize())
            return w

    write(path, c, Ternarized(source.weights.shapes), stored, f"harden random-init {shape} (seed {seed}), ternary absmean per channel")


def gguf_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decoded token reads: every tensor, except one row of the token
    embedding (a gather) unless it doubles as the classifier (no output.weight)."""
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    total = 0
    for name, t in tensors.items():
        nbytes = int(t.n_bytes)
        if name == "token_embd.weight" and "output.weight" in tensors:
            nbytes //= int(t.shape[-1])  # GGUF shapes are [columns, rows]
        total += nbytes
    return total


# ---------------------------------------------------------------------------------------
# Running


class LlamaBench:
    """`llama-bench` on one GGUF: one call measures prefill (pp) and decode (tg) once, after
    llama-bench's own warm-up run."""

    def __init__(self, binary: Path, model: Path, threads: int):
        self.binary, self.model, self.threads = binary, model, threads

    def command(self, prompt_tokens: int, decode_tokens: int, depth: int = 0, repetitions: int = 1) -> list[str]:
        return [str(self.binary), "-m", str(self.model), "-p", str(prompt_tokens), "-n", str(decode_tokens), "-d", str(depth),
                "-t", str(self.threads), "-r", str(repetitions), "--repack", "0", "-o", "json"]

    def _rate(self, command: list[str]) -> float:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}  # a thread clash seen from Python (docs/toolchain.md)
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"llama-bench failed (exit {result.returncode}):\n{tail}")
        (test,) = json.loads(result.stdout)
        return float(test["avg_ts"])

    def run(self, prompt_tokens: int, decode_tokens: int) -> tuple[float, float]:
        """(prefill tokens/s, decode tokens/s): the prompt from an empty cache, then the decode
        steps after it (`-d`: at the same cache depth as harden's decode steps)."""
        prefill = self._rate(self.command(prompt_tokens, 0))
        return prefill, self._rate(self.command(0, decode_tokens, depth=prompt_tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build llama-bench under DIR (default out/llama.cpp)")
    b.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    g = sub.add_parser("gguf", help="write a random-init shape as a TQ2_0 GGUF")
    g.add_argument("shape")
    g.add_argument("output", type=Path)
    g.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "build":
        try:
            print(build(args.dir))
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
    else:
        start = time.perf_counter()
        write_gguf(args.shape, args.output, args.seed)
        print(f"{args.output}: {gguf_bytes_per_token(args.output) / 1e6:.1f} MB of weights per token, "
              f"written in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
