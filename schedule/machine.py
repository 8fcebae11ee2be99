"""Machine models: the units a static schedule assigns work to, read from JSON files.

A machine model is data, not code: `load_machine("tsp")` reads the preset shipped in
`machines/tsp.json`, `load_machine("my_chip.json")` a user's file. The schema (every field,
its unit and its default) is documented in `machines/README.md`; in short:

    {
      "name": "tsp", "description": "...", "notes": ["assumption", ...],
      "clock_ghz": 0.9,                  # cycles become seconds at this clock
      "sram_bytes": 230686720,           # on-chip memory per chip
      "weight_storage": "sram",          # "sram": weights occupy SRAM and stream to the units;
                                         # "hardwired": weights are built into the logic (free)
      "float_weight_bytes": 2,           # storage width of float weights (null: as in the IR)
      "chips": "auto",                   # chips a model is split over (layer groups), or a number
      "activation_reserve": 0.25,        # SRAM fraction kept free of weights when splitting
      "units": {                         # unit kinds, by name
        "mxm": {"executes": ["matmul", "ternary_matmul", "attention"], "count": 4,
                "placement": "shared", "macs_per_cycle": 25600, ...},
        ...
      }
    }

Every operator class (`OPERATOR_CLASSES`) used by a graph must be executed by exactly one
unit kind. A malformed file raises `MachineError` whose message names the file and the
field, e.g. `my_chip.json: field 'units.mxm.count' must be a positive integer, got 0`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# What a unit can execute; the cost model maps every scheduled op to one of these.
OPERATOR_CLASSES = (
    "matmul",  # activation x constant weight (linear, fused_qkv, int8_linear): multiply-accumulates
    "ternary_matmul",  # activation x ternary weight (harden.ternary_linear): additions
    "attention",  # activation x activation products (q.k^T, p.v, fused attention)
    "elementwise",  # add, mul, where, casts, ...: one vector pass per element
    "transcendental",  # exp, rsqrt, silu, softmax, cos, sin, ...: several passes per element
    "reduction",  # mean, sum, max over a dimension
    "move",  # transposes, concatenation, gathers, KV-cache writes: bytes through a switch
    "transfer",  # chip-to-chip copies when a model is split over several chips
)

# Where the instances of a unit kind sit.
PLACEMENTS = (
    "shared",  # `count` instances per chip, shared by every op of the chip
    "per_layer",  # `count` instances per layer (prologue and epilogue count as layers)
    "per_weight",  # one instance per weight matrix (hardwired compute)
)

WEIGHT_STORAGE = ("sram", "hardwired")
PRESETS_DIR = Path(__file__).parent / "machines"


class MachineError(ValueError):
    """A machine model that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class UnitKind:
    """One kind of functional unit and its throughput (see machines/README.md)."""

    name: str
    executes: tuple[str, ...]
    placement: str = "shared"
    count: int = 1
    macs_per_cycle: float = 0.0
    ternary_adds_per_cycle: float = 0.0
    elements_per_cycle: float = 0.0
    transcendental_passes: float = 4.0
    stream_bytes_per_cycle: float = 0.0
    tile_cycles: int = 0
    result_latency_cycles: int = 0
    cycles_per_vector: float = 0.0


# The cost constants of `costs` (see machines/README.md for their units and sources): what
# harden-export turns a schedule into area and energy with. Every field is required there.
COST_NUMBERS = (
    "add_pj", "add_um2",  # one 32-bit integer addition (a ternary weight's add or subtract)
    "int_mac_pj", "int_mac_um2",  # an 8-bit multiply and 32-bit accumulate (integer weights)
    "float_mac_pj", "float_mac_um2",  # an fp16 multiply and fp32 accumulate (float weights, attention)
    "vector_op_pj", "vector_lane_um2",  # one fp32 vector operation; one vector lane
    "sram_pj_per_byte", "sram_um2_per_bit",  # SRAM traffic and cells
    "rom_pj_per_bit", "rom_um2_per_bit",  # weights built into the chip: reading and holding a bit
    "link_pj_per_byte",  # chip-to-chip transfers
    "static_w_per_chip",  # leakage and clock power of one chip, whatever it computes
    "energy_scale", "area_scale",  # from the node the constants were measured at to the chip's
    "area_overhead",  # wiring, control, periphery and I/O over the units and memories
)


