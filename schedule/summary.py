"""The numbers a schedule is judged by: makespan against its lower bound, unit use, SRAM, speed."""

from __future__ import annotations

from dataclasses import dataclass, field

from harden.schedule.memory import sram_peaks
from harden.schedule.problem import Problem, Solution
from harden.schedule.tasks import Bounds


@dataclass
class Summary:
    makespan_cycles: int
    bounds: Bounds | None  # None until record() computes them on the reordered function
    sram_peak_bytes: int
    sram_capacity_bytes: int
    chips: int
    seconds: float
    tokens: int | None
    tokens_per_s: float | None
    pipelined_tokens_per_s: float | None
    utilization: dict[str, float] = field(default_factory=dict)

    @property
    def lower_bound_cycles(self) -> int:
        return self.bounds.value

    @property
    def ratio(self) -> float:
        return self.makespan_cycles / self.lower_bound_cycles if self.lower_bound_cycles else 1.0


def summarize(problem: Problem, solution: Solution, bounds: Bounds | None) -> Summary:
    """Makespan, lower bound, per-unit utilization, SRAM peak and tokens/s at the clock.

    `bounds` may be None: a schedule about to be recorded gets them from record(), on the
    function it reorders.

    `tokens_per_s` is one sequence's rate (tokens of one run / its makespan);
    `pipelined_tokens_per_s` is the rate with independent sequences in flight, bound by the
    busiest unit (what a layer-pipelined hardwired chip is built for).
    """
    makespan = solution.makespan(problem)
    busy: dict[str, int] = {}
    for pool in problem.pools:
        for name in pool.units:
            busy[name] = 0
    for index, op in enumerate(problem.operations):
        if op.pool is None:
            continue
        units = problem.pools[op.pool].units
        for tile, unit in enumerate(solution.units[index]):
            busy[units[unit]] += op.durations[tile]
    utilization = {name: round(cycles / makespan, 4) if makespan else 0.0 for name, cycles in busy.items()}
    clock_hz = problem.machine.clock_ghz * 1e9
    seconds = makespan / clock_hz
    tokens = problem.tokens
    busiest = max(busy.values(), default=0)
    return Summary(
        makespan_cycles=makespan,
        bounds=bounds,
        sram_peak_bytes=max((p.bytes for p in sram_peaks(problem, solution)), default=0),
        sram_capacity_bytes=problem.machine.sram_bytes,
        chips=problem.chips,
        seconds=seconds,
        tokens=tokens,
        tokens_per_s=tokens / seconds if tokens and seconds else None,
        pipelined_tokens_per_s=tokens * clock_hz / busiest if tokens and busiest else None,
        utilization=utilization,
    )
