"""The issue-8 measurement: QAT of stories260K, then import, harden and run on IREE.

    .venv/bin/python -m bench.qat_stories260k [--minutes 15] [--out out/qat]

Steps (the real tools, as a user runs them):
1. harden-qat --model stories260k --minutes M -o out/qat/stories260k-ternary.bin
2. harden-import both the f32 model and the QAT checkpoint (prefill of 128 tokens);
3. harden-opt --harden-pipeline=policy=none on the QAT import (absmean, per channel: lossless);
4. harden-run of the hardened QAT module against the f32 import on IREE, on 8 held-out
   sequences of 128 tokens sampled from the f32 model with a seed training never used.
Writes docs/qat_curves.png (held-out top-1 agreement and KL against training minutes, from
harden-qat's PyTorch evaluations; the IREE result is the final point) and prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
HELDOUT_SEED = 20261122  # neither the training seed (0) nor harden-qat's own held-out seed


def tool(*args) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(BIN / args[0]), *map(str, args[1:])], check=True)


def plot(history: dict, iree: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluations = history["evaluations"]
    minutes = [e["seconds"] / 60 for e in evaluations]
    fig, (top1, kl) = plt.subplots(1, 2, figsize=(11, 4))
    top1.plot(minutes, [e["top1_agreement"] for e in evaluations], marker="o", label="held-out (PyTorch)")
    kl.plot(minutes, [e["kl"] for e in evaluations], marker="o", label="held-out (PyTorch)")
    top1.scatter([minutes[-1]], [iree["top1_agreement"]], color="red", zorder=3, label="hardened, on IREE")
    kl.scatter([minutes[-1]], [iree["kl"]], color="red", zorder=3, label="hardened, on IREE")
    top1.axhline(0.85, color="gray", linestyle="--", label="target 0.85")
    kl.axhline(0.1, color="gray", linestyle="--", label="target 0.1")
    top1.set(xlabel="training minutes", ylabel="top-1 agreement with f32", ylim=(0, 1), title="stories260K ternary QAT")
    kl.set(xlabel="training minutes", ylabel="KL(f32 || ternary), nats", yscale="log", title="stories260K ternary QAT")
    top1.legend()
    kl.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("out/qat"))
    parser.add_argument("--plot", type=Path, default=Path("docs/qat_curves.png"))
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tool("harden-qat", "--model", "stories260k", "--minutes", args.minutes, "-o", out / "stories260k-ternary.bin", "--history", out / "history.json")
    for name, model in (("f32", "stories260k"), ("qat", out / "stories260k-ternary.bin")):
        tool("harden-import", "--model", model, "--seq-len", "128", "--max-seq-len", "256", "-o", out / f"{name}.mlir")
    tool("harden-opt", f"--harden-pipeline=policy=none report={out / 'ternarize.json'}", out / "qat.mlir", "-o", out / "qat.hardened.mlir")
    subprocess.run(
        [str(BIN / "harden-run"), out / "qat.hardened.mlir", "--reference", out / "f32.mlir", "--samples", "8",
         "--seq-len", "128", "--seed", str(HELDOUT_SEED), "--json", out / "iree.json"],
        check=True, env={**os.environ},
    )
    history = json.loads((out / "history.json").read_text())
    iree = json.loads((out / "iree.json").read_text())
    plot(history, iree, args.plot)
    final = history["evaluations"][-1]
    print(
        f"QAT {final['seconds'] / 60:.1f} min, {final['step']} steps: held-out (PyTorch) top-1 {final['top1_agreement']:.4f} "
        f"KL {final['kl']:.4f}; hardened on IREE vs f32 (8 x 128, seed {HELDOUT_SEED}): top-1 {iree['top1_agreement']:.4f} "
        f"KL {iree['kl']:.4f}; plot {args.plot}"
    )


if __name__ == "__main__":
    main()
