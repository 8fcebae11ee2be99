"""A schedule as IR attributes: writing a Solution, reading one back, program order.

On every scheduled op (cycles are integers, units by name):

    harden.layer = 3            decoder layer (-1 prologue, L epilogue)
    harden.chip = 1             only when the model is split over several chips
    harden.shards = array<i64: 4, 5>   chips holding slices of the op's weight (sharded ops)
    harden.start = 1200         first cycle of the op's first tile
    harden.end = 1460           cycle after its last tile ends
    harden.unit = "mxm2"        unit of its first tile (absent on free ops: views)
    harden.tile_starts = array<i64: ...>   start of each tile (ops with several tiles)
    harden.tile_units = ["mxm2", ...]      unit of each tile (ops with several tiles)
    harden.transfers = [{chip = 1, result = 0, start = ..., end = ..., unit = "c0.c2c0",
                         tile_starts = array<i64: ...>, tile_units = [...]}]
                                chip-to-chip copies of this op's results

On the function, `harden.schedule` holds the options the schedule was made with (machine,
tile, max_tiles) and its summary (makespan_cycles, lower_bound_cycles, ...). A schedule
written by hand needs only `harden.start` (and `harden.unit` on ops that use a unit):
`read_solution` fills tile starts of single-tile ops from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch_mlir import ir

from harden.core.graph import body_ops
from harden.schedule.build import CHIP_ATTR, LAYER_ATTR, SHARDS_ATTR, Binding
from harden.schedule.problem import Problem, Solution
from harden.schedule.summary import Summary

UNIT_ATTR = "harden.unit"
START_ATTR = "harden.start"
END_ATTR = "harden.end"
TILE_STARTS_ATTR = "harden.tile_starts"
TILE_UNITS_ATTR = "harden.tile_units"
TRANSFERS_ATTR = "harden.transfers"
SUMMARY_ATTR = "harden.schedule"
OP_ATTRS = (LAYER_ATTR, CHIP_ATTR, SHARDS_ATTR, START_ATTR, END_ATTR, UNIT_ATTR, TILE_STARTS_ATTR, TILE_UNITS_ATTR, TRANSFERS_ATTR)


@dataclass(frozen=True)
class ReadIssue:
    """A schedule attribute that is missing or malformed, at IR op `op`."""

    op: object
    message: str


def _i64(value: int) -> ir.IntegerAttr:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), int(value))


def _f64(value: float) -> ir.FloatAttr:
    return ir.FloatAttr.get_f64(float(value))


def is_scheduled(func) -> bool:
    """Whether a function carries a schedule (a summary or any op with `harden.start`)."""
    if SUMMARY_ATTR in func.attributes:
        return True
    return any(START_ATTR in op.operation.attributes for op in body_ops(func))


def clear_schedule(func) -> None:
    """Removes every schedule attribute from a function and its ops."""
    if SUMMARY_ATTR in func.attributes:
        del func.attributes[SUMMARY_ATTR]
    for op in body_ops(func):
        attrs = op.operation.attributes
        for name in OP_ATTRS:
            if name in attrs:
                del attrs[name]


def write_schedule(binding: Binding, problem: Problem, solution: Solution) -> None:
    """Writes the per-op attributes of `solution` (see the module docstring)."""
    transfers: dict[int, list[ir.Attribute]] = {}
    for index, op in enumerate(problem.operations):
        ir_op = binding.ir_ops[index]
        units = problem.pools[op.pool].units if op.pool is not None else None
        starts = solution.starts[index]
        first = min(range(op.tiles), key=lambda t: (starts[t], t))
        fields = {
            "start": _i64(solution.op_start(index)),
            "end": _i64(solution.op_end(problem, index)),
        }
        if units is not None:
            fields["unit"] = ir.StringAttr.get(units[solution.units[index][first]])
        if op.tiles > 1:
            fields["tile_starts"] = ir.DenseI64ArrayAttr.get(list(starts))
            if units is not None:
                fields["tile_units"] = ir.ArrayAttr.get([ir.StringAttr.get(units[u]) for u in solution.units[index]])
        if op.transfer is not None:
            _, result, chip = op.transfer
            fields.update(chip=_i64(chip), result=_i64(result))
            transfers.setdefault(id(ir_op.operation), []).append(ir.DictAttr.get(fields))
            continue
        attrs = ir_op.operation.attributes
        attrs[LAYER_ATTR] = _i64(op.layer)
        if problem.chips > 1:
            attrs[CHIP_ATTR] = _i64(op.chip)
        if op.shards:
            attrs[SHARDS_ATTR] = ir.DenseI64ArrayAttr.get(list(op.shards))
        for key, value in fields.items():
            attrs[f"harden.{key}"] = value
    for index, op in enumerate(problem.operations):
        entries = transfers.pop(id(binding.ir_ops[index].operation), None)
        if entries:
            binding.ir_ops[index].operation.attributes[TRANSFERS_ATTR] = ir.ArrayAttr.get(entries)


def write_summary(func, summary: Summary, options: dict) -> None:
    """The function's `harden.schedule`: the options used and the summary numbers."""
    fields: dict[str, ir.Attribute] = {}
    for key, value in options.items():
        fields[key] = ir.StringAttr.get(value) if isinstance(value, str) else _i64(value)
    fields.update(
        chips=_i64(summary.chips),
        makespan_cycles=_i64(summary.makespan_cycles),
        lower_bound_cycles=_i64(summary.lower_bound_cycles),
        critical_path_cycles=_i64(summary.bounds.critical_path),
        resource_bound_cycles=_i64(summary.bounds.resource),
        energetic_bound_cycles=_i64(summary.bounds.energetic),
        makespan_over_lower_bound=_f64(round(summary.ratio, 4)),
        sram_peak_bytes=_i64(summary.sram_peak_bytes),
        sram_capacity_bytes=_i64(summary.sram_capacity_bytes),
        utilization=ir.DictAttr.get({k: _f64(v) for k, v in summary.utilization.items()}),
    )
    if summary.tokens:
        fields["tokens"] = _i64(summary.tokens)
        # No rate for a function without work (no cycles: a module that only returns its inputs).
        if summary.tokens_per_s is not None:
            fields["tokens_per_s"] = _f64(_readable(summary.tokens_per_s))
        if summary.pipelined_tokens_per_s is not None:
            fields["pipelined_tokens_per_s"] = _f64(_readable(summary.pipelined_tokens_per_s))
    func.attributes[SUMMARY_ATTR] = ir.DictAttr.get(fields)


