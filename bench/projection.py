"""What a chip built from the hardened model would do: harden-export's projection per shape.

    .venv/bin/python -m bench.projection [--shapes llama-3.1-8b,tinyllama-1.1b,smollm2-135m] [--out out/projection] [--reuse]

For each shape: `harden-import` (SmolLM2-135M with its real weights, the others with
seeded random weights of the published shape; a 2048-position cache, 128-token prefill,
no decode buckets), `harden-opt --harden-pipeline="policy=none keep=output keep-as=int8
schedule=false lower=false"` (every linear ternary with absmean scales, the classifier in
int8: a plan that needs no PyTorch run, which an 8B model's would not fit in memory),
`harden-stream-schedule` on each machine, and
`harden-export`. The `hardwired` preset has 256 MiB of SRAM; a shape whose KV cache and
activations do not fit is scheduled on the same machine with the SRAM doubled until it
fits (written to OUT/machines/, named in the table). Every tool runs as a child process:
its peak resident memory (the kernel's accounting, the figure `/usr/bin/time -v` prints)
and wall time are recorded beside the projection; `--reuse` keeps what an identical
command wrote earlier. The table puts each
projection beside the public figures in `PUBLIC` and the GPU bandwidth bound (bytes a
token reads / HBM bandwidth). Results go to OUT/results.json; the README's projection
table is this script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.artifacts import StageError, run_stage
from bench.pareto import cpu_model
from harden.schedule.machine import PRESETS_DIR

BIN = Path(sys.executable).parent
SHAPES = ("llama-3.1-8b", "tinyllama-1.1b", "smollm2-135m")
MACHINES = ("hardwired", "tsp")
PARAMETERS = {"llama-3.1-8b": 8_030_261_248, "tinyllama-1.1b": 1_100_048_384, "smollm2-135m": 134_515_008}

# Public figures the projection is compared with (llama-3.1-8b decode, one user).
PUBLIC = {
    "hardwired_chip_tokens_per_s": (17_000, "the hardwired-chip claim this project answers (Llama-3.1-8B, per user)"),
    "groq_lpu_tokens_per_s": (500, "Groq LPU, as quoted for Llama-3.1-8B"),
    "h200_measured_tokens_per_s": (100, "an H200-class GPU reading 16 GB of fp16 weights per token, as quoted"),
}
PLAN = "policy=none keep=output keep-as=int8 schedule=false lower=false"
HBM_BYTES_PER_S = {"H100 SXM": 3.35e12, "H200": 4.8e12}  # NVIDIA's datasheets


def timed(command: list[str], output: Path, reuse: bool) -> dict | None:
    """Runs a tool as a child (bench/artifacts.py); its wall seconds and peak resident GiB,
    or None when `reuse` kept the output an identical command wrote earlier."""
    stage = run_stage(command, output, reuse)
    return None if stage.reused else {"seconds": round(stage.seconds, 1), "peak_gib": round(stage.peak_rss_gib, 2)}


def machine_with_sram(machine: str, sram_bytes: int, out: Path) -> str:
    """A preset with its SRAM changed (and the change noted), written to OUT/machines/."""
    data = json.loads((PRESETS_DIR / f"{machine}.json").read_text())
    data["name"] = f"{machine}-{sram_bytes >> 20}mib"
    data["notes"] = data["notes"] + [f"SRAM raised from {data['sram_bytes'] >> 20} MiB to {sram_bytes >> 20} MiB to hold the model's KV cache and activations"]
    data["sram_bytes"] = sram_bytes
    path = out / "machines" / f"{data['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return str(path.resolve())


def schedule(machine: str, ternary: Path, target: Path, out: Path, reuse: bool) -> dict | None:
    """Schedules on `machine`, doubling its SRAM (up to 8x) while the schedule overflows it."""
    spec, sram = machine, json.loads((PRESETS_DIR / f"{machine}.json").read_text())["sram_bytes"]
    for _ in range(4):
        command = [str(BIN / "harden-opt"), f"--pass-pipeline=builtin.module(harden-stream-schedule{{machine={spec}}},harden-verify-schedule)",
                   str(ternary), "-o", str(target), "--quiet"]
        try:
            return timed(command, target, reuse)
        except StageError as e:
            if "SRAM overflow" not in str(e):
                raise
        sram *= 2
        spec = machine_with_sram(machine, sram, out.parent)
    raise StageError(f"{ternary}: does not fit {machine} with {sram >> 20} MiB of SRAM")


def harden(shape: str, out: Path, reuse: bool) -> dict:
    """Import, harden, schedule and export on both machines; what each step cost and the chips."""
    out.mkdir(parents=True, exist_ok=True)
    steps, chips = {}, {}
    model, ternary = out / "model.mlir", out / "ternary.mlir"
    source = ["--model", shape] if shape == "smollm2-135m" else ["--random-init", shape]
    # prefill and decode: the chip runs decode; prefill_last would add a third schedule to each machine's time
    steps["import"] = timed([str(BIN / "harden-import"), *source, "--seq-len", "128", "--max-seq-len", "2048", "--entry", "prefill,decode",
                             "--decode-buckets", "none", "--external-weights", "--quiet", "-o", str(model)], model, reuse)
    steps["ternarize"] = timed([str(BIN / "harden-opt"), f"--harden-pipeline={PLAN}", str(model), "-o", str(ternary), "--quiet"],
                               ternary, reuse)
    for machine in MACHINES:
        scheduled, directory = out / f"{machine}.mlir", out / f"chip-{machine}"
        try:
            steps[f"schedule_{machine}"] = schedule(machine, ternary, scheduled, out, reuse)
        except StageError as e:  # e.g. a layer's weights larger than one chip's SRAM: say so in the table
            chips[machine] = {"error": next((line.split("error: ", 1)[1] for line in str(e).splitlines() if "error: " in line), str(e))}
            continue
        steps[f"export_{machine}"] = timed([str(BIN / "harden-export"), str(scheduled), "-o", str(directory), "--quiet"],
                                           directory, reuse)
        chips[machine] = json.loads((directory / "chip.json").read_text())
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    steps = {name: cost for name, cost in steps.items() if cost is not None}
    return {"steps": steps, "disk_gb": round(disk / 1e9, 2), "chips": {m: c if "error" in c else _row(c) for m, c in chips.items()}}


def _row(chip: dict) -> dict:
    memory = chip["memory_map"]["chips"]
    return {
        "makespan_cycles": chip["schedule"]["makespan_cycles"],
        "makespan_over_lower_bound": chip["schedule"]["makespan_over_lower_bound"],
        "tokens_per_s": chip["tokens_per_s"],
        "pipelined_tokens_per_s": chip["pipelined_tokens_per_s"],
        "chips": chip["resources"]["chips"],
        "sram_peak_bytes": max(m["schedule_peak_bytes"] for m in memory),
        "weight_bytes": chip["weight_bytes"],
        "energy_per_token_j": chip["energy_per_token_j"],
        "energy_per_token_single_user_j": chip["energy_per_token_single_user_j"],
        "area_mm2": chip["area_mm2"],
        "clock_ghz": chip["machine"]["clock_ghz"],
        "machine": chip["machine"]["name"],
        "sram_bytes_per_chip": chip["machine"]["sram_bytes"],
    }


def gpu_bound(shape: str) -> dict:
    """tokens/s if a GPU read every fp16 weight once per token at its HBM bandwidth."""
    fp16_bytes = 2 * PARAMETERS[shape]
    return {gpu: bandwidth / fp16_bytes for gpu, bandwidth in HBM_BYTES_PER_S.items()}


def table(results: dict) -> str:
    lines = ["| shape | machine | makespan (cycles) / bound | tokens/s per user | pipelined tokens/s | chips | SRAM peak (MiB) | weight bytes (MB) | energy per token (mJ, pipelined / one user) | area (mm2) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for shape, result in results["shapes"].items():
        for machine, r in result["chips"].items():
            if "error" in r:
                lines.append(f"| {shape} | {machine} | cannot be placed: {r['error']} | | | | | | | |")
                continue
            lines.append(
                f"| {shape} | {r['machine']} | {r['makespan_cycles']:,} / {r['makespan_over_lower_bound']:.3f} | {r['tokens_per_s']:,.0f} | "
                f"{r['pipelined_tokens_per_s']:,.0f} | {r['chips']} | {r['sram_peak_bytes'] / 2**20:,.1f} | {r['weight_bytes'] / 1e6:,.0f} | "
                f"{r['energy_per_token_j'] * 1e3:.3g} / {r['energy_per_token_single_user_j'] * 1e3:.3g} | {r['area_mm2']:,.0f} |")
        bound = gpu_bound(shape)
        lines.append(f"| {shape} | GPU fp16 bandwidth bound | | " + " / ".join(f"{g} {v:,.0f}" for g, v in bound.items()) + " | | | | "
                     f"{2 * PARAMETERS[shape] / 1e6:,.0f} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--out", default="out/projection")
    parser.add_argument("--reuse", action="store_true", help="keep the modules and exports an identical command wrote earlier")
    args = parser.parse_args()
    out = Path(args.out)
    results = {"cpu": cpu_model(), "public": {k: {"value": v, "source": s} for k, (v, s) in PUBLIC.items()},
               "hbm_bytes_per_s": HBM_BYTES_PER_S, "shapes": {}}
    for shape in args.shapes.split(","):
        print(f"{shape} ...", file=sys.stderr, flush=True)
        results["shapes"][shape] = harden(shape, out / shape, args.reuse)
        results["shapes"][shape]["gpu_fp16_bound_tokens_per_s"] = gpu_bound(shape)
        print(json.dumps(results["shapes"][shape]["steps"]), file=sys.stderr, flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
