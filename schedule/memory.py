"""SRAM occupancy of a scheduled Problem: weights plus the buffers live at each cycle.

A buffer is live from its producer's first tile until its last reader's last tile (until
the makespan if the function returns it); arguments and folded constants are live from
cycle 0. Weights stay resident for the whole run (on `weight_storage = "sram"` machines).
Whole tensors are counted even while they stream, which over-states the peak of a
pipelined schedule a little and never under-states it.
"""

from __future__ import annotations

from dataclasses import dataclass

from harden.schedule.problem import Problem, Solution


@dataclass(frozen=True)
class SramPeak:
    """The largest SRAM use on one chip and what makes it up."""

    chip: int
    bytes: int
    weight_bytes: int
    cycle: int
    op: int | None  # the op whose buffer was allocated when the peak was reached
    live: tuple[str, ...]  # the largest buffers live at the peak, largest first


def buffer_lifetimes(problem: Problem, solution: Solution) -> list[tuple[int, int]]:
    """(first cycle, end cycle) of every buffer."""
    makespan = solution.makespan(problem)
    ends = [solution.op_end(problem, i) for i in range(len(problem.operations))]
    starts = [solution.op_start(i) for i in range(len(problem.operations))]
    lifetimes = []
    for buffer in problem.buffers:
        first = starts[buffer.producer] if buffer.producer is not None else 0
        last = ends[buffer.producer] if buffer.producer is not None else first
        for reader in buffer.readers:
            last = max(last, ends[reader])
        if buffer.live_out:
            last = max(last, makespan)
        lifetimes.append((first, last))
    return lifetimes


def sram_peaks(problem: Problem, solution: Solution) -> list[SramPeak]:
    """The peak SRAM use of every chip."""
    lifetimes = buffer_lifetimes(problem, solution)
    peaks = []
    for chip in range(problem.chips):
        events = []
        for index, (buffer, (first, last)) in enumerate(zip(problem.buffers, lifetimes)):
            if buffer.chip != chip or buffer.bytes == 0:
                continue
            # At equal cycles frees come before allocations: a buffer freed at cycle t
            # and one allocated at cycle t never coexist.
            events.append((first, 1, index))
            events.append((max(last, first + 1), 0, index))
        events.sort()
        live: set[int] = set()
        current, best, best_cycle, best_op, best_live = 0, 0, 0, None, ()
        for cycle, is_alloc, index in events:
            if is_alloc:
                live.add(index)
                current += problem.buffers[index].bytes
                if current > best:
                    best, best_cycle = current, cycle
                    # Blame the newest op result among the live buffers (arguments have no op).
                    produced = [b for b in live if problem.buffers[b].producer is not None]
                    best_op = problem.buffers[max(produced, key=lambda b: (lifetimes[b][0], b))].producer if produced else None
                    largest = sorted(live, key=lambda b: (-problem.buffers[b].bytes, b))[:3]
                    best_live = tuple(problem.buffers[b].name for b in largest)
            else:
                live.discard(index)
                current -= problem.buffers[index].bytes
        weights = problem.weight_bytes[chip] if chip < len(problem.weight_bytes) else 0
        peaks.append(SramPeak(chip, weights + best, weights, best_cycle, best_op, best_live))
    return peaks
