"""List scheduling with critical-path priority, refined by forward-backward passes.

Graham's list scheduling, time driven: at each moment every idle unit takes the ready
tile (all its producer tiles finished, delays elapsed) of highest priority; the first pass
uses the longest path from the tile to the end of the schedule (critical-path priority).
A unit is never left idle while a tile it can run is ready. Ties are broken by program
order, then tile order, and units are taken lowest index first, so the result is
deterministic. Free ops (views) take no unit and start as soon as their inputs are ready.

Forward-backward improvement (justification, as in resource-constrained project
scheduling): the schedule is re-run on the reversed graph with priority to the tiles that
ended last, which packs tiles towards the end, then forwards again with priority to the
tiles that started first in that reversed schedule. Each round can only keep or shorten
the best makespan found, since the best schedule seen is returned.
"""

from __future__ import annotations

import heapq

from harden.schedule.problem import Problem, Solution
from harden.schedule.tasks import TaskGraph, tails, task_graph

IMPROVEMENT_ROUNDS = 2


def list_schedule(problem: Problem, graph: TaskGraph | None = None, rounds: int = IMPROVEMENT_ROUNDS) -> Solution:
    """A schedule of `problem`: critical-path list scheduling, then `rounds` of justification."""
    graph = graph or task_graph(problem)
    tail = tails(graph)
    start, unit = _serial(problem, graph, tail)
    best = (_makespan(graph, start), start, unit)
    if rounds:
        reverse = _reversed(graph)
        for _ in range(rounds):
            end = [s + d for s, d in zip(start, graph.duration)]
            back_start, back_unit = _serial(problem, reverse, end)
            span = _makespan(graph, back_start)
            # Forward again, earliest start (in the justified schedule) first.
            priority = [back_start_t + graph.duration[t] - span for t, back_start_t in enumerate(back_start)]
            start, unit = _serial(problem, graph, priority)
            if _makespan(graph, start) < best[0]:
                best = (_makespan(graph, start), start, unit)
    return _solution(problem, graph, best[1], best[2])


def _makespan(graph: TaskGraph, start: list[int]) -> int:
    return max((s + d for s, d in zip(start, graph.duration)), default=0)


def _reversed(graph: TaskGraph) -> TaskGraph:
    """The same tasks with every dependence turned around."""
    preds: list[list[tuple[int, int]]] = [[] for _ in range(graph.size)]
    for t, succ in enumerate(graph.succ):
        for s, delay in succ:
            preds[s].append((t, delay))
    return TaskGraph(graph.offsets, graph.op_of, graph.duration, graph.pool, preds, [len(s) for s in graph.succ])


def _serial(problem: Problem, graph: TaskGraph, priority: list[int]) -> tuple[list[int], list[int]]:
    """One time-driven list-scheduling pass; higher `priority` first, then lower task number."""
    n = graph.size
    remaining = list(graph.pred_count)
    ready_at = [0] * n
    start = [0] * n
    unit = [-1] * n
    free_at = [[0] * len(pool.units) for pool in problem.pools]
    ready: list[list[tuple[int, int]]] = [[] for _ in problem.pools]  # per pool: (-priority, task)
    pending: list[tuple[int, int]] = []  # (ready time, task) for tasks whose producers are placed
    active: set[int] = set()

    def place(task: int, at: int) -> None:
        start[task] = at
        end = at + graph.duration[task]
        for s, delay in graph.succ[task]:
            if end + delay > ready_at[s]:
                ready_at[s] = end + delay
            remaining[s] -= 1
            if remaining[s] == 0:
                release(s)

    def release(task: int) -> None:
        if graph.pool[task] is None:
            place(task, ready_at[task])  # a view: no unit, no time
        else:
            heapq.heappush(pending, (ready_at[task], task))

    # Sources first, then release: releasing a view places it and may free later tasks.
    for task in [t for t in range(n) if remaining[t] == 0]:
        release(task)

    now, placed = 0, 0
    total = sum(1 for t in range(n) if graph.pool[t] is not None)
    while placed < total:
        while pending and pending[0][0] <= now:
            _, task = heapq.heappop(pending)
            heapq.heappush(ready[graph.pool[task]], (-priority[task], task))
            active.add(graph.pool[task])
        for pool in sorted(active):
            heap, units = ready[pool], free_at[pool]
            for k in range(len(units)):
                if not heap:
                    break
                if units[k] <= now:
                    _, task = heapq.heappop(heap)
                    unit[task] = k
                    units[k] = now + graph.duration[task]
                    placed += 1
                    place(task, now)
            if not heap:
                active.discard(pool)
        if placed == total:
            break
        # Next moment something can change: a tile becomes ready, or a busy unit frees up
        # (a pool still holding ready tiles has all its units busy past `now`).
        candidates = [pending[0][0]] if pending else []
        for pool in active:
            candidates.append(min(free_at[pool]))
        if not candidates:
            raise RuntimeError("dependence cycle: tiles remain that can never become ready")
        now = min(candidates)
    return start, unit


def _solution(problem: Problem, graph: TaskGraph, start: list[int], unit: list[int]) -> Solution:
    starts, units = [], []
    for index, op in enumerate(problem.operations):
        base = graph.offsets[index]
        starts.append(start[base: base + op.tiles])
        units.append(unit[base: base + op.tiles])
    return Solution(starts, units)
