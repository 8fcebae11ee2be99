"""Import time and peak memory of harden-import for model shapes of growing size.

Each import runs as its own process (`harden-import ... -o OUT/<name>.mlir`), timed by the
wall clock, its peak resident memory taken from the kernel's accounting of that child
(wait4). Large shapes write their weights to a safetensors file beside the MLIR.

    .venv/bin/python bench/import_scale.py                       # stories260k, tiny, llama-100m, tinyllama-1.1b
    .venv/bin/python bench/import_scale.py tinyllama-1.1b --keep  # keep the files in ./out/import_scale

The 1.1B shape writes 4.4 GB; llama-3.1-8b (32 GB of f32 weights) is not in the default list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = ["stories260k", "tiny", "llama-100m", "tinyllama-1.1b"]
TOOL = str(Path(sys.executable).parent / "harden-import")


def measure(name: str, out_dir: Path) -> dict:
    out = out_dir / f"{name}.mlir"
    source = ["--model", name] if name == "stories260k" else ["--random-init", name]
    start = time.perf_counter()
    process = subprocess.Popen([TOOL, *source, "-o", str(out)], stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    error = process.stderr.read().decode().strip()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: harden-import failed: {error}")
    params = out.with_suffix(".safetensors")
    return {
        "name": name,
        "seconds": seconds,
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
        "mlir_mib": out.stat().st_size / 2**20,
        "params_gib": params.stat().st_size / 2**30 if params.exists() else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", default=DEFAULT, help="stories260k and/or --random-init shape names")
    parser.add_argument("--keep", action="store_true", help="keep the outputs in out/import_scale")
    args = parser.parse_args()
    out_dir = Path("out/import_scale") if args.keep else Path(tempfile.mkdtemp(prefix="import_scale."))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"{'model':<16}{'seconds':>9}{'peak RSS GiB':>14}{'MLIR MiB':>10}{'params GiB':>12}")
        for name in args.shapes:
            r = measure(name, out_dir)
            print(f"{r['name']:<16}{r['seconds']:>9.1f}{r['peak_rss_gib']:>14.2f}{r['mlir_mib']:>10.2f}{r['params_gib']:>12.2f}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(out_dir)


if __name__ == "__main__":
    main()
