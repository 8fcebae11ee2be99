"""harden-export: the chip configuration of a scheduled module.

On stories260k (every precision: ternary, n-bit integer, int8, f32 and f16 float) and on
SmolLM2-135M: each ROM image decodes to exactly the codes the op reads and dequantizes to
exactly the weights it computes with; the memory map never puts two buffers live at the
same time at overlapping addresses; the export is byte-identical on re-run; `--check`
finds a flipped ROM byte and a moved region; bad input gets one line and exit 1.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harden.chip.export import load_schedules
from harden.chip.rom import pack_bits, read_codes, unpack_bits
from harden.core.source import parse_module
from harden.core.weights import WeightStore, parameter_file_of, resource_blobs
from harden.dialects.context import make_context
from harden.dialects.ternary_pack import dequantize_ternary
from harden.quant.intn import expand_groups
from harden.schedule.memory import buffer_lifetimes
from process_helpers import after, interrupt

BIN = Path(sys.executable).parent

# Pipelines whose harden-level modules together hold every precision the export writes.
STORIES_PIPELINES = {
    "default-hardwired": "machine=hardwired lower=false",  # int_linear, ternary_linear, int_embedding
    "float-tsp": "ternarize=false machine=tsp lower=false",  # fused_qkv and linears in f32, stored f16
    "int8-hardwired": "policy=none keep=layers.0.* keep-as=int8 machine=hardwired lower=false",
    # the token table (64 KiB in f16) is larger than one chip gives weights: split over two chips
    "sharded-tsp": f"policy=none machine={Path(__file__).parent / 'Inputs/schedule/tsp-small-weight-budget.json'} lower=false",
}


def _run(tool: str, *args, cwd=None):
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def stories_import(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stories") / "s.mlir"
    # Two functions are enough to export: every precision lives in the weights they share.
    result = _run("harden-import", "--model", "stories260k", "--seq-len", "32", "--max-seq-len", "128", "--entry", "prefill,decode", "--quiet", "-o", path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def scheduled(stories_import, smollm2_import, tmp_path_factory):
    """name -> a scheduled harden-level module (path) and its export directory."""
    modules = {}
    jobs = [(name, stories_import, options) for name, options in STORIES_PIPELINES.items()]
    jobs.append(("smollm2-hardwired", smollm2_import, "policy=none machine=hardwired lower=false"))
    for name, source, options in jobs:
        directory = tmp_path_factory.mktemp(name)
        module = directory / "h.mlir"
        result = _run("harden-opt", f"--harden-pipeline={options}", source, "-o", module, "--quiet")
        assert result.returncode == 0, result.stderr
        result = _run("harden-export", module, "-o", directory / "chip", "--quiet")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("harden-export: wrote ")
        modules[name] = (module, directory / "chip")
    return modules


def _parse(path: Path):
    context = make_context()
    text = path.read_text()
    module = parse_module(text, str(path), context)
    return context, module, WeightStore(resource_blobs(text), parameter_file_of(module, path.parent))


def _dequantized(op_name: str, codes: np.ndarray, extras: dict, entry: dict) -> np.ndarray:
    """The f32 weight an op computes with, from its codes and scales (the dialect's definition)."""
    out_features, in_features = entry["shape"]
    if op_name == "harden.ternary_linear":
        groups = extras["scales"].shape[2]
        return dequantize_ternary(codes.view(np.uint8), extras["scales"], in_features, -(-in_features // groups))
    if op_name in ("harden.int_linear", "harden.int_embedding"):
        group = in_features // extras["scales"].shape[1]
        w = expand_groups(extras["scales"].astype(np.float32), in_features, group) * codes.astype(np.float32)
        if "mins" in extras:
            w = w + expand_groups(extras["mins"].astype(np.float32), in_features, group)
        return w
    if op_name == "harden.int8_linear":
        return extras["scales"].astype(np.float32) * codes.astype(np.float32)
    return codes.astype(np.float32)


def _from_file(directory: Path, described: dict) -> np.ndarray:
    dtype = {"f32": np.float32, "f16": np.float16, "i8": np.int8}[described["dtype"]]
    return np.fromfile(directory / described["file"], dtype).reshape(described["shape"])


@pytest.mark.parametrize("name", [*STORIES_PIPELINES, "smollm2-hardwired"])
def test_rom_images_decode_to_exactly_the_weights_the_ops_compute_with(scheduled, name):
    module_path, chip_dir = scheduled[name]
    chip = json.loads((chip_dir / "chip.json").read_text())
    context, module, store = _parse(module_path)
    with context:
        decode = next(s for s in load_schedules(module, str(module_path)) if s.name == chip["function"])
        ops = {op.label: ir_op for op, ir_op in zip(decode.problem.operations, decode.binding.ir_ops) if op.transfer is None}
        float_bytes = decode.problem.machine.float_weight_bytes
        seen_ops = set()
        for entry in chip["layers"]:
            ir_op = ops[entry["label"]]
            op_name = ir_op.operation.name
            seen_ops.add(op_name)
            weight = ir_op.operands[0 if op_name == "torch.aten.embedding" else 1]
            ir_codes = store.value_of(weight)
            rom_codes = read_codes(entry, (chip_dir / entry["rom"]).read_bytes())
            rom_extras = {k: _from_file(chip_dir, entry[k]) for k in ("scales", "mins", "bias") if k in entry}
            if op_name not in ("harden.fused_qkv", "torch.aten.linear", "torch.aten.embedding"):
                assert np.array_equal(rom_codes, ir_codes.view(np.int8)), entry["name"]
                ir_extras = {k: store.value_of(ir_op.operands[i]) for k, i in (("scales", 2),)}
                assert np.array_equal(rom_extras["scales"], ir_extras["scales"]), entry["name"]
                expected = _dequantized(op_name, ir_codes, ir_extras | {k: v for k, v in rom_extras.items() if k == "mins"}, entry)
                assert np.array_equal(_dequantized(op_name, rom_codes, rom_extras, entry), expected), entry["name"]
            else:  # float weights at the machine's storage width
                stored = ir_codes.astype(np.float16) if float_bytes == 2 else ir_codes
                assert entry["precision"] == ("f16" if float_bytes == 2 else "f32")
                assert np.array_equal(rom_codes, stored.astype(np.float32)), entry["name"]
    expected_ops = {
        "default-hardwired": {"harden.ternary_linear", "harden.int_linear", "harden.int_embedding"},
        "float-tsp": {"harden.fused_qkv", "torch.aten.linear", "torch.aten.embedding"},
        "int8-hardwired": {"harden.int8_linear", "harden.ternary_linear"},
        "smollm2-hardwired": {"harden.ternary_linear"},
        "sharded-tsp": {"harden.ternary_linear", "torch.aten.embedding", "torch.aten.linear"},
    }[name]
    assert expected_ops <= seen_ops


@pytest.mark.parametrize("name", ["default-hardwired", "float-tsp", "smollm2-hardwired", "sharded-tsp"])
def test_memory_map_never_overlaps_buffers_live_at_the_same_time(scheduled, name):
    module_path, chip_dir = scheduled[name]
    chip = json.loads((chip_dir / "chip.json").read_text())
    context, module, _ = _parse(module_path)
    with context:
        by_name = {s.name: s for s in load_schedules(module, str(module_path))}
    maps = {chip["memory_map"]["function"]: chip["memory_map"]["chips"], **chip["memory_map"]["other_functions"]}
    assert set(maps) == set(by_name)
    for function, chips in maps.items():
        scheduled_fn = by_name[function]
        lifetimes = buffer_lifetimes(scheduled_fn.problem, scheduled_fn.solution)
        for chip_map in chips:
            regions = chip_map["regions"]
            # every buffer of the schedule has a region covering its lifetime
            buffers = [(b, life) for b, life in zip(scheduled_fn.problem.buffers, lifetimes) if b.chip == chip_map["chip"] and b.bytes]
            named = {}
            for r in regions:
                named.setdefault((r["name"], r["bytes"]), []).append(r)
            for buffer, (first, last) in buffers:
                assert any(r["first_cycle"] <= first and max(last, first + 1) <= r["end_cycle"] for r in named[(buffer.name, buffer.bytes)])
            assert all(r["offset"] % chip["memory_map"]["alignment"] == 0 for r in regions)
            by_start = sorted(regions, key=lambda r: r["offset"])
            for i, a in enumerate(by_start):
                for b in by_start[i + 1:]:
                    if b["offset"] >= a["offset"] + a["bytes"]:
                        break
                    assert not (a["first_cycle"] < b["end_cycle"] and b["first_cycle"] < a["end_cycle"]), (a, b)
            assert chip_map["peak_bytes"] >= chip_map["schedule_peak_bytes"]
            assert chip_map["peak_bytes"] == max(r["offset"] + r["bytes"] for r in regions)
            kinds = {r["kind"] for r in regions}
            assert "kv_cache" in kinds or chip_map["chip"] in _shard_chips(chip)
            assert ("weights" in kinds) == (chip["machine"]["weight_storage"] == "sram")


def _shard_chips(chip: dict) -> set[int]:
    """Chips holding only slices of a weight too large for one chip."""
    return {s["chip"] for entry in chip["layers"] for s in entry.get("shards", [])}


def test_a_table_larger_than_a_chip_is_described_slice_by_slice(scheduled):
    """The tied token table of stories260k on a 60,000-byte weight budget: its two readers
    name the same two slices (the classifier's rows), which cover it once; each chip's
    memory map holds its slice's bytes and no other weights."""
    _, chip_dir = scheduled["sharded-tsp"]
    chip = json.loads((chip_dir / "chip.json").read_text())
    entries = [e for e in chip["layers"] if "shards" in e]
    assert sorted(e["op"] for e in entries) == ["aten.embedding", "aten.linear"]
    assert entries[0]["shards"] == entries[1]["shards"]
    shards = entries[0]["shards"]
    assert [(s["axis"], s["start"], s["end"]) for s in shards] == [(0, 0, 256), (0, 256, 512)]
    assert sum(s["bytes"] for s in shards) == entries[0]["rom_bytes"] == 512 * 64 * 2
    assert chip["resources"]["chips"] == max(s["chip"] for s in shards) + 1
    for chip_map in chip["memory_map"]["chips"]:
        weights = [(r["name"], r["bytes"]) for r in chip_map["regions"] if r["kind"] == "weights"]
        slices = [("tok_embeddings.weight", s["bytes"]) for s in shards if s["chip"] == chip_map["chip"]]
        if chip_map["chip"] in _shard_chips(chip):
            assert weights == slices
        else:
            assert "tok_embeddings.weight" not in dict(weights) and weights
        assert chip_map["fits"]


def test_projection_follows_the_schedule_and_the_cost_constants(scheduled):
    for name, (_, chip_dir) in scheduled.items():
        chip = json.loads((chip_dir / "chip.json").read_text())
        assert {"tokens_per_s", "pipelined_tokens_per_s", "energy_per_token_j", "area_mm2", "resources", "memory_map",
                "assumptions", "layers"} <= set(chip)
        for entry in chip["layers"]:
            assert {"name", "precision", "shape", "rom", "unit", "start", "end"} <= set(entry)
            assert entry["end"] > entry["start"] >= 0 and (chip_dir / entry["rom"]).is_file()
        schedule, machine = chip["schedule"], chip["machine"]
        assert chip["tokens_per_s"] == pytest.approx(machine["clock_ghz"] * 1e9 / schedule["makespan_cycles"])
        assert chip["pipelined_tokens_per_s"] >= chip["tokens_per_s"]
        assert 0 < chip["energy_per_token_j"] <= chip["energy_per_token_single_user_j"]
        if machine["name"] == "tsp":
            assert chip["area_mm2"] == 725 * chip["resources"]["chips"]  # GroqChip 1's published die
        else:
            arithmetic = [e["arithmetic"] for e in chip["layers"] if "arithmetic" in e]
            assert chip["resources"]["adders"] == sum(a.get("adders", 0) for a in arithmetic)
            assert chip["area_mm2"] == pytest.approx(sum(chip["area_breakdown_mm2"].values()))
        assert chip["weight_bytes"] == sum(p.stat().st_size for p in (chip_dir / "rom").rglob("*.bin"))


def test_export_is_byte_identical_on_rerun_and_check_passes(scheduled, tmp_path):
    module, chip_dir = scheduled["default-hardwired"]
    result = _run("harden-export", module, "-o", tmp_path / "again", "--quiet")
    assert result.returncode == 0, result.stderr
    first = sorted(p.relative_to(chip_dir) for p in chip_dir.rglob("*") if p.is_file())
    assert first == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((chip_dir / p).read_bytes() == (tmp_path / "again" / p).read_bytes() for p in first)
    result = _run("harden-export", "--check", chip_dir, module)
    assert result.returncode == 0 and "matches" in result.stdout, result.stderr
    # A previous export is replaced whole
    result = _run("harden-export", module, "-o", tmp_path / "again", "--quiet")
    assert result.returncode == 0, result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_check_reports_a_flipped_rom_byte_and_a_moved_region(scheduled, tmp_path):
    module, chip_dir = scheduled["default-hardwired"]
    copy = tmp_path / "chip"
    subprocess.run(["cp", "-r", str(chip_dir), str(copy)], check=True)
    chip = json.loads((copy / "chip.json").read_text())
    rom = copy / chip["layers"][3]["rom"]
    data = bytearray(rom.read_bytes())
    data[5] ^= 0x10
    rom.write_bytes(bytes(data))
    result = _run("harden-export", "--check", copy, module)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"{chip['layers'][3]['rom']}: differs at byte 5 ({len(data)} bytes, expected {len(data)})")
    rom.write_bytes((chip_dir / chip["layers"][3]["rom"]).read_bytes())
    chip["memory_map"]["chips"][0]["regions"][4]["offset"] += 64
    (copy / "chip.json").write_text(json.dumps(chip, indent=1) + "\n")
    result = _run("harden-export", "--check", copy, module)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "chip.json: .memory_map.chips[0].regions[4].offset is" in result.stderr


def _assert_refused(result, message: str, output: Path | None = None):
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("harden-export: error: ") and len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if output is not None:
        assert not output.exists() and not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}")]


def test_bad_input_is_one_line_and_leaves_no_directory(stories_import, scheduled, tmp_path):
    out = tmp_path / "chip"
    _assert_refused(_run("harden-export", stories_import, "-o", out), "is not scheduled", out)
    module, _ = scheduled["default-hardwired"]
    lowered = tmp_path / "lowered.mlir"
    assert _run("harden-opt", "--pass-pipeline=builtin.module(harden-lower-to-linalg)", module, "-o", lowered).returncode == 0
    _assert_refused(_run("harden-export", lowered, "-o", out), "is lowered", out)
    # The schedule's machine is a file without cost constants
    machine = json.loads((Path(__file__).parent.parent / "schedule/machines/hardwired.json").read_text())
    del machine["costs"]
    (tmp_path / "bare.json").write_text(json.dumps(machine))
    bare = tmp_path / "bare.mlir"
    bare.write_text(module.read_text().replace('machine = "hardwired"', f'machine = "{tmp_path / "bare.json"}"'))
    _assert_refused(_run("harden-export", bare, "-o", out), "has no 'costs'", out)
    # A module whose parameter file is gone
    smollm2, _ = scheduled["smollm2-hardwired"]
    moved = tmp_path / "moved.mlir"
    moved.write_text(smollm2.read_text())
    _assert_refused(_run("harden-export", moved, "-o", out), "lacks its weights", out)
    # An output that exists and is not a previous export; its content is untouched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    _assert_refused(_run("harden-export", module, "-o", tmp_path / "mine"), "is not a previous export")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    _assert_refused(_run("harden-export", module), "give exactly one of -o DIR")
    _assert_refused(_run("harden-export", tmp_path / "missing.mlir", "-o", out), "no such file", out)


@pytest.mark.parametrize("bits", range(2, 9))
def test_n_bit_packing_round_trips(bits):
    rng = np.random.default_rng(bits)
    for signed, (lo, hi) in ((True, (-(1 << (bits - 1)), 1 << (bits - 1))), (False, (0, min(1 << bits, 128)))):
        codes = rng.integers(lo, hi, size=(5, 37)).astype(np.int8)
        packed = pack_bits(codes, bits)
        assert packed.shape == (5, -(-37 * bits // 8))
        assert np.array_equal(unpack_bits(packed, 37, bits, signed), codes)


def test_a_terminated_export_keeps_the_previous_one_and_says_so(scheduled, tmp_path):
    """SIGTERM 4 s into the export of SmolLM2 (about 14 s of work) over a previous export:
    one line, exit 143, the previous export as it was, no temporary directory beside it."""
    module, previous = scheduled["smollm2-hardwired"]
    shutil.copytree(previous, tmp_path / "chip")
    before = {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    returncode, err = interrupt(["harden-export", module, "-o", "chip", "--quiet"], tmp_path, signal.SIGTERM, after(4))
    assert returncode == 143, err
    assert err == "harden-export: terminated\n"
    assert {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["chip"]