VERIFIED_KEY = "verified"


def mark_verified(func) -> None:
    """Adds `verified = true` to the function's summary (harden-verify-schedule passed)."""
    if SUMMARY_ATTR not in func.attributes:
        return  # a schedule written by hand without a summary: nothing outlives lowering
    fields = {named.name: named.attr for named in ir.DictAttr(func.attributes[SUMMARY_ATTR])}
    fields[VERIFIED_KEY] = ir.BoolAttr.get(True)
    func.attributes[SUMMARY_ATTR] = ir.DictAttr.get(fields)


def summary_problems(summary: dict, machine) -> list[str]:
    """What is inconsistent in a summary on its own (no ops needed), against its machine."""
    problems = []
    required = ("makespan_cycles", "lower_bound_cycles", "critical_path_cycles", "resource_bound_cycles",
                "energetic_bound_cycles", "makespan_over_lower_bound", "sram_peak_bytes", "chips")
    missing = [key for key in required if key not in summary]
    if missing:
        return [f"missing {', '.join(missing)}"]
    makespan, bound = summary["makespan_cycles"], summary["lower_bound_cycles"]
    bounds = max(summary["critical_path_cycles"], summary["resource_bound_cycles"], summary["energetic_bound_cycles"])
    if bound != bounds:
        problems.append(f"lower_bound_cycles = {bound} but the largest of its bounds is {bounds}")
    if bound <= 0:
        problems.append(f"lower_bound_cycles = {bound} is not positive")
    elif makespan < bound:
        problems.append(f"makespan_cycles = {makespan} is below lower_bound_cycles = {bound}")
    elif summary["makespan_over_lower_bound"] != round(makespan / bound, 4):
        problems.append(f"makespan_over_lower_bound = {summary['makespan_over_lower_bound']} but "
                        f"{makespan} / {bound} = {round(makespan / bound, 4)}")
    if summary["sram_peak_bytes"] > machine.sram_bytes:
        problems.append(f"sram_peak_bytes = {summary['sram_peak_bytes']} exceeds the {machine.sram_bytes} bytes of SRAM of a chip")
    for unit, used in summary.get("utilization", {}).items():
        if not 0 <= used <= 1:
            problems.append(f"utilization of {unit} is {used}, outside [0, 1]")
    tokens = summary.get("tokens")
    if tokens and makespan and "tokens_per_s" in summary:
        expected = _readable(tokens * machine.clock_ghz * 1e9 / makespan)
        if summary["tokens_per_s"] != expected:
            problems.append(f"tokens_per_s = {summary['tokens_per_s']} but {tokens} token(s) in {makespan} cycles "
                            f"at {machine.clock_ghz:g} GHz give {expected}")
    return problems


