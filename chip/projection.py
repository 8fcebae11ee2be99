"""Resources, area and energy of a scheduled function on its machine.

The counts come from the schedule's problem (unit pools, per-op work and bytes streamed);
the constants from the machine's `costs` (machines/README.md lists each with its source
or marks it an assumption). The model, in short:

* **resources**: instances of every unit kind the schedule uses; on `per_weight` units
  (hardwired compute) each matrix gets ceil(weights / cycles_per_vector) adders (ternary)
  or multiply-accumulators (integer or float weights);
* **area**: a published die area times the chips when the machine gives one, otherwise
  the sum of the parts (adders, MACs, vector lanes, SRAM cells, ROM cells for weights built
  into the chip) times `area_scale` (to the chip's node) and `area_overhead`;
* **energy per token**: every addition, multiply-accumulate and vector operation the
  function performs, every byte its units stream through SRAM, every weight bit read from
  ROM and every byte sent between chips, times `energy_scale`, plus static power over the
  time one token takes. A chip serving many users in a pipeline shares the static power
  among them: `energy_per_token_j` is at the pipelined rate, `single_user` at one user's.
"""

from __future__ import annotations

import math

from harden.schedule.machine import Costs, MachineModel
from harden.schedule.ops import OpModel, model_op, numel
from harden.schedule.problem import Problem

_INTEGER_WEIGHT_OPS = ("harden.int_linear", "harden.int8_linear")


def _work_kind(op_name: str, operator_class: str) -> str:
    """What a matrix op's multiply-accumulates cost: an add, an integer or a float MAC."""
    if operator_class == "ternary_matmul":
        return "add"
    if operator_class == "matmul" and op_name in _INTEGER_WEIGHT_OPS:
        return "int_mac"
    return "float_mac"


def op_models(problem: Problem, ir_ops: list) -> list[OpModel | None]:
    """The cost-model view of each scheduled op (None for transfers and free ops): what
    `resources` and `energy_per_token` count."""
    models = []
    for op, ir_op in zip(problem.operations, ir_ops):
        model = model_op(ir_op) if op.transfer is None and op.operator_class is not None else None
        models.append(model if isinstance(model, OpModel) else None)
    return models


def resources(problem: Problem, models: list[OpModel | None]) -> dict:
    """Unit instances per kind and the arithmetic they hold (see the module docstring)."""
    machine = problem.machine
    kinds = {unit.name: unit for unit in machine.units}
    units: dict[str, dict] = {}
    for pool in problem.pools:
        unit = kinds[pool.kind]
        entry = units.setdefault(unit.name, {"placement": unit.placement, "executes": list(unit.executes), "instances": 0})
        entry["instances"] += len(pool.units)
        for key in ("macs_per_cycle", "ternary_adds_per_cycle", "elements_per_cycle", "stream_bytes_per_cycle"):
            if getattr(unit, key):
                entry[key] = getattr(unit, key)
    totals = {"adders": 0, "int_macs": 0, "float_macs": 0}
    for op, model in zip(problem.operations, models):
        unit = kinds[problem.pools[op.pool].kind] if op.pool is not None else None
        if unit is None or unit.placement != "per_weight" or model is None:
            continue
        count = math.ceil(model.weight_elements / unit.cycles_per_vector)
        kind = {"add": "adders", "int_mac": "int_macs", "float_mac": "float_macs"}[_work_kind(model.op_name, op.operator_class)]
        totals[kind] += count
        units[unit.name][kind] = units[unit.name].get(kind, 0) + count
    return {
        "chips": problem.chips,
        "clock_ghz": machine.clock_ghz,
        "sram_bytes_per_chip": machine.sram_bytes,
        "sram_bytes": machine.sram_bytes * problem.chips,
        "units": units,
        **totals,
        "vector_lanes": sum(u["instances"] * u.get("elements_per_cycle", 0) for u in units.values()),
    }


def area_mm2(machine: MachineModel, used: dict, rom_bits: int) -> tuple[float, dict]:
    """Area of the chips and its parts (see the module docstring)."""
    costs: Costs = machine.costs
    chips = used["chips"]
    if costs.die_area_mm2 is not None:
        return costs.die_area_mm2 * chips, {"die": costs.die_area_mm2 * chips}
    kinds = {unit.name: unit for unit in machine.units}
    shared = 0.0
    for name, entry in used["units"].items():
        unit = kinds[name]
        if unit.placement == "per_weight":
            continue
        # One array does the float and the ternary work (as the TSP's MXM does): the larger counts.
        array = max(unit.macs_per_cycle * costs.float_mac_um2, unit.ternary_adds_per_cycle * costs.add_um2)
        shared += entry["instances"] * (array + unit.elements_per_cycle * costs.vector_lane_um2)
    parts_um2 = {
        "weight_arrays": used["adders"] * costs.add_um2 + used["int_macs"] * costs.int_mac_um2 + used["float_macs"] * costs.float_mac_um2,
        "units": shared,
        "sram": used["sram_bytes"] * 8 * costs.sram_um2_per_bit,
        "rom": rom_bits * costs.rom_um2_per_bit,
    }
    scale = costs.area_scale * costs.area_overhead / 1e6
    parts = {key: value * scale for key, value in parts_um2.items()}
    return sum(parts.values()), parts


def energy_per_token(problem: Problem, models: list[OpModel | None], seconds: float, pipelined_tokens_per_s: float | None,
                     rom_bits_per_token: int) -> dict:
    """Joules per token: dynamic parts, static, and the totals (see the module docstring).
    `rom_bits_per_token`: the weight bits a token reads from ROM (weights built into the chip)."""
    machine = problem.machine
    costs: Costs = machine.costs
    tokens = problem.tokens or 1
    kinds = {unit.name: unit for unit in machine.units}
    pj = {"compute": 0.0, "sram": 0.0, "rom": 0.0, "links": 0.0}
    for op, model in zip(problem.operations, models):
        if op.transfer is not None:
            pj["links"] += op.streamed_bytes * costs.link_pj_per_byte
            continue
        if op.operator_class is None:
            continue
        pj["sram"] += op.streamed_bytes * costs.sram_pj_per_byte
        if model is None:
            continue
        if op.operator_class in ("matmul", "ternary_matmul", "attention"):
            pj["compute"] += model.macs * getattr(costs, f"{_work_kind(model.op_name, op.operator_class)}_pj")
        elif op.operator_class in ("elementwise", "transcendental", "reduction"):
            unit = kinds[problem.pools[op.pool].kind]
            passes = model.vector_passes + model.transcendentals * unit.transcendental_passes
            pj["compute"] += numel(model.iteration) * passes * costs.vector_op_pj
    if not machine.weights_in_sram:
        pj["rom"] = rom_bits_per_token * costs.rom_pj_per_bit * tokens
    dynamic = {key: value * costs.energy_scale * 1e-12 / tokens for key, value in pj.items()}
    static_w = costs.static_w_per_chip * problem.chips
    single = static_w * seconds / tokens
    pipelined = static_w / pipelined_tokens_per_s if pipelined_tokens_per_s else single
    dynamic_j = sum(dynamic.values())
    return {
        "energy_per_token_j": dynamic_j + pipelined,
        "energy_per_token_single_user_j": dynamic_j + single,
        "breakdown_j": {**dynamic, "static_pipelined": pipelined, "static_single_user": single},
    }
