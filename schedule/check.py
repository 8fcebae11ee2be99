"""Is a Solution valid for its Problem? Dependences, unit capacity, SRAM.

The checker knows nothing about how the solution was found: the verify pass runs it on
schedules read back from IR attributes (written by the scheduler or by hand). Each
violation names the op it belongs to, so it can be reported as a diagnostic there.
"""

from __future__ import annotations

from dataclasses import dataclass

from harden.schedule.memory import sram_peaks
from harden.schedule.problem import Problem, Solution


@dataclass(frozen=True)
class Violation:
    op: int | None  # problem operation the violation is reported at (None: the function)
    kind: str  # "shape", "unit", "dependence", "overlap", "shard", "sram"
    message: str


def check_solution(problem: Problem, solution: Solution) -> list[Violation]:
    """Every way `solution` breaks `problem`'s constraints (empty when it is valid)."""
    violations = _check_shape(problem, solution)
    if violations:
        return violations  # the other checks index tiles and units by the solution's shape
    violations += _check_dependences(problem, solution)
    violations += _check_units(problem, solution)
    violations += _check_shards(problem, solution)
    violations += _check_sram(problem, solution)
    return violations


def _tile_name(problem: Problem, op: int, tile: int) -> str:
    return f"tile {tile} " if problem.operations[op].tiles > 1 else ""


def _check_shape(problem: Problem, solution: Solution) -> list[Violation]:
    violations = []
    for index, op in enumerate(problem.operations):
        starts, units = solution.starts[index], solution.units[index]
        if len(starts) != op.tiles or len(units) != op.tiles:
            violations.append(Violation(index, "shape", f"has {len(starts)} tile start(s); the problem splits it into {op.tiles} tile(s)"))
            continue
        for tile, (start, unit) in enumerate(zip(starts, units)):
            if start < 0:
                violations.append(Violation(index, "shape", f"{_tile_name(problem, index, tile)}starts at negative cycle {start}"))
            if op.pool is not None and not 0 <= unit < len(problem.pools[op.pool].units):
                violations.append(Violation(index, "unit", f"{_tile_name(problem, index, tile)}has no unit of pool '{problem.pools[op.pool].name}'"))
    return violations


def _check_dependences(problem: Problem, solution: Solution) -> list[Violation]:
    """A consumer tile may start only when every producer tile it reads has finished."""
    violations = []
    for dep in problem.dependences:
        producer = problem.operations[dep.producer]
        for tile, tiles in enumerate(dep.ranges):
            if tiles is None:
                continue
            start = solution.starts[dep.consumer][tile]
            ready, late_tile = -1, 0
            for i in range(tiles[0], tiles[1] + 1):
                end = solution.starts[dep.producer][i] + producer.durations[i] + dep.delay
                if end > ready:
                    ready, late_tile = end, i
            if start < ready:
                which = f" (tile {late_tile})" if producer.tiles > 1 else ""
                violations.append(Violation(
                    dep.consumer, "dependence",
                    f"{_tile_name(problem, dep.consumer, tile)}starts at cycle {start} before its operand from "
                    f"'{producer.label}'{which} is ready at cycle {ready}",
                ))
                break  # one report per dependence is enough to find it
    return violations


def _check_units(problem: Problem, solution: Solution) -> list[Violation]:
    """No two tiles on one unit at the same time."""
    busy: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for index, op in enumerate(problem.operations):
        if op.pool is None:
            continue
        for tile, (start, unit) in enumerate(zip(solution.starts[index], solution.units[index])):
            if op.durations[tile] > 0:
                busy.setdefault((op.pool, unit), []).append((start, start + op.durations[tile], index, tile))
    violations, reported = [], set()
    for (pool, unit), intervals in sorted(busy.items()):
        intervals.sort()
        latest = intervals[0]
        for current in intervals[1:]:
            if current[0] < latest[1] and (latest[2], current[2]) not in reported:
                reported.add((latest[2], current[2]))
                name = problem.pools[pool].units[unit]
                other = problem.operations[latest[2]].label
                violations.append(Violation(
                    current[2], "overlap",
                    f"{_tile_name(problem, current[2], current[3])}overlaps '{other}' on unit {name} during cycles "
                    f"[{current[0]}, {min(current[1], latest[1])})",
                ))
            if current[1] > latest[1]:
                latest = current
    return violations


def _check_shards(problem: Problem, solution: Solution) -> list[Violation]:
    """Each tile of a sharded op runs on the chip holding its slice of the weight."""
    violations = []
    for index, op in enumerate(problem.operations):
        if not op.shards or op.pool is None:
            continue
        per_chip = len(problem.pools[op.pool].units) // len(op.shards)
        for tile, unit in enumerate(solution.units[index]):
            if unit // per_chip != tile // per_chip:
                name = problem.pools[op.pool].units[unit]
                violations.append(Violation(
                    index, "shard",
                    f"{_tile_name(problem, index, tile)}runs on unit {name}, not on chip {op.shards[tile // per_chip]} "
                    "that holds its slice of the weight",
                ))
                break
    return violations


def _check_sram(problem: Problem, solution: Solution) -> list[Violation]:
    capacity = problem.machine.sram_bytes
    violations = []
    for peak in sram_peaks(problem, solution):
        if peak.bytes <= capacity:
            continue
        where = f" on chip {peak.chip}" if problem.chips > 1 else ""
        live = ", ".join(peak.live)
        violations.append(Violation(
            peak.op, "sram",
            f"SRAM overflow{where}: {peak.bytes} bytes live at cycle {peak.cycle} (weights {peak.weight_bytes}, "
            f"activations {peak.bytes - peak.weight_bytes}; largest: {live}) exceed the capacity of {capacity} bytes",
        ))
    return violations