def _readable(rate: float) -> float:
    """A rate with 4 significant digits, so the printed attribute stays short."""
    return float(f"{rate:.4g}")


def read_summary(func) -> dict:
    """The function's `harden.schedule` as Python values (empty when absent)."""
    if SUMMARY_ATTR not in func.attributes:
        return {}
    return _python(func.attributes[SUMMARY_ATTR])


def _attribute(attrs, name: str):
    """`attrs[name]` as Python values (see `_python`); reading it may fail already."""
    try:
        return _python(attrs[name])
    except TypeError:  # the bindings cannot downcast this attribute kind (an array of si8)
        return "<unreadable>"


def _python(attr):
    """An attribute as Python values; kinds a schedule never holds (an array of si8, which
    the bindings cannot even downcast) become their text, which the readers then refuse."""
    try:
        attr = attr.maybe_downcast() if hasattr(attr, "maybe_downcast") else attr
    except TypeError:
        return str(attr)
    if isinstance(attr, ir.DictAttr):
        return {named.name: _python(named.attr) for named in attr}
    if isinstance(attr, ir.ArrayAttr):
        return [_python(a) for a in attr]
    if isinstance(attr, ir.BoolAttr):
        return attr.value
    if isinstance(attr, ir.IntegerAttr):
        return attr.value
    if isinstance(attr, ir.FloatAttr):
        return attr.value
    if isinstance(attr, ir.StringAttr):
        return attr.value
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    return str(attr)


def read_solution(binding: Binding, problem: Problem) -> tuple[Solution, list[ReadIssue]]:
    """The Solution the attributes describe, and what is missing or malformed in them."""
    issues: list[ReadIssue] = []
    starts, units = [], []
    transfer_entries: dict[tuple[int, int, int], dict] = {}
    for index, op in enumerate(problem.operations):
        ir_op = binding.ir_ops[index]
        if op.transfer is not None:
            key = (id(ir_op.operation), op.transfer[1], op.transfer[2])
            if key not in transfer_entries:
                entries = _attribute(ir_op.operation.attributes, TRANSFERS_ATTR) if TRANSFERS_ATTR in ir_op.operation.attributes else []
                for entry in entries if isinstance(entries, list) else []:
                    if isinstance(entry, dict):
                        transfer_entries[(id(ir_op.operation), entry.get("result"), entry.get("chip"))] = entry
            fields = transfer_entries.get(key)
            where = f"its transfer of result {op.transfer[1]} to chip {op.transfer[2]} in '{TRANSFERS_ATTR}'"
        else:
            attrs = ir_op.operation.attributes
            fields = {name.removeprefix("harden."): _attribute(attrs, name) for name in OP_ATTRS if name in attrs}
            where = None
        tile_starts, tile_units, issue = _read_op(problem, index, fields, where)
        if issue:
            prefix = f"transfer to chip {op.transfer[2]}: " if op.transfer is not None else ""
            issues.append(ReadIssue(ir_op, prefix + issue))
        starts.append(tile_starts)
        units.append(tile_units)
    return Solution(starts, units), issues


