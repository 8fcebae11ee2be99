"""The chip configuration of a hardened, scheduled module: what the chip is built from.

`build_export(module, ...)` returns the files of an export directory (relative path ->
bytes), so writing them (`write_export`) and re-deriving them to compare (`check_export`)
share one code path:

    chip.json                       everything below, described in the README
    rom/<weight>.bin                each weight matrix's codes as the chip holds them (rom.py)
    rom/<weight>.scales.bin, ...    its scales, mins and bias
    rom/const/<name>.bin            the other constants the graph reads (norm gains, tables)

The chip runs the module's decode step (one token per run: the function named `decode`,
or the largest `decode_<capacity>` bucket); its schedule gives every matrix its unit and
cycles and the projection its speed. The other scheduled functions (prefill) are
summarised beside it with their own memory maps.

Nothing depends on where or when the export runs: the same module and parameter file give
the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harden.chip.memory_map import ALIGNMENT, memory_map
from harden.chip.projection import area_mm2, energy_per_token, op_models, resources
from harden.chip.rom import MatrixImage, RomError, blob, file_name, matrix_image
from harden.core.files import storage_full
from harden.core.graph import body_ops, functions
from harden.core.weights import WeightStore
from harden.schedule.attributes import is_scheduled
from harden.schedule.machine import MachineError
from harden.schedule.ops import ScheduleError, weight_name
from harden.schedule.placement import shard_bytes
from harden.schedule.schedules import ScheduledFunction, load_schedule
from harden.schedule.summary import Summary

FORMAT = "harden-chip/1"
CHIP_JSON = "chip.json"
BUCKET_PREFIX = "decode_"


class ExportError(Exception):
    """A module or directory the export cannot use; the message is the one line to print."""


@dataclass
class Export:
    """The files of an export directory and the parsed chip.json."""

    files: dict[str, bytes]
    chip: dict


def _name(func) -> str:
    return func.attributes["sym_name"].value


def _is_lowered(func) -> bool:
    return not any(op.operation.name.startswith(("torch.", "harden.")) for op in body_ops(func))


def _chip_function(scheduled: list[ScheduledFunction]) -> ScheduledFunction:
    """The decode step: `decode`, else the largest `decode_<capacity>`, else the only function."""
    by_name = {s.name: s for s in scheduled}
    if "decode" in by_name:
        return by_name["decode"]
    buckets = [s for s in scheduled if s.name.startswith(BUCKET_PREFIX) and s.name[len(BUCKET_PREFIX):].isdigit()]
    if buckets:
        return max(buckets, key=lambda s: int(s.name[len(BUCKET_PREFIX):]))
    if len(scheduled) == 1:
        return scheduled[0]
    raise ExportError(f"no decode function among the scheduled functions ({', '.join(sorted(by_name))})")


def load_schedules(module, source: str) -> list[ScheduledFunction]:
    """Every scheduled function, rebuilt from its attributes; refuses lowered or unscheduled modules."""
    funcs = functions(module)
    scheduled_funcs = [f for f in funcs if is_scheduled(f)]
    if not scheduled_funcs:
        raise ExportError(f"'{source}' is not scheduled (run harden-opt --harden-pipeline=\"lower=false\" on it first)")
    if any(_is_lowered(f) for f in scheduled_funcs):
        raise ExportError(f"'{source}' is lowered: harden-export reads the harden-level module "
                          "(harden-opt --harden-pipeline=\"lower=false\")")
    result = []
    for func in scheduled_funcs:
        try:
            scheduled, issues = load_schedule(func)
        except (MachineError, ScheduleError) as e:
            raise ExportError(f"'{source}': @{_name(func)}: {getattr(e, 'message', e)}") from None
        if issues:
            raise ExportError(f"'{source}': the schedule of @{_name(func)} cannot be read back: {issues[0].message}")
        result.append(scheduled)
    return result


def _op_slot(scheduled: ScheduledFunction, index: int) -> dict:
    op, solution = scheduled.problem.operations[index], scheduled.solution
    pool = scheduled.problem.pools[op.pool] if op.pool is not None else None
    first = min(range(op.tiles), key=lambda t: (solution.starts[index][t], t))
    start, end = solution.op_start(index), solution.op_end(scheduled.problem, index)
    return {"unit": pool.units[solution.units[index][first]] if pool else None, "start": start, "end": end,
            "cycles": end - start, "tiles": op.tiles}


def _add_image(files: dict[str, bytes], image: MatrixImage, folder: str, stored: dict[str, str]) -> dict[str, str]:
    """Writes an image's blobs under `folder` once per distinct content; returns kind -> file.
    Two different tensors with one name (never from harden's own passes) get `#2`, `#3`..."""
    names = {}
    base = file_name(image.name)
    for kind, b in {"rom": image.rom, **image.extras}.items():
        suffix = ".bin" if kind == "rom" else f".{kind}.bin"
        digest = hashlib.sha256(b.data).hexdigest()
        n, candidate = 1, f"{folder}/{base}{suffix}"
        while candidate in files and stored.get(candidate) != digest:
            n += 1
            candidate = f"{folder}/{base}#{n}{suffix}"
        files[candidate] = b.data
        stored[candidate] = digest
        names[kind] = candidate
    return names


def _layers(chip_fn: ScheduledFunction, store: WeightStore, files: dict[str, bytes], stored: dict) -> tuple[list[dict], set]:
    """One entry per weight-reading op of the decode function, in schedule order."""
    problem, binding = chip_fn.problem, chip_fn.binding
    machine = problem.machine
    kinds = {unit.name: unit for unit in machine.units}
    layers, weight_values = [], set()
    order = sorted(range(len(problem.operations)), key=lambda i: (chip_fn.solution.op_start(i), i))
    for index in order:
        op = problem.operations[index]
        if op.transfer is not None:
            continue
        ir_op = binding.ir_ops[index]
        wname = None
        for operand in list(ir_op.operands)[:2]:
            wname = wname or weight_name(operand)
        label = f"@{chip_fn.name}: {op.label}"
        # harden-ternarize names an op's codes `<weight>.codes` (or `.int8`): the layer is `<weight>`.
        for suffix in (".codes", ".int8"):
            wname = wname.removesuffix(suffix) if wname else wname
        try:
            image = matrix_image(ir_op, store, machine.float_weight_bytes, label, wname or op.label.split()[0])
        except RomError as e:
            raise ExportError(str(e)) from None
        # A gathered table that is not a parameter (the rotary cos/sin buffers) is a constant.
        if image is None or (op.name.endswith("embedding") and not image.name.endswith(".weight")):
            continue
        weight_values.update(v for v in ir_op.operands if store.constant_op(v) is not None)
        names = _add_image(files, image, "rom", stored)
        entry = {
            "name": image.name,
            "op": op.name,
            "label": op.label,  # as the schedule report and Gantt chart name the op
            "layer": op.layer,
            "chip": op.chip,
            "precision": image.precision,
            "shape": list(image.shape),
            "code_bits": image.code_bits,
            "packing": image.packing,
            "rom": names["rom"],
            "rom_shape": list(image.rom.shape),
            "rom_bytes": len(image.rom.data),
            "rom_sha256": stored[names["rom"]],
        }
        for kind, b in image.extras.items():
            entry[kind] = b.describe(names[kind])
        if op.shard_slices:  # a weight too large for one chip: the slice each chip holds
            entry["shards"] = [{"chip": chip, "axis": axis, "start": lo, "end": hi,
                                "bytes": shard_bytes(_stored_bytes(entry), image.shape[axis], (lo, hi))}
                               for chip, axis, lo, hi in op.shard_slices]
        entry.update(_op_slot(chip_fn, index))
        unit = kinds[problem.pools[op.pool].kind] if op.pool is not None else None
        if unit is not None and unit.placement == "per_weight":
            elements = image.shape[0] * image.shape[1] * (int(image.rom.shape[0]) if image.packing == "ternary-2bit" else 1)
            entry["arithmetic"] = {"adders" if op.operator_class == "ternary_matmul" else "macs": -(-elements // int(unit.cycles_per_vector))}
        layers.append(entry)
    return layers, weight_values


def _constants(chip_fn: ScheduledFunction, store: WeightStore, weight_values: set, files: dict, stored: dict) -> list[dict]:
    """The constants the decode step reads besides its weight matrices (norm gains, tables)."""
    entries, seen = [], set()
    for op in body_ops(chip_fn.func):
        if op.operation.name not in ("torch.vtensor.literal", "harden.param"):
            continue
        value = op.operation.results[0]
        if value in weight_values or not list(value.uses):
            continue
        try:
            array = store.value_of(value)
        except Exception as e:
            raise ExportError(f"@{chip_fn.name}: cannot read a constant: {e}") from None
        if array is None or array.size <= 1:
            continue  # scalars are immediates of the op that reads them
        name = store.name_of(value) or f"const{len(entries)}"
        if name in seen:
            continue
        seen.add(name)
        b = blob(array)
        names = _add_image(files, MatrixImage(name, b.dtype, (0, 0), 0, b.dtype, b), "rom/const", stored)
        entries.append({"name": name, **b.describe(names["rom"])})
    return entries


def _stored_bytes(entry: dict) -> int:
    """A layer's bytes on the chip: its codes, scales, mins and bias."""
    return entry["rom_bytes"] + sum(entry[k]["bytes"] for k in ("scales", "mins", "bias") if k in entry)


def _rom_bits_read(layers: list[dict]) -> int:
    """Weight bits one decode step reads: every bit of a matrix (codes, scales, mins, bias),
    one row of a gathered table (the token's embedding)."""
    bits = 0
    for entry in layers:
        size = _stored_bytes(entry)
        bits += 8 * (size // entry["shape"][0] if entry["op"].endswith("embedding") else size)
    return bits


def _sram_weights(chip_fn: ScheduledFunction, layers: list[dict]) -> list[list[tuple[str, int]]]:
    """Weights held in SRAM per chip (sram machines), each matrix once, in the layers' order."""
    problem = chip_fn.problem
    per_chip: list[list[tuple[str, int]]] = [[] for _ in range(problem.chips)]
    if not problem.machine.weights_in_sram:
        return per_chip
    seen = set()
    for entry in layers:
        key = (entry["rom"], entry["chip"])
        if key in seen:
            continue
        seen.add(key)
        for chip, size in [(s["chip"], s["bytes"]) for s in entry.get("shards", [])] or [(entry["chip"], _stored_bytes(entry))]:
            per_chip[chip].append((entry["name"], size))
    return per_chip


def _summary(s: Summary) -> dict:
    return {"makespan_cycles": s.makespan_cycles, "lower_bound_cycles": s.lower_bound_cycles,
            "makespan_over_lower_bound": round(s.ratio, 4), "seconds": s.seconds, "tokens": s.tokens,
            "tokens_per_s": s.tokens_per_s, "pipelined_tokens_per_s": s.pipelined_tokens_per_s,
            "sram_peak_bytes": s.sram_peak_bytes, "chips": s.chips}


def build_export(module, source: str, store: WeightStore, source_sha256: str) -> Export:
    """The export of a scheduled harden-level module (see the module docstring)."""
    scheduled = load_schedules(module, source)
    chip_fn = _chip_function(scheduled)
    machine = chip_fn.problem.machine
    if machine.costs is None:
        raise ExportError(f"machine '{machine.source}' has no 'costs': harden-export needs its area and energy "
                          "constants (see schedule/machines/README.md)")
    files: dict[str, bytes] = {}
    stored: dict[str, str] = {}
    layers, weight_values = _layers(chip_fn, store, files, stored)
    if not layers:
        raise ExportError(f"'{source}' has no weight matrices in @{chip_fn.name}")
    constants = _constants(chip_fn, store, weight_values, files, stored)
    rom_bits = 8 * sum(map(len, files.values()))
    summary = chip_fn.summary
    models = op_models(chip_fn.problem, chip_fn.binding.ir_ops)
    used = resources(chip_fn.problem, models)
    used["rom_bytes"] = rom_bits // 8
    area, area_parts = area_mm2(machine, used, rom_bits if not machine.weights_in_sram else 0)
    energy = energy_per_token(chip_fn.problem, models, summary.seconds, summary.pipelined_tokens_per_s,
                              _rom_bits_read(layers))
    # Every function runs on the same chip, whose SRAM holds the same weights.
    maps = {s.name: memory_map(s.problem, s.solution, _sram_weights(s, layers)) for s in scheduled}
    costs = machine.costs
    chip = {
        "format": FORMAT,
        "source": {"module": Path(source).name, "sha256": source_sha256},
        "machine": {"name": machine.name, "source": machine.source, "node": costs.node, "clock_ghz": machine.clock_ghz,
                    "sram_bytes": machine.sram_bytes, "weight_storage": machine.weight_storage,
                    "costs": dict(costs.values), **({"die_area_mm2": costs.die_area_mm2} if costs.die_area_mm2 else {})},
        "function": chip_fn.name,
        "tokens_per_s": summary.tokens_per_s,
        "pipelined_tokens_per_s": summary.pipelined_tokens_per_s,
        "energy_per_token_j": energy["energy_per_token_j"],
        "energy_per_token_single_user_j": energy["energy_per_token_single_user_j"],
        "energy_breakdown_j": energy["breakdown_j"],
        "area_mm2": area,
        "area_breakdown_mm2": area_parts,
        "weight_bytes": rom_bits // 8,
        "schedule": _summary(summary),
        "resources": used,
        "memory_map": {"alignment": ALIGNMENT, "function": chip_fn.name, "chips": maps[chip_fn.name],
                       "other_functions": {name: m for name, m in sorted(maps.items()) if name != chip_fn.name}},
        "functions": {s.name: _summary(s.summary) for s in sorted(scheduled, key=lambda s: s.name)},
        "assumptions": _assumptions(machine, chip_fn),
        "layers": layers,
        "constants": constants,
    }
    files[CHIP_JSON] = (json.dumps(chip, indent=1) + "\n").encode()
    return Export(files, chip)


def _assumptions(machine, chip_fn: ScheduledFunction) -> list[str]:
    """What the projection rests on beyond the schedule: the machine's notes and costs' assumptions."""
    model = [
        f"the chip runs @{chip_fn.name}, one token per run, its attention over every position of the static cache",
        "tokens_per_s is one user's rate (1 / makespan); pipelined_tokens_per_s has a user in flight on every unit, "
        "bound by the busiest unit",
        "energy_per_token_j shares the static power among the users of the pipelined rate; "
        "energy_per_token_single_user_j charges one user all of it",
    ]
    return model + [f"machine: {n}" for n in machine.notes] + [f"costs: {a}" for a in machine.costs.assumptions]


# -- the directory ----------------------------------------------------------------------


def is_export(path: Path) -> bool:
    """Whether `path` holds a previous export (its chip.json has this format)."""
    try:
        return json.loads((path / CHIP_JSON).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_output_dir(path: Path) -> None:
    """Refuses, before any work, an output that exists and is not a previous export."""
    if path.exists() and not path.is_dir():
        raise ExportError(f"output '{path}' exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not is_export(path):
        raise ExportError(f"output directory '{path}' exists and is not a previous export (no {CHIP_JSON} of format {FORMAT})")
    if not path.parent.exists():
        raise ExportError(f"cannot write '{path}': directory '{path.parent}' does not exist")


def write_export(export: Export, path: Path) -> None:
    """Writes the files into a temporary directory beside `path`, then swaps it in: an
    interrupted export leaves no partial directory, and a previous export is replaced whole."""
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = None
    try:
        for name in sorted(export.files):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(export.files[name])
        umask = os.umask(0)
        os.umask(umask)
        for directory in [tmp, *sorted(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(directory, 0o777 & ~umask)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not path.exists():
            os.replace(old / "previous", path)
        full = storage_full(e, path)
        if full:
            raise full from e
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def first_difference(export: Export, path: Path) -> str | None:
    """The first way directory `path` differs from `export`, or None when identical."""
    if not path.is_dir():
        return f"'{path}' is not a directory"
    present = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    expected = sorted(export.files)
    for name in expected:
        if name not in present:
            return f"{name}: missing"
    for name in present:
        if name not in export.files:
            return f"{name}: not part of the export"
    for name in expected:
        data = (path / name).read_bytes()
        if data == export.files[name]:
            continue
        if name == CHIP_JSON:
            try:
                where = _json_difference(json.loads(data), export.chip, "")
            except ValueError:
                where = None
            if where:
                return f"{name}: {where}"
        offset = next((i for i, (a, b) in enumerate(zip(data, export.files[name])) if a != b), min(len(data), len(export.files[name])))
        return f"{name}: differs at byte {offset} ({len(data)} bytes, expected {len(export.files[name])})"
    return None


def _json_difference(found, expected, where: str) -> str | None:
    if isinstance(expected, dict) and isinstance(found, dict):
        for key in expected:
            if key not in found:
                return f"{where}.{key} is missing"
            diff = _json_difference(found[key], expected[key], f"{where}.{key}")
            if diff:
                return diff
        extra = [k for k in found if k not in expected]
        return f"{where}.{extra[0]} is not expected" if extra else None
    if isinstance(expected, list) and isinstance(found, list):
        for i, (a, b) in enumerate(zip(found, expected)):
            diff = _json_difference(a, b, f"{where}[{i}]")
            if diff:
                return diff
        return f"{where} has {len(found)} entries, expected {len(expected)}" if len(found) != len(expected) else None
    if found != expected:
        return f"{where or 'the document'} is {json.dumps(found)}, expected {json.dumps(expected)}"
    return None