@dataclass(frozen=True)
class Costs:
    """Area and energy constants of a machine (`costs` in its JSON)."""

    node: str
    values: tuple[tuple[str, float], ...]  # (name in COST_NUMBERS, value): hashable, like the model
    die_area_mm2: float | None  # a published die area: used instead of the sum of the parts
    assumptions: tuple[str, ...]  # which numbers are assumptions rather than sourced figures

    def __getattr__(self, name: str) -> float:
        try:
            return dict(self.__dict__["values"])[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class MachineModel:
    """A target for the static scheduler: units, memory, clock and the weight policy."""

    name: str
    source: str
    clock_ghz: float
    sram_bytes: int
    units: tuple[UnitKind, ...]
    weight_storage: str = "sram"
    float_weight_bytes: int | None = None
    chips: int | None = 1  # None: "auto"
    activation_reserve: float = 0.25
    description: str = ""
    notes: tuple[str, ...] = field(default=())
    costs: Costs | None = None  # needed by harden-export only

    def unit_for(self, operator_class: str) -> UnitKind | None:
        """The unit kind executing an operator class, or None when the machine has none."""
        for unit in self.units:
            if operator_class in unit.executes:
                return unit
        return None

    @property
    def weights_in_sram(self) -> bool:
        return self.weight_storage == "sram"


_TOP_FIELDS = {
    "name", "description", "notes", "clock_ghz", "sram_bytes", "weight_storage",
    "float_weight_bytes", "chips", "activation_reserve", "units", "costs",
}
_COST_FIELDS = set(COST_NUMBERS) | {"node", "die_area_mm2", "assumptions"}
_UNIT_NUMBERS = {
    "macs_per_cycle", "ternary_adds_per_cycle", "elements_per_cycle", "transcendental_passes",
    "stream_bytes_per_cycle", "cycles_per_vector",
}
_UNIT_INTEGERS = {"tile_cycles", "result_latency_cycles"}
_UNIT_FIELDS = {"executes", "placement", "count", "description"} | _UNIT_NUMBERS | _UNIT_INTEGERS


def preset_names() -> list[str]:
    """Names of the machine models shipped with harden."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_machine(spec: str) -> MachineModel:
    """Loads a preset by name (`tsp`, `hardwired`) or a JSON file by path."""
    preset = PRESETS_DIR / f"{spec}.json"
    if "/" not in spec and not spec.endswith(".json"):
        if not preset.is_file():
            raise MachineError(
                f"unknown machine '{spec}' (presets: {', '.join(preset_names())}; or a path to a JSON file)"
            )
        path, source = preset, spec
    else:
        path, source = Path(spec), spec
        if not path.is_file():
            raise MachineError(f"cannot open machine file '{spec}'")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MachineError(f"{source}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    return machine_from_dict(data, source)


def machine_from_dict(data, source: str) -> MachineModel:
    """Validates a parsed machine description; raises MachineError naming the field."""
    check = _Checker(source)
    if not isinstance(data, dict):
        raise check.error("", "must be a JSON object")
    check.no_unknown("", data, _TOP_FIELDS)
    name = check.string(data, "name", required=True)
    clock = check.number(data, "clock_ghz", required=True, positive=True)
    sram = check.integer(data, "sram_bytes", required=True, positive=True)
    storage = check.choice(data, "weight_storage", WEIGHT_STORAGE, default="sram")
    float_bytes = data.get("float_weight_bytes")
    if float_bytes is not None and float_bytes not in (1, 2, 4):
        raise check.error("float_weight_bytes", f"must be 1, 2, 4 or null, got {json.dumps(float_bytes)}")
    chips_value = data.get("chips", 1)
    if chips_value == "auto":
        chips = None
    elif isinstance(chips_value, int) and not isinstance(chips_value, bool) and chips_value > 0:
        chips = chips_value
    else:
        raise check.error("chips", f"must be a positive integer or \"auto\", got {json.dumps(chips_value)}")
    reserve = check.number(data, "activation_reserve", default=0.25)
    if not 0 <= reserve < 1:
        raise check.error("activation_reserve", f"must lie in [0, 1), got {reserve}")
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise check.error("notes", "must be a list of strings")
    units_data = data.get("units")
    if not isinstance(units_data, dict) or not units_data:
        raise check.error("units", "must be a non-empty object of unit kinds")
    units = tuple(_unit(check, unit_name, spec) for unit_name, spec in units_data.items())
    _check_classes(check, units, chips)
    return MachineModel(
        name=name,
        source=source,
        clock_ghz=clock,
        sram_bytes=sram,
        units=units,
        weight_storage=storage,
        float_weight_bytes=float_bytes,
        chips=chips,
        activation_reserve=reserve,
        description=check.string(data, "description", default=""),
        notes=tuple(notes),
        costs=_costs(check, data["costs"]) if "costs" in data else None,
    )


def _costs(check: "_Checker", spec) -> Costs:
    if not isinstance(spec, dict):
        raise check.error("costs", "must be an object")
    check.no_unknown("costs", spec, _COST_FIELDS)
    values = {}
    for key in COST_NUMBERS:
        values[key] = check.number(spec, key, required=True, where="costs")
        if values[key] < 0:
            raise check.error(f"costs.{key}", f"must not be negative, got {values[key]}")
    die = spec.get("die_area_mm2")
    if die is not None:
        die = check.number(spec, "die_area_mm2", positive=True, where="costs")
    assumptions = spec.get("assumptions", [])
    if not isinstance(assumptions, list) or not all(isinstance(a, str) for a in assumptions):
        raise check.error("costs.assumptions", "must be a list of strings")
    return Costs(check.string(spec, "node", required=True, where="costs"), tuple(values.items()), die, tuple(assumptions))


def _unit(check: "_Checker", name: str, spec) -> UnitKind:
    where = f"units.{name}"
    if not isinstance(spec, dict):
        raise check.error(where, "must be an object")
    if not name.replace("_", "").isalnum():
        raise check.error(where, "unit names may hold letters, digits and '_' only")
    check.no_unknown(where, spec, _UNIT_FIELDS)
    executes = spec.get("executes")
    if not isinstance(executes, list) or not executes:
        raise check.error(f"{where}.executes", "must be a non-empty list of operator classes")
    for cls in executes:
        if cls not in OPERATOR_CLASSES:
            raise check.error(
                f"{where}.executes", f"unknown operator class {json.dumps(cls)} (known: {', '.join(OPERATOR_CLASSES)})"
            )
    placement = check.choice(spec, "placement", PLACEMENTS, default="shared", where=where)
    count = check.integer(spec, "count", default=1, positive=True, where=where)
    numbers = {k: check.number(spec, k, default=0.0, where=where) for k in _UNIT_NUMBERS if k != "transcendental_passes"}
    for key, value in numbers.items():
        if value < 0:
            raise check.error(f"{where}.{key}", f"must not be negative, got {value}")
    unit = UnitKind(
        name=name,
        executes=tuple(executes),
        placement=placement,
        count=1 if placement == "per_weight" else count,
        transcendental_passes=check.number(spec, "transcendental_passes", default=4.0, positive=True, where=where),
        tile_cycles=check.integer(spec, "tile_cycles", default=0, where=where),
        result_latency_cycles=check.integer(spec, "result_latency_cycles", default=0, where=where),
        **numbers,
    )
    _check_rates(check, where, unit)
    return unit


def _check_rates(check: "_Checker", where: str, unit: UnitKind) -> None:
    """Each class a unit executes needs the throughput figure its cost is computed from."""
    if unit.placement == "per_weight":
        if unit.cycles_per_vector <= 0:
            raise check.error(f"{where}.cycles_per_vector", "must be positive for a per_weight unit")
        other = set(unit.executes) - {"matmul", "ternary_matmul"}
        if other:
            raise check.error(f"{where}.executes", f"a per_weight unit runs only weight matrices, not {sorted(other)[0]}")
        return
    needs = {
        "matmul": "macs_per_cycle",
        "attention": "macs_per_cycle",
        "ternary_matmul": "ternary_adds_per_cycle",
        "elementwise": "elements_per_cycle",
        "transcendental": "elements_per_cycle",
        "reduction": "elements_per_cycle",
        "move": "stream_bytes_per_cycle",
        "transfer": "stream_bytes_per_cycle",
    }
    for cls in unit.executes:
        key = needs[cls]
        if getattr(unit, key) <= 0:
            raise check.error(f"{where}.{key}", f"must be positive: the unit executes '{cls}'")


def _check_classes(check: "_Checker", units: tuple[UnitKind, ...], chips: int | None) -> None:
    owner: dict[str, str] = {}
    for unit in units:
        for cls in unit.executes:
            if cls in owner:
                raise check.error(
                    f"units.{unit.name}.executes", f"operator class '{cls}' is already executed by unit '{owner[cls]}'"
                )
            owner[cls] = unit.name
    required = [c for c in OPERATOR_CLASSES if c != "transfer"]
    if chips != 1:
        required.append("transfer")
    missing = [c for c in required if c not in owner]
    if missing:
        why = " (needed when chips is not 1)" if missing == ["transfer"] else ""
        raise check.error("units", f"names no unit that executes operator class '{missing[0]}'{why}")


class _Checker:
    """Field checks that raise MachineError naming `source` and the dotted field path."""

    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, message: str) -> MachineError:
        return MachineError(f"{self.source}: field '{where}' {message}" if where else f"{self.source}: {message}")

    def no_unknown(self, where: str, data: dict, known: set[str]) -> None:
        for key in data:
            if key not in known:
                path = f"{where}.{key}" if where else key
                raise MachineError(f"{self.source}: unknown field '{path}' (known: {', '.join(sorted(known))})")

    def _path(self, where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def string(self, data, key, required=False, default="", where=""):
        if key not in data:
            if required:
                raise self.error(self._path(where, key), "is required")
            return default
        if not isinstance(data[key], str) or (required and not data[key]):
            raise self.error(self._path(where, key), f"must be a non-empty string, got {json.dumps(data[key])}")
        return data[key]

    def number(self, data, key, required=False, default=0.0, positive=False, where=""):
        if key not in data:
            if required:
                raise self.error(self._path(where, key), "is required")
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(self._path(where, key), f"must be a number, got {json.dumps(value)}")
        if positive and value <= 0:
            raise self.error(self._path(where, key), f"must be positive, got {value}")
        return float(value)

    def integer(self, data, key, required=False, default=0, positive=False, where=""):
        if key not in data:
            if required:
                raise self.error(self._path(where, key), "is required")
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(self._path(where, key), f"must be an integer, got {json.dumps(value)}")
        if positive and value <= 0:
            raise self.error(self._path(where, key), f"must be a positive integer, got {value}")
        if value < 0:
            raise self.error(self._path(where, key), f"must not be negative, got {value}")
        return value

    def choice(self, data, key, choices, default, where=""):
        value = data.get(key, default)
        if value not in choices:
            raise self.error(
                self._path(where, key), f"must be one of {', '.join(choices)}, got {json.dumps(value)}"
            )
        return value