def _read_op(problem: Problem, index: int, fields: dict | None, where: str | None):
    op = problem.operations[index]
    pool = problem.pools[op.pool] if op.pool is not None else None
    placeholder = ([0] * op.tiles, [0 if pool else -1] * op.tiles)
    missing = lambda name: f"has no schedule: {where or repr('harden.' + name)} is missing"  # noqa: E731
    if fields is None:
        return *placeholder, missing("transfers")
    if not isinstance(fields.get("start"), int):
        return *placeholder, missing("start")
    if op.tiles > 1:
        tile_starts = fields.get("tile_starts")
        if not isinstance(tile_starts, list) or len(tile_starts) != op.tiles:
            return *placeholder, (f"is split into {op.tiles} tiles but '{TILE_STARTS_ATTR}' "
                                  f"{'is missing' if tile_starts is None else f'has {len(tile_starts)} entries'}")
    else:
        tile_starts = [fields["start"]]
    if pool is None:
        return list(tile_starts), [-1] * op.tiles, None
    names = fields.get("tile_units") if op.tiles > 1 and "tile_units" in fields else [fields.get("unit")] * op.tiles
    if not isinstance(names, list) or len(names) != op.tiles:
        return *placeholder, f"'{TILE_UNITS_ATTR}' must list one unit per tile ({op.tiles})"
    tile_units = []
    for name in names:
        if name is None:
            return *placeholder, missing("unit")
        if name not in pool.units:
            kind = "one of " + ", ".join(pool.units[:8]) + (", ..." if len(pool.units) > 8 else "")
            return *placeholder, f"runs on unit '{name}', which cannot run it (expected {kind})"
        tile_units.append(pool.units.index(name))
    return list(tile_starts), tile_units, None


def recorded_end(binding: Binding, problem: Problem, index: int) -> int | None:
    """The `harden.end` an op (or its transfer) records, if any."""
    op = problem.operations[index]
    attrs = binding.ir_ops[index].operation.attributes
    if op.transfer is None:
        end = _attribute(attrs, END_ATTR) if END_ATTR in attrs else None
        return end if isinstance(end, int) and not isinstance(end, bool) else None
    entries = _attribute(attrs, TRANSFERS_ATTR) if TRANSFERS_ATTR in attrs else []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and (entry.get("result"), entry.get("chip")) == op.transfer[1:]:
            return entry.get("end")
    return None


def reorder_by_schedule(binding: Binding, problem: Problem, solution: Solution) -> None:
    """Puts the function's ops in order of their start cycles, keeping SSA dominance.

    Scheduled ops sort by (start cycle, program order), raised if needed to their
    operands' keys; other ops (constants, lists, scalars) go right before their first
    user, and never before their own operands. The terminator stays last.
    """
    ops = body_ops(binding.func)
    terminator = ops[-1]
    position = {op.operation: i for i, op in enumerate(ops)}
    start_of: dict = {}
    for index, op in enumerate(problem.operations):
        if op.transfer is None:
            start_of[binding.ir_ops[index].operation] = solution.op_start(index)
    forward: list[tuple[int, int]] = []
    for i, op in enumerate(ops[:-1]):
        key = (start_of[op.operation], i) if op.operation in start_of else (-1, -1)
        for operand in op.operands:
            owner = _operation(operand.owner)
            if owner is not None and owner in position:
                key = max(key, forward[position[owner]])
        forward.append(key)
    infinity = (1 << 62, 1 << 62)
    key = list(forward)
    for i in reversed(range(len(ops) - 1)):
        op = ops[i]
        if op.operation in start_of:
            continue
        first_user = infinity
        for result in op.operation.results:
            for use in result.uses:
                j = position.get(_operation(use.owner))
                if j is not None and j < len(ops) - 1:
                    first_user = min(first_user, key[j])
        key[i] = max(forward[i], first_user if first_user != infinity else (1 << 61, i))
    order = sorted(range(len(ops) - 1), key=lambda i: (key[i], i))
    for i in order:
        ops[i].operation.move_before(terminator.operation)


def _operation(owner):
    """The ir.Operation behind an owner (an OpView, an Operation or a Block)."""
    if isinstance(owner, ir.Block):
        return None
    return owner if isinstance(owner, ir.Operation) else owner.operation
