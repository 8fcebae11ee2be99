"""Scheduling a function end to end, and reading a function's schedule back from its IR.

These tie the separate pieces together: `build` (IR -> Problem), `solver` (Problem ->
Solution), `check` (is it valid), `summary`, and `attributes` (Solution <-> IR).
"""

from __future__ import annotations

from dataclasses import dataclass

from harden.schedule import attributes
from harden.schedule.build import Binding, build_problem
from harden.schedule.check import Violation, check_solution
from harden.schedule.exact import exact_schedule
from harden.schedule.machine import MachineModel, load_machine
from harden.schedule.ops import ScheduleError
from harden.schedule.problem import Problem, Solution
from harden.schedule.solver import list_schedule
from harden.schedule.summary import Summary, summarize
from harden.schedule.tasks import lower_bound, task_graph

DEFAULT_TILE = 256
DEFAULT_MAX_TILES = 16


@dataclass
class ScheduledFunction:
    """A function with its problem, a solution and the summary numbers."""

    func: object
    problem: Problem
    binding: Binding
    solution: Solution
    summary: Summary

    @property
    def name(self) -> str:
        return self.problem.function


def schedule_function(func, machine: MachineModel, tile: int, max_tiles: int, chips: int = 0,
                      solver: str = "list", bound: bool = True) -> tuple[ScheduledFunction, list[Violation]]:
    """Builds and solves `func`'s problem; returns it with the violations of the solution.

    With `bound` False the summary has no lower bound yet: record() computes it on the
    reordered function (seconds per function at 8B, so not twice).

    `solver` is "list" (list scheduling, any size) or "exact" (branch and bound, small
    problems only; raises ProblemTooLarge beyond MAX_EXACT_TASKS tiles).

    With `chips = "auto"` (the machine's setting, chips=0) the model starts on the fewest
    chips that hold its weights; if the schedule then overflows SRAM (activations and the
    KV cache need room too), it is split over one more chip, until it fits or every layer
    has a chip of its own. A weight larger than one chip's budget gets chips of its own on
    top of those (build.py, sharded ops); `chips` counts the layer groups only.
    """
    requested = chips or machine.chips  # None: auto
    count, previous = requested, None
    while True:
        problem, binding = build_problem(func, machine, tile, max_tiles, count)
        graph = task_graph(problem)
        solution = exact_schedule(problem) if solver == "exact" else list_schedule(problem, graph)
        violations = check_solution(problem, solution)
        overflow = any(v.kind == "sram" for v in violations)
        layer_groups = problem.layer_count + 2  # with the prologue and the epilogue
        # The chips of the layer groups (those holding slices of an oversized weight come on top).
        groups = problem.chips - len({chip for op in problem.operations for chip in op.shards})
        # Chips recorded on the ops (a rescheduled module) fix the split: no retry then.
        if not overflow or requested is not None or groups >= layer_groups or groups == previous:
            break
        previous, count = groups, groups + 1
    summary = summarize(problem, solution, lower_bound(problem, graph) if bound else None)
    return ScheduledFunction(func, problem, binding, solution, summary), violations


def schedule_options(func) -> dict:
    """The options a function was scheduled with, from its `harden.schedule`."""
    summary = attributes.read_summary(func)
    return {key: summary[key] for key in ("machine", "tile", "max_tiles") if key in summary}


def load_schedule(func, machine: str | None = None, tile: int | None = None, max_tiles: int | None = None) -> tuple[ScheduledFunction | None, list[attributes.ReadIssue]]:
    """The schedule recorded in `func`'s attributes, rebuilt against its machine model.

    Options not given are taken from the function's `harden.schedule` (machine, tile,
    max_tiles). Raises MachineError or ScheduleError when the problem cannot be rebuilt.
    """
    recorded = schedule_options(func)
    machine_spec = machine or recorded.get("machine")
    if not machine_spec:
        raise ScheduleError(func, "records no machine model: give the verifier a machine option")
    model = load_machine(machine_spec)
    tile = tile if tile is not None else recorded.get("tile", 0)
    max_tiles = max_tiles if max_tiles is not None else recorded.get("max_tiles", DEFAULT_MAX_TILES)
    problem, binding = build_problem(func, model, tile, max_tiles)
    solution, issues = attributes.read_solution(binding, problem)
    if issues:
        return None, issues
    summary = summarize(problem, solution, lower_bound(problem))
    return ScheduledFunction(func, problem, binding, solution, summary), []


def record(scheduled: ScheduledFunction, options: dict) -> None:
    """Writes a schedule into the IR: op attributes, the op order, and the summary.

    The lower bound is recomputed on the reordered function, as the verifier will: one of
    its terms (the earliest start of a pool's work) depends on the order ops are visited
    in, and the summary must agree with what the verifier recomputes.
    """
    func, problem = scheduled.func, scheduled.problem
    attributes.clear_schedule(func)
    attributes.write_schedule(scheduled.binding, problem, scheduled.solution)
    attributes.reorder_by_schedule(scheduled.binding, problem, scheduled.solution)
    reordered, _ = build_problem(func, problem.machine, problem.tile, problem.max_tiles)
    scheduled.summary.bounds = lower_bound(reordered)
    attributes.write_summary(func, scheduled.summary, options)
